"""The study workflow: a study directory analysed into results and verdicts."""

from __future__ import annotations

from stochrelax.claims import load_claims
from stochrelax.study import analyse_study
from stochrelax.verdicts import read_verdicts
from tests.synthetic_runs import gain_study



def test_analyse_study_writes_results_and_verdicts(tmp_path):
    files = analyse_study(gain_study(tmp_path / "study", [0.1, 0.1]), tmp_path / "out")
    assert [path.name for path in files] == ["results.csv", "results.md", "verdicts.csv", "verdicts.md", "power.csv"]
    assert all(path.parent == tmp_path / "out" for path in files)
    assert [record.id for record in read_verdicts(files.verdicts_csv)] == [claim.id for claim in load_claims()]
