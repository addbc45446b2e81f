"""recipes layer of vla_torchrl."""
