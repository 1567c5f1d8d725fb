"""Studies: grids of runs, their jobs and sweeps with progress and time left, looks at the verdicts,
and :func:`~stochrelax.study.reproduce.reproduce`, the whole study in one call."""
