"""The evaluation stage (``workflow/rules/evaluate.smk``): metrics, threshold calibration, the test evaluation
of one model and the paired bootstrap over all of them."""
