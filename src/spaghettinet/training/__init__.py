"""Training: input pipeline, SSD targets and losses, schedule, loop, checkpoints, quantization-aware training."""
