"""The quick suite of :mod:`benchmarks.suite` runs and reports every row.

No assertion here is about time: a benchmark is not a test.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.harness import format_report
from benchmarks.suite import ROW_KEYS, run_benchmarks


@pytest.mark.slow
def test_quick_benchmarks_report_every_row(real_data_dir, tmp_path) -> None:
    report = run_benchmarks(quick=True, progress=False, data_dir=real_data_dir)
    assert [row.key for row in report.rows] == list(ROW_KEYS)
    for row in report.rows:
        values = [row.ours, row.alternative, row.ratio, row.ratio_min, row.ratio_max,
                  *row.ours_samples, *row.alternative_samples]
        assert all(math.isfinite(v) and v > 0 for v in values), row
        assert row.ratio_min <= row.ratio <= row.ratio_max
        assert row.repetitions == len(row.ours_samples) == len(row.alternative_samples) >= 1
        assert (row.met is None) == (row.target is None)
    assert any("many seeds" in note for note in report.notes)
    assert report.machine["torch_threads"] == torch.get_num_threads() and report.machine["cpu_count"] >= 1
    path = report.write_json(tmp_path / "bench.json")
    loaded = json.loads(path.read_text())
    assert [row["key"] for row in loaded["rows"]] == list(ROW_KEYS) and loaded["quick"] is True
    text = format_report(report)
    assert all(row.title in text for row in report.rows)
