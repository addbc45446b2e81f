"""objectives layer of vla_torchrl."""
