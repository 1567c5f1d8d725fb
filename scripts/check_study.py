"""CI check: each study directory holds every run x seed its sweeps planned (a second look plans more
seeds for some configurations), with every attack result and certificate, and a results table whose
every configuration has all its planned seeds in every cell;
when given two studies of the same sweep (local and Ray backends), their results tables and certified
accuracies are identical.

Usage: python scripts/check_study.py STUDY [STUDY ...]
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path

from stochrelax.report.page import certified_by_configuration
from stochrelax.study.sweep import SWEEP_FILE, unfinished_work


def check(study: Path) -> list[str]:
    problems = unfinished_work(study)
    with open(study / "results.csv") as stream:
        rows = list(csv.DictReader(stream))
    seeds = Counter(job["run"] for job in json.loads((study / SWEEP_FILE).read_text())["jobs"].values())
    missing = set(seeds) - {row["configuration"] for row in rows}
    problems += [f"{name}: not in results.csv" for name in sorted(missing)]
    problems += [f"{row['configuration']} {row['metric']} {row['budget']} {row['variant']}: n = {row['n']}, "
                 f"expected {seeds[row['configuration']]}" for row in rows
                 if int(row["n"]) != seeds[row["configuration"]]]
    return problems


def main(studies: list[Path]) -> int:
    problems = [f"{study}: {problem}" for study in studies for problem in check(study)]
    tables = {study: (study / "results.csv").read_text() for study in studies}
    if len(set(tables.values())) > 1:
        problems.append("the results tables differ between " + " and ".join(map(str, studies)))
    certified = [certified_by_configuration(study) for study in studies]
    if any(certificates != certified[0] for certificates in certified[1:]):
        problems.append("the certified accuracies differ between " + " and ".join(map(str, studies)))
    for problem in problems:
        print(f"incomplete: {problem}")
    if not problems:
        print(f"complete: {', '.join(map(str, studies))} (and identical)" if len(studies) > 1 else "complete")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main([Path(argument) for argument in sys.argv[1:]]))
