"""The grid as one command: a grid file's train.py runs on local GPUs or CPU workers, or as a
Slurm job array through submitit (``python -m tools.sweep GRID``; see tools/sweep/cli.py)."""
