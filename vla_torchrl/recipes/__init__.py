"""recipes layer of vla_torchrl: the command lines, side by side, none importing another.

``train`` (``vla-torchrl-train``, also ``torchrun -m vla_torchrl.recipes.train``), ``evaluate``
(``vla-torchrl-eval``), ``collect`` (``vla-torchrl-collect``), ``study`` (``vla-torchrl-study``),
``report``, ``plot_curves``, ``show_config`` and ``demo``; :mod:`~vla_torchrl.recipes._cli` is the
wrapper they share (``run_cli``: one-line user errors, ``--debug`` for tracebacks). What they
drive lives below: :mod:`vla_torchrl.training`, :mod:`vla_torchrl.evaluation`,
:mod:`vla_torchrl.studies`, :mod:`vla_torchrl.config`.
"""
