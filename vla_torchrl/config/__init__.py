"""config layer of vla_torchrl: typed, validated run configs and their Hydra loading.

- :mod:`~vla_torchrl.config.train_schema`: ``TrainConfig`` and its groups, ``validate``.
- :mod:`~vla_torchrl.config.load`: ``to_train_config``, ``compose_config`` (``conf/`` + overrides).
- :mod:`~vla_torchrl.config.collect_schema`: ``CollectConfig``.
- :mod:`~vla_torchrl.config.cli_schema`: the other command lines' configs (``EvalConfig``,
  ``ReportConfig``, ``StudyConfig``, ``PlotCurvesConfig``, ``DemoConfig``).
- ``conf/``: the Hydra YAML groups (``env``, ``model``, ``algo``, ``collector``, ``optim``,
  ``logger``) and the ``train``, ``train_cpu``, ``collect``, ``eval``, ``report``, ``study``,
  ``plot_curves`` and ``demo`` presets.
"""
