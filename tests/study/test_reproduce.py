"""The study workflow: a study directory analysed into results and verdicts."""

from __future__ import annotations

import shutil
from pathlib import Path

from stochrelax.analysis.claims import load_claims
from stochrelax.analysis.results import markdown_table
from stochrelax.analysis.verdicts import read_verdicts, verdict_summary
from stochrelax.cli import main
from stochrelax.study.reproduce import analyse_study
from tests.synthetic_runs import gain_study


def test_analyse_study_writes_results_and_verdicts(tmp_path):
    files = analyse_study(gain_study(tmp_path / "study", [0.1, 0.1]), tmp_path / "out")
    assert [path.name for path in files] == ["results.csv", "results.md", "verdicts.csv", "verdicts.md", "power.csv"]
    assert all(path.parent == tmp_path / "out" for path in files)
    assert [record.id for record in read_verdicts(files.verdicts_csv)] == [claim.id for claim in load_claims()]


PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "results" / "standard"


OUTPUTS = ("results.csv", "results.md", "verdicts.csv", "verdicts.md", "power.csv", "figures", "README.md")


def test_the_published_standard_study_regenerates_its_shipped_tables(tmp_path):
    # docs/results/standard holds the run files of the standard study; `stochrelax results` on a copy of
    # them, without the tables, must write the very verdicts, power table and results the repository ships.
    def outputs(directory: str, names: list[str]) -> list[str]:
        return [name for name in names if name in OUTPUTS] if Path(directory) == PUBLISHED else []

    study = shutil.copytree(PUBLISHED, tmp_path / "standard", ignore=outputs)
    assert not (study / "verdicts.csv").exists() and any(study.glob("*/summary.json"))
    assert main(["results", str(study)]) == 0
    for name in ("verdicts.csv", "power.csv", "results.csv"):
        assert (study / name).read_text() == (PUBLISHED / name).read_text(), name


def test_the_readme_shows_the_verdicts_the_repository_ships():
    readme = (PUBLISHED.parents[2] / "README.md").read_text()
    assert markdown_table(verdict_summary(read_verdicts(PUBLISHED / "verdicts.csv"))) in readme
