"""What each ``stochrelax`` command does, given its parsed arguments (:mod:`stochrelax.cli.parser`).

A command validates what it was given, calls one workflow (:mod:`stochrelax.training.loop`,
:mod:`stochrelax.evaluation.robustness`, :mod:`stochrelax.study.sweep`, :mod:`stochrelax.study.reproduce`,
...) and prints what came of it; the workflows write the files.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from stochrelax.data.fashion_mnist import data_info as find_data, load_fashion_mnist
from stochrelax.evaluation.certification import CertifySettings, certify_run
from stochrelax.evaluation.clean import evaluate_run
from stochrelax.evaluation.robustness import attack_run
from stochrelax.evaluation.smoothing import ABSTAIN
from stochrelax.evaluation.table import AttackSettings
from stochrelax.rundir.config import load_config
from stochrelax.rundir.layout import CERTIFY_CSV, CERTIFY_JSON, CONFIG_FILE, check_run_dir, load_run
from stochrelax.study.grid import STUDY_GRID, load_grid
from stochrelax.study.jobs import JobResult
from stochrelax.study.looks import LookPlan
from stochrelax.study.sweep import SWEEP_FILE, run_sweep, unfinished_work, usable_cpus
from stochrelax.training.loop import train_run

__all__ = ["UsageError", "CONTINUE_STUDY", "DEVICES", "resolve_device", "format_attack_table", "train", "evaluate",
           "attack", "certify", "report", "results", "sweep", "reproduce", "bench", "runs", "compare", "data_info"]


class UsageError(Exception):
    """A command-line value that cannot be used."""


CONTINUE_STUDY = "run the same command again to continue: finished runs are kept, unfinished ones resume"


def _cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device("cuda")


DEVICES: dict[str, Callable[[], torch.device]] = {
    "auto": lambda: torch.device("cuda" if torch.cuda.is_available() else "cpu"),
    "cpu": lambda: torch.device("cpu"),
    "cuda": _cuda,
}


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    return DEVICES[name]()


def train(args: argparse.Namespace) -> None:
    if (args.config is None) == (args.resume is None):
        raise UsageError("train: give a CONFIG to start a run or --resume RUN_DIR to continue one")
    if args.resume is not None:
        if not (args.resume / CONFIG_FILE).is_file():
            raise UsageError(f"--resume {args.resume}: not a run directory (no {CONFIG_FILE})")
        args.config, args.out = args.resume / CONFIG_FILE, args.resume
    overrides = {
        "train": {key: value for key, value in (("epochs", args.epochs), ("seed", args.seed),
                                                ("precision", args.precision)) if value is not None},
        "data": {key: value for key, value in (("train_limit", args.train_limit), ("test_limit", args.test_limit))
                 if value is not None},
    }
    config = load_config(args.config, overrides)
    device = resolve_device(args.device)
    out = args.out or Path("runs") / f"{Path(args.config).stem}-seed{config.train.seed}"
    args.interrupted = f"continue with `stochrelax train --resume {out}`"
    resume = args.resume is not None
    if not resume:
        check_run_dir(out, args.overwrite)
    data = load_fashion_mnist(args.data_dir)
    print(f"{'resuming' if resume else 'training'} {args.config} on {device} -> {out}", flush=True)
    summary = train_run(config, data, out, device=device, overwrite=args.overwrite, resume=resume,
                        progress=not args.no_progress,
                        on_epoch=lambda metrics: print(metrics.summary_line(config.train.epochs), flush=True))
    print(f"done: test accuracy {summary['test_accuracy']:.2%} after {summary['epochs']} epochs "
          f"({summary['seconds_per_epoch']:.1f}s per epoch); run saved in {out}")


def evaluate(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    finished_runs = [load_run(run_dir) for run_dir in args.run_dirs]
    data = load_fashion_mnist(args.data_dir).limit(test_limit=args.test_limit)
    for run in finished_runs:
        result = evaluate_run(run, data, samples=args.samples, device=device, seed=args.seed)
        print(f"{run.path}: test accuracy {result.accuracy:.2%}  NLL {result.nll:.4f}  "
              f"(K={result.samples} noise samples, {result.examples} images)")


def format_attack_table(rows: list) -> str:
    """The robustness rows as an aligned text table, with how each was measured (n, K, steps, proxy)."""
    header = (f"{'attack':10} {'budget':>9} {'EOT':>4} {'accuracy':>9} {'clean':>6} {'single draw':>14} "
              f"{'success':>8} {'L-inf':>6} {'n':>5} {'K':>3} {'steps':>5} {'proxy':>8} {'seconds':>8}")
    lines = [header, "-" * len(header)]
    for row in rows:
        single = f"{row.accuracy_single_draw:.1%}" + (f"±{row.accuracy_single_draw_std:.1%}"
                                                       if row.prediction_samples > 1 else "")
        steps = "-" if row.steps is None else str(row.steps)
        lines.append(f"{row.attack:10} {row.budget_name + '=' + format(row.budget, 'g'):>9} {row.eot_samples:>4} "
                     f"{row.accuracy:>9.1%} {row.clean_accuracy:>6.1%} {single:>14} {row.success_rate:>8.1%} "
                     f"{row.mean_linf:>6.3f} {row.examples:>5} {row.prediction_samples:>3} {steps:>5} "
                     f"{row.proxy:>8} {row.seconds:>8.1f}")
        lines += [f"  {member['attack']}[{member['proxy']}] broke {member['broke']}" for member in row.members
                  if member["broke"]]
    return "\n".join(lines)


def attack(args: argparse.Namespace) -> None:
    if args.eps is not None and not all(0.0 <= eps <= 1.0 for eps in args.eps):
        raise UsageError(f"--eps: budgets are L-inf distances in [0, 1] pixel units, got {list(args.eps)}")
    if args.p is not None and not all(0.0 <= p < 1.0 for p in args.p):
        raise UsageError(f"--p: missing-feature ratios must be in [0, 1), got {list(args.p)}")
    device = resolve_device(args.device)
    run = load_run(args.run_dir)
    data = load_fashion_mnist(args.data_dir).limit(test_limit=args.limit)
    if args.eps == () or args.p == ():
        raise UsageError("--eps and --p need at least one budget each when given")
    budgets = {name: values for name, values in (("eps", args.eps), ("p", args.p)) if values is not None}
    transfer_source = load_run(args.transfer_from) if args.transfer_from is not None else None
    settings = AttackSettings(attacks=args.attack, **budgets, eot_samples=args.eot, prediction_samples=args.samples,
                              batch_size=args.batch_size, pgd_steps=args.pgd_steps, apgd_steps=args.apgd_steps,
                              square_queries=args.square_queries, proxy=args.proxy, proxies=args.proxies,
                              worst_case_steps=args.worst_case_steps, check_convergence=not args.no_convergence_check,
                              seed=args.seed, precision=args.precision)
    report = attack_run(run, data, settings, transfer_source=transfer_source, device=device,
                        progress=not args.no_progress)
    print(f"{run.path}: clean accuracy {report.clean_accuracy:.1%} on {data.test_labels.shape[0]} test images "
          f"(averaged predictor, fixed draws)")
    print(format_attack_table(report.rows))
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"table written to {run.path / 'attacks.csv'} and attacks.json")


def certify(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    run = load_run(args.run_dir)
    data = load_fashion_mnist(args.data_dir).limit(test_limit=args.limit)
    settings = CertifySettings(n0=args.n0, n=args.n, alpha=args.alpha, batch=args.batch, seed=args.seed,
                               sigma=args.sigma)
    result = certify_run(run, data, settings, device=device, progress=not args.no_progress)
    abstained = sum(row.prediction == ABSTAIN for row in result.rows)
    print(f"{run.path}: smoothed classifier, sigma {result.sigma:g}, n0 {settings.n0}, n {settings.n}, "
          f"alpha {settings.alpha:g}, on {len(result.rows)} test images ({abstained} abstained)")
    print("certified accuracy at L2 radius " + "  ".join(f"{radius:g}: {accuracy:.1%}"
                                                          for radius, accuracy in result.accuracy.items()))
    print(f"certificates written to {run.path / CERTIFY_CSV} and {CERTIFY_JSON}")


def report(args: argparse.Namespace) -> None:
    from stochrelax.report.page import build_report

    command = shlex.join(["stochrelax", "report", *map(str, args.run_dirs), "--out", str(args.out),
                          "--limit", str(args.limit), "--tsne-count", str(args.tsne_count)]
                         + (["--data-dir", str(args.data_dir)] if args.data_dir else []))
    data = load_fashion_mnist(args.data_dir).limit(test_limit=args.limit)
    page = build_report(args.run_dirs, args.out, data, command, args.tsne_count, progress=not args.no_progress)
    print(f"report written to {page} (tables also in {page.parent / 'report.md'})")


def results(args: argparse.Namespace) -> None:
    from stochrelax.study.reproduce import analyse_study

    for problem in unfinished_work(args.root) if (args.root / SWEEP_FILE).is_file() else []:
        print(f"warning: unfinished: {problem}; run the sweep again to finish it")
    files = analyse_study(args.root, args.out)
    print(files.verdicts_md.read_text())
    print(files.results_md.read_text(), end="")
    print(f"written to {', '.join(map(str, files))}")


def _print_job(result: JobResult) -> None:
    if result.status == "failed":
        print(f"FAILED {result.label}: {result.error}", flush=True)
        return
    print(f"done {result.label}: test accuracy {result.test_accuracy:.2%} ({result.work}, {result.seconds:.0f}s)",
          flush=True)


def _sweep_options(args: argparse.Namespace, runs: int) -> dict[str, Any]:
    """The settings of ``sweep`` and ``reproduce`` as :func:`~stochrelax.study.sweep.run_sweep`'s keywords; prints
    what is about to run."""
    if args.ray_address is not None and args.backend != "ray":
        raise UsageError("--ray-address needs --backend ray")
    device = resolve_device(args.device)
    workers = args.workers or (1 if device.type == "cuda" else usable_cpus())
    print(f"sweep {args.grid}: {runs} runs x {args.seeds} seeds, preset {args.preset}, {args.backend} backend"
          + (f" ({workers} workers)" if args.backend == "local" else "") + f" -> {args.out}", flush=True)
    return {"seeds": args.seeds, "preset": args.preset, "backend": args.backend, "workers": workers,
            "ray_address": args.ray_address, "data_dir": args.data_dir, "device": str(device),
            "progress": not args.no_progress, "on_result": _print_job}


def _exit_status(results: list[JobResult]) -> int:
    """Prints how many jobs finished; 1 when one failed."""
    failed = [result.label for result in results if result.status == "failed"]
    print(f"sweep finished: {len(results) - len(failed)} of {len(results)} runs done"
          + (f", {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def sweep(args: argparse.Namespace) -> int:
    runs = load_grid(args.grid)
    return _exit_status(run_sweep(runs, args.out, **_sweep_options(args, len(runs))))


def reproduce(args: argparse.Namespace) -> int:
    from stochrelax.study.reproduce import reproduce

    if args.max_seeds is not None and not args.until_decided:
        raise UsageError("--max-seeds needs --until-decided")
    looks = LookPlan.two_looks(args.seeds, args.max_seeds or 2 * args.seeds) if args.until_decided else None
    args.out = args.out or Path("runs") / f"reproduce-{args.preset}"
    command = shlex.join(["stochrelax", "reproduce", "--preset", args.preset, "--seeds", str(args.seeds),
                          "--out", str(args.out)] + (["--grid", str(args.grid)] if args.grid != STUDY_GRID else [])
                         + (["--until-decided", "--max-seeds", str(looks.seeds[-1])] if looks else []))
    runs = load_grid(args.grid)
    options = _sweep_options(args, len(runs))
    if looks is not None:
        print(f"then {looks.describe(1)}: up to {len(runs) * (looks.seeds[1] - looks.seeds[0])} more jobs, only for "
              "the configurations that a claim still inconclusive at the first look reads", flush=True)
    outcome = reproduce(runs, args.out, command=command, figure_images=args.limit, tsne_count=args.tsne_count,
                        looks=looks, on_plan=lambda line: print(line, flush=True), **options)
    status = _exit_status(outcome.jobs)
    print(outcome.files.verdicts_md.read_text())
    print("results: " + ", ".join(str(path) for path in outcome.files))
    print(f"report written to {outcome.report}")
    return status


def bench(args: argparse.Namespace) -> None:
    """Runs ``benchmarks.run`` of the source checkout that this stochrelax is installed from.

    The benchmarks are not part of the installed package: they live in ``benchmarks/``
    beside ``src/``, which an editable install (``pip install -e .``) leaves in place.
    """
    root = Path(__file__).resolve().parents[3]  # src/stochrelax/cli/commands.py -> the checkout
    if not (root / "benchmarks").is_dir():
        raise UsageError("stochrelax bench runs from a source checkout of stochrelax (the benchmarks are not "
                         "installed with the package): git clone the repository, pip install -e . in it, then "
                         "python -m benchmarks (or stochrelax bench) there")
    sys.path.insert(0, str(root))
    import benchmarks

    benchmarks.run(quick=args.quick, out=args.out, threads=args.threads, data_dir=args.data_dir,
                   progress=not args.no_progress)


def runs(args: argparse.Namespace) -> None:
    from stochrelax.analysis.catalog import list_runs, status_table
    from stochrelax.analysis.results import text_table

    statuses = list_runs(args.dirs)
    if args.json:
        print(json.dumps([status.as_json() for status in statuses], indent=2))
        return
    if not statuses:
        print(f"no run directories below {', '.join(map(str, args.dirs))}")
        return
    root = args.dirs[0] if len(args.dirs) == 1 else None
    print(text_table(status_table(statuses, root)))
    counts = {state: sum(status.status == state for status in statuses) for state in dict.fromkeys(
        status.status for status in statuses)}
    print(f"{len(statuses)} runs: " + ", ".join(f"{count} {state}" for state, count in counts.items()))


def compare(args: argparse.Namespace) -> None:
    from stochrelax.analysis.catalog import compare_runs
    from stochrelax.analysis.results import markdown_table, text_table

    table = compare_runs(args.run_dirs)
    print(markdown_table(table) if args.markdown else text_table(table))


def data_info(args: argparse.Namespace) -> None:
    info = find_data(args.data_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"source: {info['source']}")
    for entry in info["files"]:
        print(f"  {entry['name']}: {entry['bytes_compressed']:,} bytes, sha256 {entry['sha256'][:16]}… "
              f"{'OK' if entry['ok'] else 'MISMATCH'}")
    print(f"train: {info['train']:,} images   test: {info['test']:,} images")
    print(f"train pixel mean {info['pixel_mean']:.4f}  std {info['pixel_std']:.4f}  (in [0, 1] units)")


