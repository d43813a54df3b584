"""Training: the fit loop, metrics, run directories, checkpoints and plots."""
