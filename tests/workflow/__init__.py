"""The workflow end to end: the Snakemake DAG, the configs, SLURM."""
