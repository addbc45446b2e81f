"""modules layer of vla_torchrl."""
