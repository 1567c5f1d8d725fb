"""Copies a study's result files into the repository, judges them there, and draws the study's figures.

Each finished job's result files go to DEST/RUN (config, summary, attack table, certificates, metrics,
layout marker; no weights, checkpoints or training statistics), with the study's sweep.json and
looks.json. Then DEST is analysed as ``stochrelax results DEST`` analyses it (results.*, verdicts.*,
power.csv), DEST/costs.md tabulates what each kind of job cost (scripts/study_costs.py), and
DEST/figures gets the forest plot, robust accuracy against eps and the empirical
against certified robustness, as the report draws them. A run directory in DEST that the study no
longer has finished is removed, so DEST always holds one state of the study.

Usage: python scripts/publish_study.py STUDY DEST
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from study_costs import cost_table, job_costs

from stochrelax.analysis.results import markdown_table, read_results
from stochrelax.analysis.verdicts import read_verdicts, verdict_summary
from stochrelax.report import plots
from stochrelax.report.page import certified_by_configuration
from stochrelax.rundir.layout import (ATTACKS_JSON, CERTIFY_CSV, CERTIFY_JSON, CONFIG_FILE, METRICS_FILE, RUN_FILE,
                                      SUMMARY_FILE, find_runs)
from stochrelax.study.looks import LOOKS_FILE
from stochrelax.study.reproduce import analyse_study
from stochrelax.study.sweep import SWEEP_FILE

RUN_FILES = (CONFIG_FILE, SUMMARY_FILE, ATTACKS_JSON, CERTIFY_CSV, CERTIFY_JSON, METRICS_FILE, RUN_FILE)
STUDY_FILES = (SWEEP_FILE, LOOKS_FILE)


def copy_results(study: Path, dest: Path) -> list[str]:
    """The result files of every run whose job the sweep records as done (trained, attacked and
    certified) in ``dest``; returns the runs' names."""
    jobs = json.loads((study / SWEEP_FILE).read_text())["jobs"]
    names = []
    for run_dir in find_runs(study):
        if jobs.get(run_dir.name, {}).get("status") != "done":
            continue
        target = dest / run_dir.relative_to(study)
        target.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, target / name)
        names.append(str(run_dir.relative_to(study)))
    for stale in sorted(path.parent for path in dest.glob(f"*/{SUMMARY_FILE}")):
        if stale.name not in names:
            shutil.rmtree(stale)
    for name in STUDY_FILES:
        if (study / name).is_file():
            shutil.copy2(study / name, dest / name)
    return names


def draw_figures(dest: Path) -> list[Path]:
    """The study's three figures from the files :func:`analyse_study` wrote, as PNG in ``dest/figures``;
    one whose data the study does not have yet (no certified run) is left out, and says so."""
    rows = read_results(dest / "results.csv")
    figures = {"forest_plot": lambda: plots.forest_plot(read_verdicts(dest / "verdicts.csv")),
               "robust_accuracy_vs_eps": lambda: plots.robust_accuracy_vs_eps(rows),
               "empirical_vs_certified": lambda: plots.robustness_and_certificates(
                   rows, certified_by_configuration(dest))}
    (dest / "figures").mkdir(exist_ok=True)
    drawn = []
    for name, draw in figures.items():
        path = dest / "figures" / f"{name}.png"
        try:
            drawn.append(plots.save_figure(draw(), path))
        except plots.MissingData as missing:
            path.unlink(missing_ok=True)
            print(f"{name}: not drawn ({missing})")
    return drawn


README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- standard study: begin (scripts/publish_study.py writes this) -->", "<!-- standard study: end -->"


def readme_block(dest: Path) -> str:
    """The README's section on the study: where it stands, what it cost, the verdict table, the forest plot."""
    jobs = json.loads((dest / SWEEP_FILE).read_text())["jobs"]
    done = sum(job["status"] == "done" for job in jobs.values())
    seconds = sum(job_costs(summary.parent)["total"] for summary in dest.glob(f"*/{SUMMARY_FILE}"))
    where = dest.resolve().relative_to(README.parent)
    table = markdown_table(verdict_summary(read_verdicts(dest / "verdicts.csv")))
    return "\n".join([
        BEGIN,
        f"**{done} of {len(jobs)} jobs done** ({seconds / 3600:.1f} h of one CPU core so far, measured job by job: "
        f"[`{where}/costs.md`]({where}/costs.md)). The verdicts below are those of the finished jobs: a claim whose "
        "configurations lack a run is *not measured*, one with a single seed *inconclusive*.",
        "", table, "", f"![forest plot of the claims]({where}/figures/forest_plot.png)", "",
        f"Regenerate every number from the repository: `stochrelax results {where}` (a test checks that it writes "
        f"the shipped `verdicts.csv`). Everything, from scratch: `stochrelax reproduce --preset standard --seeds 3`.",
        END])


def update_readme(dest: Path) -> None:
    """Replaces the README's block between :data:`BEGIN` and :data:`END` with :func:`readme_block`."""
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    README.write_text(text[:start] + readme_block(dest) + text[end:])


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    study, dest = map(Path, argv)
    dest.mkdir(parents=True, exist_ok=True)
    names = copy_results(study, dest)
    files = analyse_study(dest)
    drawn = draw_figures(dest)
    (dest / "costs.md").write_text(cost_table(dest))
    update_readme(dest)
    print(f"{len(names)} runs -> {dest}; " + ", ".join(path.name for path in [*files, *drawn]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
