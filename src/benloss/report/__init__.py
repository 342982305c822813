"""The report stage (``workflow/rules/report.smk``): tables, figures, guidelines and the HTML report; torch-free."""
