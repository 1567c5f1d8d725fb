"""Run directories: a run's config schema, its files and their layout, its records and checkpoints.

Everything that reads or writes a run directory goes through here, so that the disk format is
known in one place: :mod:`~stochrelax.rundir.config` (``config.yaml``), :mod:`~stochrelax.rundir.layout`
(the files, their versions, locks, summaries and attack tables), :mod:`~stochrelax.rundir.records`
(the JSON-lines records) and :mod:`~stochrelax.rundir.checkpoints`.
"""
