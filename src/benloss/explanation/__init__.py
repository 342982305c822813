"""The explanation stage (``workflow/rules/explain.smk``): zennit LRP heatmaps, their ZBox bounds and their
scores against reference maps."""
