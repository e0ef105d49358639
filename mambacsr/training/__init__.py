"""The training loop and its parts: checkpoints, distributed setup, validation."""
