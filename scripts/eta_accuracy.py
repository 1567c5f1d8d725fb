"""How good is a sweep's remaining-time estimate? Runs a sweep of the thesis study and compares,
at every progress snapshot, the estimate with the time that was in fact left.

Usage: .venv/bin/python scripts/eta_accuracy.py OUT_DIR [--preset quick] [--seeds 1] [--workers 2]

Writes OUT_DIR/eta.json (every snapshot: seconds since the start, jobs finished, the estimate,
the actual time left) and prints the estimate's error after the first, third and tenth finished
job and at a quarter, half and three quarters of the sweep.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from stochrelax.study.grid import STUDY_GRID, load_grid
from stochrelax.study.progress import SweepProgress, format_duration
from stochrelax.study.sweep import run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    start = time.monotonic()
    snapshots: list[tuple[float, int, float | None]] = []

    def record(progress: SweepProgress) -> None:
        snapshots.append((time.monotonic() - start, progress.finished, progress.remaining_seconds))

    run_sweep(load_grid(STUDY_GRID), args.out, seeds=args.seeds, preset=args.preset, workers=args.workers,
              on_progress=record)
    total = time.monotonic() - start
    rows = [{"seconds": seconds, "finished": finished, "estimate": estimate, "actual": total - seconds}
            for seconds, finished, estimate in snapshots]
    (args.out / "eta.json").write_text(json.dumps({"total_seconds": total, "snapshots": rows}, indent=1) + "\n")
    jobs = max(row["finished"] for row in rows)
    print(f"sweep of {jobs} jobs took {format_duration(total)}")
    checkpoints = {f"after job {count}": count for count in (1, 3, 10)}
    checkpoints |= {f"at {share:.0%} of the jobs": round(share * jobs) for share in (0.25, 0.5, 0.75)}
    for name, count in checkpoints.items():
        row = next((row for row in rows if row["finished"] >= count and row["estimate"] is not None), None)
        if row is not None:
            error = row["estimate"] / row["actual"] - 1
            print(f"{name:>22}: estimate {format_duration(row['estimate'])}, actual {format_duration(row['actual'])} "
                  f"({error:+.0%})")


if __name__ == "__main__":
    main()
