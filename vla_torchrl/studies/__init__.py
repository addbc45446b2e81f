"""studies layer of vla_torchrl: the paper's studies, run and reported.

- :mod:`~vla_torchrl.studies.catalogue`: the studies (``STUDIES``) and their scales.
- :mod:`~vla_torchrl.studies.runner`: plan, run (resumably) and report a study.
- :mod:`~vla_torchrl.studies.curves`: training curves over seeds (Fig. 5/6).
- :mod:`~vla_torchrl.studies.curves_report`, :mod:`~vla_torchrl.studies.eval_reports`: reports.
"""
