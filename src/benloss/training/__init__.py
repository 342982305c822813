"""The training stage (``workflow/rules/train.smk``): losses, the K-Branch CNN, batches and the trainer."""
