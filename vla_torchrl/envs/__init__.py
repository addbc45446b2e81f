"""envs layer of vla_torchrl."""
