"""Training: protocol, device-resident loop, checkpoints and measurements."""
