"""The HTML and Markdown report (:mod:`~stochrelax.report.page`) and its figures (:mod:`~stochrelax.report.plots`)."""
