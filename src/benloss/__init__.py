"""benloss: a reproducible comparison of multi-label loss functions on BigEarthNet-S2."""

__version__ = "0.1.0"
