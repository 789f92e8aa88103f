"""Training: experiment config, LR schedule, checkpoints, the training loop and DDP set-up."""
