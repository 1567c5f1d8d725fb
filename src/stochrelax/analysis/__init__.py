"""What a study's files say: results over seeds, intervals, the thesis' claims and their verdicts,
the power to decide them, and the catalog of runs."""
