"""recipes layer of vla_torchrl: configs and entry points that wire envs, modules and objectives.

Infrastructure (imports none of the other layers):

- :mod:`~vla_torchrl.config.train_schema`: validated dataclass configs composed by Hydra from
  ``conf/`` (``train``, ``train_cpu``); :func:`~vla_torchrl.config.train_schema.validate`.
- :mod:`~vla_torchrl.recipes._cli`: ``UserError`` / ``ConfigError`` and ``run_cli`` (one-line
  errors, ``--debug`` for tracebacks) for every entry point.
- :mod:`~vla_torchrl.training.run`: ``start_run`` / ``RunContext`` (seed, resume, log, save).
- :mod:`~vla_torchrl.training.checkpointing`: atomic, checksummed ``CheckpointManager``.
- :mod:`~vla_torchrl.training.metrics`: namespaced ``MetricLogger`` (JSONL, TensorBoard,
  wandb offline by default) and a ``progress`` bar.
- :mod:`~vla_torchrl.recipes.report`: evaluation tables (paper Tables 1-3), radars (Fig. 7),
  incremental results; :mod:`~vla_torchrl.recipes.plot_curves`: curves (Fig. 5/6).
"""
