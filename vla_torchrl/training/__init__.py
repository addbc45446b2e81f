"""training layer of vla_torchrl: the training loop and its parts.

- :mod:`~vla_torchrl.training.loop`: ``train`` (the loop, top to bottom), ``make_objective``.
- :mod:`~vla_torchrl.training.update`: ``rl_update`` (advantages + minibatch update of one
  rollout), ``run_update`` (epochs x minibatches with accumulation, clipping, skips).
- :mod:`~vla_torchrl.training.run`: ``start_run`` (validate, seed, resume; every rank) and
  ``RunContext`` (log, save, restore).
- :mod:`~vla_torchrl.training.checkpointing`: atomic, checksummed ``CheckpointManager``.
- :mod:`~vla_torchrl.training.metrics`: namespaced ``MetricLogger`` (JSONL, TensorBoard, wandb).
- :mod:`~vla_torchrl.training.data_parallel`: global metric records, FSDP2 sharding.
- :mod:`~vla_torchrl.training.periodic_eval`: evaluation during training on fixed episodes.
- :mod:`~vla_torchrl.training.policy`: build, save and load policies.
- :mod:`~vla_torchrl.training.environments`: the env a run's ``EnvConfig`` describes.
"""
