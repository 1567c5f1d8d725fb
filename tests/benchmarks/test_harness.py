"""The harness of :mod:`benchmarks.harness`: alternating repetitions, median ratios, the table.

No assertion here is about time: a benchmark is not a test.
"""

from __future__ import annotations

import pytest

from benchmarks import harness


def test_measure_alternates_and_compare_row_takes_the_median_ratio() -> None:
    calls = []
    workloads = [harness.Workload(name, lambda name=name: calls.append(name) or 10.0) for name in "abc"]
    rates = harness.measure(workloads, 3)
    assert calls == list("abc") + list("abc") + list("cba") + list("abc")  # warm-up, then alternating
    assert all(len(v) == 3 and all(r > 0 for r in v) for v in rates.values())
    row = harness.compare_row("k", "t", "u", "ours", "alt", [4.0, 2.0, 9.0], [1.0, 1.0, 3.0], 2.5)
    assert (row.ratio, row.ratio_min, row.ratio_max, row.met) == (3.0, 2.0, 4.0, True)
    assert (row.ours, row.alternative) == (4.0, 1.0)
    row = harness.compare_row("m", "t", "MB", "ours", "budget", [600.0], [1536.0], 1.0, "max")
    assert row.met and row.target_text == "≤ 1×"
    table = harness.format_table([row])
    assert "t: ours vs budget" in table and "0.39×" in table
    with pytest.raises(ValueError):
        harness.compare_row("k", "t", "u", "a", "b", [1.0], [1.0, 2.0], None)
