"""How much narrower this round's intervals are than those of commit fa54d44, on simulated families.

Seven configurations (a reference and six candidates, 0.1 logits ahead) on the same 1000 images, 3
seeds, a seed effect shared by every configuration and one of its own (tests/test_claims.py's
_family_rows); 40 studies. Prints the median ratio of widths, new over old, for one paired
difference and for the best of six. Run from the repository root: .venv/bin/python scripts/interval_widths.py
"""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stochrelax.analysis import intervals
from stochrelax.analysis.claims import parse_claims
from stochrelax.analysis.verdicts import evaluate_claims
from stochrelax.rundir.layout import unpack_correct
from tests.analysis.test_claims import _family_rows  # noqa: E402
from tests.synthetic_runs import BASELINE_NAME, against_baseline, claim  # noqa: E402

OLD_COMMIT = "fa54d44"


def _old_intervals():
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:src/stochrelax/intervals.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_intervals.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_intervals", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_intervals"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    old = _old_intervals()
    generator = np.random.default_rng(1)
    names = [f"c{k}" for k in range(6)]
    shifts = {BASELINE_NAME: 0.0, **{name: 0.1 for name in names}}
    resamples = intervals.ImageResamples(resamples=1000)
    best = parse_claims({"claims": [claim("best", "difference_to_reference",
                                          against_baseline(["clean"], "largest", names), {"above": 0.0})]})
    one, pick = [], []
    for _ in range(40):
        rows = _family_rows(generator, shifts, seeds=3, images=1000)
        vectors = {row.configuration: np.stack([resamples.accuracy(unpack_correct(row.per_image[seed][1], 1000))
                                                for seed in sorted(row.values)])
                   for row in rows if row.variant == "eot"}
        differences = {name: vectors[name] - vectors[BASELINE_NAME] for name in names}
        before, now = old.interval(differences["c0"]), intervals.interval(differences["c0"])
        one.append((now.high - now.low) / (before.high - before.low))
        _, before = old.pick_interval(differences, largest=True)
        [result] = evaluate_claims(best, rows, resamples=resamples)
        pick.append((result.eot.interval.high - result.eot.interval.low) / (before.high - before.low))
    for label, ratios in (("one paired difference", one), ("the best of six, pooled", pick)):
        low, high = np.percentile(ratios, [25, 75])
        print(f"{label}: new/old width median {np.median(ratios):.2f} (quartiles {low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
