"""Does bfloat16 change what the study measures? Runs a few configurations of the thesis study on
several seeds with the quick preset twice — float32 throughout, and bfloat16 convolutions in
training and attacks — and compares, per configuration, the clean and the worst-case robust
accuracy (difference of the means against the spread between seeds) and the job times.

Usage: .venv/bin/python scripts/precision_check.py OUT_DIR [--seeds 3] [--workers 2]

Writes OUT_DIR/float32 and OUT_DIR/bfloat16 (two studies) and OUT_DIR/precision.json, and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from stochrelax.rundir.layout import read_attack_table, read_summary
from stochrelax.study.grid import PRESETS, STUDY_GRID, load_grid
from stochrelax.study.sweep import run_sweep

CONFIGURATIONS = ("relu_deterministic-batch_norm", "relu_noise-logistic-additive-0.05", "sign_noise-logistic-ste")
EPS = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs = [run for run in load_grid(STUDY_GRID) if run.name in CONFIGURATIONS]
    quick = PRESETS["quick"]
    measured = {}
    for precision in ("float32", "bfloat16"):
        planned = [replace(run, config=run.config.model_copy(update={"train": run.config.train.model_copy(
            update={"precision": precision})})) for run in runs]
        preset = replace(quick, attack=replace(quick.attack, precision=precision))
        results = run_sweep(planned, args.out / precision, seeds=args.seeds, preset=preset, workers=args.workers)
        measured[precision] = {result.label: _numbers(args.out / precision / result.label, result) for result in results}
    table = {}
    for name in CONFIGURATIONS:
        row = {}
        for quantity in ("clean", "robust", "train_seconds", "attack_seconds"):
            values = {precision: [measured[precision][f"{name}-seed{seed}"][quantity] for seed in range(args.seeds)]
                      for precision in measured}
            row[quantity] = {precision: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
                             for precision, v in values.items()}
        table[name] = row
    (args.out / "precision.json").write_text(json.dumps({"seeds": args.seeds, "table": table,
                                                         "runs": measured}, indent=1) + "\n")
    print(f"{'configuration':36} {'quantity':15} {'float32 mean ± sd':>20} {'bfloat16 mean ± sd':>20} {'ratio':>6}")
    for name, row in table.items():
        for quantity, values in row.items():
            (f_mean, f_sd), (b_mean, b_sd) = values["float32"], values["bfloat16"]
            scale = 100 if quantity in ("clean", "robust") else 1
            ratio = f"{f_mean / b_mean:6.2f}" if quantity.endswith("seconds") else ""
            print(f"{name:36} {quantity:15} {f_mean * scale:12.2f} ± {f_sd * scale:5.2f} "
                  f"{b_mean * scale:12.2f} ± {b_sd * scale:5.2f} {ratio}")


def _numbers(run_dir: Path, result) -> dict[str, float]:
    rows = read_attack_table(run_dir)["rows"]
    robust = next(row["accuracy"] for row in rows if row["attack"] == "worst-case" and row["budget"] == EPS)
    return {"clean": read_summary(run_dir)["test_accuracy"], "robust": robust,
            "train_seconds": result.train_seconds, "attack_seconds": result.attack_seconds}


if __name__ == "__main__":
    main()
