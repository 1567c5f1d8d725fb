"""What a study's jobs cost, read from its run files: training, each attack, certification.

Per finished job: training seconds (``summary.json``), seconds per epoch, attack seconds per attack
(``attacks.json``, each row's own seconds; the worst case includes its members) and of the checks
around them (the attack table's seconds less its rows': gradient probes, the randomness check), certification
seconds (``certify.csv``); then the median of each per kind of configuration (the grid's group, and the
estimator for sign networks), and the study's sum. It reads only the files a published study keeps, so
the numbers are regenerated from the repository.

Usage: python scripts/study_costs.py STUDY  (prints Markdown)
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from stochrelax.analysis.results import configuration_name
from stochrelax.rundir.layout import ATTACKS_JSON, CERTIFY_CSV, SUMMARY_FILE

PHASES = ("training", "fgsm", "ifgsm-ll", "missing", "worst-case", "checks", "certify")


def kind(configuration: str) -> str:
    """The grid group of a configuration, with the estimator of a sign network's noise."""
    group = configuration.split("-")[0]
    if group == "sign_noise":
        return f"sign_noise ({configuration.rsplit('-', 1)[-1]})"
    return group


def job_costs(run_dir: Path) -> dict[str, float]:
    """Seconds of each phase of one finished job, and its total."""
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    costs = dict.fromkeys(PHASES, 0.0)
    costs["training"] = float(summary["total_seconds"])
    costs["epochs"] = float(summary["epochs"])
    if (run_dir / ATTACKS_JSON).is_file():
        table = json.loads((run_dir / ATTACKS_JSON).read_text())
        for row in table["rows"]:
            costs[row["attack"]] = costs.get(row["attack"], 0.0) + float(row.get("seconds", 0.0))
        costs["checks"] = float(table["seconds"]) - sum(float(row.get("seconds", 0.0)) for row in table["rows"])
    if (run_dir / CERTIFY_CSV).is_file():
        with open(run_dir / CERTIFY_CSV) as stream:
            costs["certify"] = sum(float(row["seconds"]) for row in csv.DictReader(stream))
    costs["total"] = sum(costs[phase] for phase in PHASES)
    return costs


def cost_table(study: Path) -> str:
    """Markdown: the median job of each kind, phase by phase, and the study's sums."""
    by_kind: dict[str, list[dict[str, float]]] = defaultdict(list)
    for summary in sorted(study.glob(f"*/{SUMMARY_FILE}")):
        by_kind[kind(configuration_name(summary.parent))].append(job_costs(summary.parent))
    header = ["kind", "jobs", "training s (s/epoch)", *PHASES[1:], "median job s", "sum s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, jobs in sorted(by_kind.items()):
        median = {phase: statistics.median(job[phase] for job in jobs) for phase in (*PHASES, "total")}
        per_epoch = statistics.median(job["training"] / job["epochs"] for job in jobs)
        lines.append("| " + " | ".join([name, str(len(jobs)), f"{median['training']:.0f} ({per_epoch:.1f})",
                                         *(f"{median[phase]:.0f}" for phase in PHASES[1:]),
                                         f"{median['total']:.0f}", f"{sum(job['total'] for job in jobs):.0f}"]) + " |")
    jobs = [job for group in by_kind.values() for job in group]
    shares = {phase: sum(job[phase] for job in jobs) for phase in PHASES}
    total = sum(shares.values())
    lines += ["", f"{len(jobs)} jobs, {total:.0f} CPU-seconds ({total / 3600:.1f} h on one core): "
              + ", ".join(f"{phase} {shares[phase] / total:.0%}" for phase in PHASES) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    print(cost_table(Path(sys.argv[1])), end="")
