"""evaluation layer of vla_torchrl: saved policies on tasks x seeds, results, tables, reports.

- :mod:`~vla_torchrl.evaluation.eval_loop`: ``evaluate`` (episodes -> results -> report).
- :mod:`~vla_torchrl.evaluation.results`: ``EpisodeResult``, ``load_results``,
  ``IncrementalResults``.
- :mod:`~vla_torchrl.evaluation.tables`: statistics over seeds, relative drops, Tables 1-3.
- :mod:`~vla_torchrl.evaluation.report_writer`: ``write_report`` (Markdown, CSV, Fig. 7 charts).
"""
