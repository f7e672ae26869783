"""Training: patch sampling, the trainer loop, checkpoints and schedules."""
