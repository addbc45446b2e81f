"""evaluation layer of vla_torchrl (filled in by the layout redesign)."""
