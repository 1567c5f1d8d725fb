"""Command-line interface: ``stochrelax train | evaluate | attack | report | sweep | results | reproduce | bench | data info``.

Every command validates its inputs before doing any work and reports a bad input
as one line on stderr (``stochrelax: error: ...``) with exit status 2, leaving every
file as it was; ``stochrelax --debug COMMAND`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from stochrelax import __version__
from stochrelax.attacks.proxies import Proxy
from stochrelax.config import ConfigError, load_config
from stochrelax.data import DataError, data_info, load_fashion_mnist
from stochrelax.evaluate import evaluate_run
from stochrelax.robustness import (DEFAULT_BUDGETS, DEFAULT_PROXIES, EVALUATIONS, THESIS_ATTACKS, AttackSettings,
                                   attack_run)
from stochrelax.runs import CONFIG_FILE, SUMMARY_FILE, RunDirError, check_run_dir, is_finished, load_run
from stochrelax.sweep import (BACKENDS, PRESETS, SWEEP_FILE, JobResult, SweepInterrupted, load_grid, recorded_preset,
                              run_sweep, unfinished_work, usable_cpus)
from stochrelax.train import TrainingDiverged, train_run

if TYPE_CHECKING:  # the claims pull in scipy: imported where they are needed
    from stochrelax.claims import StudyScope

__all__ = ["main", "build_parser", "resolve_device"]

class UsageError(Exception):
    """A command-line value that cannot be used."""


_CONTINUE_STUDY = "run the same command again to continue: finished runs are kept, unfinished ones resume"
USER_ERRORS = (UsageError, ConfigError, DataError, RunDirError, TrainingDiverged, SweepInterrupted)


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


def _train(args: argparse.Namespace) -> None:
    if (args.config is None) == (args.resume is None):
        raise UsageError("train: give a CONFIG to start a run or --resume RUN_DIR to continue one")
    if args.resume is not None:
        if not (args.resume / CONFIG_FILE).is_file():
            raise UsageError(f"--resume {args.resume}: not a run directory (no {CONFIG_FILE})")
        args.config, args.out = args.resume / CONFIG_FILE, args.resume
    overrides = {
        "train": {key: value for key, value in (("epochs", args.epochs), ("seed", args.seed)) if value is not None},
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


def _evaluate(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    finished_runs = [load_run(run_dir) for run_dir in args.run_dirs]
    data = load_fashion_mnist(args.data_dir).limit(test_limit=args.test_limit)
    for run in finished_runs:
        result = evaluate_run(run, data, samples=args.samples, device=device, seed=args.seed)
        print(f"{run.path}: test accuracy {result.accuracy:.2%}  NLL {result.nll:.4f}  "
              f"(K={result.samples} noise samples, {result.examples} images)")


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _attack_names(text: str) -> tuple[str, ...]:
    names = tuple(EVALUATIONS) if text == "all" else tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in EVALUATIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown attack(s) {', '.join(unknown) or text!r}; "
                                         f"valid: {', '.join(EVALUATIONS)}, all")
    return names


def _proxy_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated proxies such as own,tanh:0.5, got {text!r}")
    for name in names:
        try:
            Proxy.parse(name)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return names


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


def _attack(args: argparse.Namespace) -> None:
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
                              seed=args.seed)
    report = attack_run(run, data, settings, transfer_source=transfer_source, device=device,
                        progress=not args.no_progress)
    print(f"{run.path}: clean accuracy {report.clean_accuracy:.1%} on {data.test_labels.shape[0]} test images "
          f"(averaged predictor, fixed draws)")
    print(format_attack_table(report.rows))
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"table written to {run.path / 'attacks.csv'} and attacks.json")


def _output_directory(path: Path | None) -> None:
    if path is not None and path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file; give a directory")


def _report(args: argparse.Namespace) -> None:
    from stochrelax.report import build_report

    _output_directory(args.out)
    command = shlex.join(["stochrelax", "report", *map(str, args.run_dirs), "--out", str(args.out),
                          "--limit", str(args.limit), "--tsne-count", str(args.tsne_count)]
                         + (["--data-dir", str(args.data_dir)] if args.data_dir else []))
    data = load_fashion_mnist(args.data_dir).limit(test_limit=args.limit)
    page = build_report(args.run_dirs, args.out, data, command, args.tsne_count, progress=not args.no_progress)
    print(f"report written to {page} (tables also in {page.parent / 'report.md'})")


def _study_scope(root: Path) -> StudyScope:
    """What the study in ``root`` can judge, from the preset its sweep recorded."""
    from stochrelax.claims import StudyScope

    recorded = recorded_preset(root)
    if recorded is None:
        return StudyScope()
    name, preset = recorded
    return StudyScope(name, preset.converged, preset.pipeline_check)


def _results(args: argparse.Namespace) -> None:
    from stochrelax.claims import analyse_study

    _output_directory(args.out)
    for problem in unfinished_work(args.root) if (args.root / SWEEP_FILE).is_file() else []:
        print(f"warning: unfinished: {problem}; run the sweep again to finish it")
    files = analyse_study(args.root, args.out, _study_scope(args.root))
    print(files.verdicts_md.read_text())
    print(files.results_md.read_text(), end="")
    print(f"written to {', '.join(map(str, files))}")


def _print_job(result: JobResult) -> None:
    if result.status == "failed":
        print(f"FAILED {result.label}: {result.error}", flush=True)
        return
    work = [step for step, done in (("trained", result.trained), ("attacked", result.attacked)) if done]
    print(f"done {result.label}: test accuracy {result.test_accuracy:.2%} "
          f"({' and '.join(work) or 'already complete'}, {result.seconds:.0f}s)", flush=True)


def _run_sweep(args: argparse.Namespace) -> list[JobResult]:
    """The sweep of ``sweep`` and ``reproduce``: validates, runs, prints a line per job."""
    if args.ray_address is not None and args.backend != "ray":
        raise UsageError("--ray-address needs --backend ray")
    runs = load_grid(args.grid)
    device = resolve_device(args.device)
    workers = args.workers or (1 if device.type == "cuda" else usable_cpus())
    print(f"sweep {args.grid}: {len(runs)} runs x {args.seeds} seeds, preset {args.preset}, "
          f"{args.backend} backend" + (f" ({workers} workers)" if args.backend == "local" else "")
          + f" -> {args.out}", flush=True)
    results = run_sweep(runs, args.out, seeds=args.seeds, preset=args.preset, backend=args.backend, workers=workers,
                        ray_address=args.ray_address, data_dir=args.data_dir, device=str(device),
                        progress=not args.no_progress, on_result=_print_job)
    failed = [result for result in results if result.status == "failed"]
    print(f"sweep finished: {len(results) - len(failed)} of {len(results)} runs done"
          + (f", {len(failed)} failed: {', '.join(result.label for result in failed)}" if failed else ""))
    return results


def _sweep(args: argparse.Namespace) -> int:
    results = _run_sweep(args)
    return 1 if any(result.status == "failed" for result in results) else 0


STUDY_GRID = Path(__file__).resolve().parent / "configs" / "thesis_study.yaml"  # shipped with the package
FIGURE_RUNS = ("relu_deterministic-batch_norm", "relu_adversarial_fgsm", "relu_noise-gaussian-additive-0.05",
               "relu_noise-logistic-additive-0.05", "sign_noise-logistic-ste")
"""Configurations whose seed-0 run gets the per-run figures of ``reproduce``'s report."""


def _reproduce(args: argparse.Namespace) -> int:
    from stochrelax.claims import analyse_study
    from stochrelax.report import build_report

    args.out = args.out or Path("runs") / f"reproduce-{args.preset}"
    command = shlex.join(["stochrelax", "reproduce", "--preset", args.preset, "--seeds", str(args.seeds),
                          "--out", str(args.out)] + (["--grid", str(args.grid)] if args.grid != STUDY_GRID else []))
    results = _run_sweep(args)
    written = analyse_study(args.out, scope=_study_scope(args.out))
    print(written.verdicts_md.read_text())
    print("results: " + ", ".join(str(path) for path in written))
    finished = [args.out / f"{name}-seed0" for name in FIGURE_RUNS if is_finished(args.out / f"{name}-seed0")]
    figure_runs = finished or sorted(path.parent for path in args.out.glob(f"*/{SUMMARY_FILE}"))[:len(FIGURE_RUNS)]
    data = load_fashion_mnist(args.data_dir).limit(test_limit=args.limit)
    page = build_report(figure_runs, args.out / "report", data, command, args.tsne_count,
                        progress=not args.no_progress, study_root=args.out)
    print(f"report written to {page}")
    return 1 if any(result.status == "failed" for result in results) else 0


def _bench(args: argparse.Namespace) -> None:
    """Runs ``benchmarks.run`` of the source checkout that this stochrelax is installed from.

    The benchmarks are not part of the installed package: they live in ``benchmarks/``
    beside ``src/``, which an editable install (``pip install -e .``) leaves in place.
    """
    root = Path(__file__).resolve().parents[2]  # src/stochrelax/cli.py -> the checkout
    if not (root / "benchmarks").is_dir():
        raise UsageError("stochrelax bench runs from a source checkout of stochrelax (the benchmarks are not "
                         "installed with the package): git clone the repository, pip install -e . in it, then "
                         "python -m benchmarks (or stochrelax bench) there")
    sys.path.insert(0, str(root))
    import benchmarks

    benchmarks.run(quick=args.quick, out=args.out, threads=args.threads, data_dir=args.data_dir,
                   progress=not args.no_progress)


def _data_info(args: argparse.Namespace) -> None:
    info = data_info(args.data_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"source: {info['source']}")
    for entry in info["files"]:
        print(f"  {entry['name']}: {entry['bytes_compressed']:,} bytes, sha256 {entry['sha256'][:16]}… "
              f"{'OK' if entry['ok'] else 'MISMATCH'}")
    print(f"train: {info['train']:,} images   test: {info['test']:,} images")
    print(f"train pixel mean {info['pixel_mean']:.4f}  std {info['pixel_std']:.4f}  (in [0, 1] units)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help text without breaking names like ``apgd-ce`` at their hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(text, width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument as a :class:`UsageError`: one line, exit status 2, like every other error."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, formatter_class=_HelpFormatter, **kwargs)

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stochrelax",
        description="Stochastic neurons (noise in pre-activations), trained on Fashion-MNIST, "
                    "and their adversarial robustness.")
    parser.add_argument("--version", action="version", version=f"stochrelax {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error in a command, show the full Python traceback instead of one line")
    parser.set_defaults(interrupted="nothing was lost but the work in progress")  # what Ctrl-C says to do next
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                         help="directory with the four Fashion-MNIST .gz files (default: $STOCHRELAX_DATA, "
                              "/usr/share/datasets/fashion-mnist, then a download into the cache)")
        sub.add_argument("--device", default="auto", choices=list(DEVICES),
                         help="where to compute (default: auto = CUDA when present)")

    train = commands.add_parser("train", help="train a network from a YAML config and write a run directory",
                                description="Train a network from a YAML config and write a run directory.")
    train.add_argument("config", type=Path, nargs="?", default=None,
                       help="YAML config, e.g. configs/relu_deterministic.yaml")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue an interrupted run from its last epoch checkpoint (instead of CONFIG)")
    train.add_argument("--out", type=Path, default=None, metavar="DIR", help="run directory (default: runs/CONFIG-seedS)")
    train.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help="override train.epochs")
    train.add_argument("--seed", type=int, default=None, metavar="S", help="override train.seed")
    train.add_argument("--train-limit", type=_positive_int, default=None, metavar="N", help="use the first N training images")
    train.add_argument("--test-limit", type=_positive_int, default=None, metavar="N", help="use the first N test images")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="test accuracy of finished runs",
                                   description="Test accuracy and NLL of finished runs, averaging K noise samples.")
    evaluate.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    evaluate.add_argument("--samples", type=_positive_int, default=1, metavar="K",
                          help="K softmax samples averaged per prediction (default 1, the thesis setting)")
    evaluate.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the noise draws")
    evaluate.add_argument("--test-limit", type=_positive_int, default=None, metavar="N", help="use the first N test images")
    common(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    attack = commands.add_parser(
        "attack", help="attack a finished run and write its robustness table",
        description="Attack a finished run on the test set, write attacks.csv and attacks.json in the run "
                    "directory, and warn about signs of gradient masking. Stochastic models are attacked "
                    "twice per gradient attack: with one noise draw and with --eot draws (EOT). "
                    "--attack worst-case adds the adaptive per-example worst case, the robust accuracy to report.")
    attack.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    attack.add_argument("--attack", type=_attack_names, default=THESIS_ATTACKS, metavar="NAMES",
                        help=f"comma-separated names from {', '.join(EVALUATIONS)}, or all; worst-case: an "
                             "image is robust only if it survives every attack of an adaptive ensemble "
                             f"(default: the thesis' {','.join(THESIS_ATTACKS)})")
    attack.add_argument("--eps", type=_float_list, default=None, metavar="LIST",
                        help=f"L-inf budgets in pixels (default {','.join(map(str, DEFAULT_BUDGETS['eps']))})")
    attack.add_argument("--p", type=_float_list, default=None, metavar="LIST",
                        help=f"missing-feature ratios (default {','.join(map(str, DEFAULT_BUDGETS['p']))})")
    attack.add_argument("--eot", type=_positive_int, default=16, metavar="K",
                        help="noise draws per attack gradient of the EOT variant (default 16)")
    attack.add_argument("--samples", type=_positive_int, default=16, metavar="K",
                        help="softmax samples of the averaged predictor judging each result (default 16)")
    attack.add_argument("--limit", type=_positive_int, default=1000, metavar="N",
                        help="attack the first N test images (default 1000; 10000 is the whole test set)")
    attack.add_argument("--batch-size", type=_positive_int, default=500, metavar="B")
    attack.add_argument("--pgd-steps", type=_positive_int, default=20, metavar="N", help="default 20")
    attack.add_argument("--apgd-steps", type=_positive_int, default=100, metavar="N", help="default 100")
    attack.add_argument("--square-queries", type=_positive_int, default=1000, metavar="N",
                        help="default 1000 (AutoAttack: 5000; a stochastic model costs 2 x --eot passes per query)")
    attack.add_argument("--proxy", type=lambda text: _proxy_list(text)[0], default="own", metavar="PROXY",
                        help="how the per-attack rows differentiate sign units: own (the trained estimator's "
                             "proxy, default) or tanh:T")
    attack.add_argument("--proxies", type=_proxy_list, default=DEFAULT_PROXIES, metavar="LIST",
                        help=f"proxies the worst case tries on sign units (default {','.join(DEFAULT_PROXIES)})")
    attack.add_argument("--worst-case-steps", type=_positive_int, default=50, metavar="N",
                        help="iterations of the worst case's PGD members (default 50)")
    attack.add_argument("--transfer-from", type=Path, default=None, metavar="RUN_DIR",
                        help="a second, independently trained run: the worst case adds PGD examples crafted on it")
    attack.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of noise, random starts, masks and the fixed evaluation draws")
    attack.add_argument("--no-convergence-check", action="store_true",
                        help="skip the probe that reruns PGD with twice the steps and EOT samples")
    attack.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(attack)
    attack.set_defaults(handler=_attack)

    report = commands.add_parser(
        "report", help="one HTML page (and report.md) with the tables and figures of finished runs",
        description="Write OUT/index.html — summary table and every figure of the thesis, no network or "
                    "JavaScript needed — and OUT/report.md with the same tables.")
    report.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, required=True, metavar="DIR", help="report directory")
    report.add_argument("--limit", type=_positive_int, default=2000, metavar="N",
                        help="first N test images for the figures that run the models (default 2000)")
    report.add_argument("--tsne-count", type=_positive_int, default=2000, metavar="N",
                        help="test images per t-SNE plot (default 2000)")
    report.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="directory with the four Fashion-MNIST .gz files")
    report.add_argument("--no-progress", action="store_true", help="no progress bar")
    report.set_defaults(handler=_report)

    results = commands.add_parser(
        "results", help="aggregate runs over seeds and judge the thesis' claims (CSV and Markdown)",
        description="Aggregate every finished run below RUNS into results.csv and results.md (one row per "
                    "configuration, mean ± std over seeds of clean accuracy and of accuracy under each attack, "
                    "budget and EOT setting), and judge the thesis' claims into verdicts.csv and verdicts.md "
                    "(estimate, 95% confidence interval over seeds and test images, holds / fails / inconclusive).")
    results.add_argument("root", type=Path, metavar="RUNS", help="directory holding run directories")
    results.add_argument("--out", type=Path, default=None, metavar="DIR", help="where to write (default: RUNS)")
    results.set_defaults(handler=_results)

    def sweep_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--seeds", type=_positive_int, default=1, metavar="N", help="seeds 0..N-1 per run (default 1)")
        sub.add_argument("--preset", default="quick", choices=list(PRESETS),
                         help="smoke: minutes, a pipeline check; quick: well under an hour on 2 CPU cores, a first "
                              "answer on differences; standard: overnight with 3 seeds, answers every claim; "
                              "thesis: the full protocol (100 epochs, all data) (default quick)")
        sub.add_argument("--backend", default="local", choices=list(BACKENDS),
                         help="local: a process pool on this machine; ray: tasks on a running Ray cluster")
        sub.add_argument("--workers", type=_positive_int, default=None, metavar="W",
                         help="local processes at once, the CPU threads divided among them "
                              "(default: one per CPU core; 1 on CUDA)")
        sub.add_argument("--ray-address", default=None, metavar="ADDR",
                         help="Ray cluster to join (default: the one `ray start` left on this machine)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        common(sub)

    sweep = commands.add_parser(
        "sweep", help="train and attack every run x seed of an experiment grid; resumable",
        description="Train every run x seed of an experiment grid into OUT/NAME-seedS and attack it with the "
                    "thesis attacks (single-draw and EOT). Run it again to continue an interrupted sweep: "
                    "finished runs are skipped, unfinished ones resume from their last epoch checkpoint.")
    sweep.add_argument("grid", type=Path, metavar="GRID", help="experiment grid, e.g. configs/thesis_study.yaml")
    sweep.add_argument("--out", type=Path, required=True, metavar="DIR", help="study directory")
    sweep_options(sweep)
    sweep.set_defaults(handler=_sweep, interrupted=_CONTINUE_STUDY)

    reproduce = commands.add_parser(
        "reproduce", help="the thesis study in one command: sweep, results over seeds, verdicts, report",
        description="Run the thesis study (configs/thesis_study.yaml, shipped with the package) with a preset: "
                    "train and attack every run x seed (resumable: run it again after an interruption), "
                    "aggregate mean ± std over seeds into OUT/results.csv and results.md, judge each claim of "
                    "the thesis into OUT/verdicts.*, and write the report OUT/report/index.html.")
    reproduce.add_argument("--out", type=Path, default=None, metavar="DIR",
                           help="study directory (default: runs/reproduce-PRESET)")
    reproduce.add_argument("--grid", type=Path, default=STUDY_GRID, metavar="GRID",
                           help="experiment grid (default: the thesis study)")
    reproduce.add_argument("--limit", type=_positive_int, default=2000, metavar="N",
                           help="first N test images for the report's figures (default 2000)")
    reproduce.add_argument("--tsne-count", type=_positive_int, default=1000, metavar="N",
                           help="test images per t-SNE plot (default 1000)")
    sweep_options(reproduce)
    reproduce.set_defaults(handler=_reproduce, interrupted=_CONTINUE_STUDY)

    bench = commands.add_parser(
        "bench", help="benchmarks: stochrelax against the plain alternatives, as ratios measured in one run",
        description="Time stochrelax against the obvious alternatives in the same process (plain DataLoader "
                    "training, ART attacks, looped EOT and Monte Carlo prediction, a large matrix product), "
                    "alternating repetitions; print medians, ratios and spreads, and the end-to-end times.")
    bench.add_argument("--quick", action="store_true", help="tiny sizes, under a minute (what CI runs); "
                                                            "no end-to-end run")
    bench.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the report as JSON")
    bench.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                       help="torch threads (default 1: a sweep runs one single-thread worker per core)")
    bench.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                       help="directory with the four Fashion-MNIST .gz files")
    bench.add_argument("--no-progress", action="store_true", help="do not log each measurement to stderr")
    bench.set_defaults(handler=_bench)

    data = commands.add_parser("data", help="dataset commands", description="Dataset commands.")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    info = data_commands.add_parser("info", help="where Fashion-MNIST was found, checksums, sizes, pixel stats",
                                    description="Where Fashion-MNIST was found, checksums, sizes and pixel stats.")
    info.add_argument("--data-dir", type=Path, default=None, metavar="DIR", help="directory with the four .gz files")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_data_info)
    return parser


def _user_error(error: Exception) -> int:
    """Prints a user error as one line on stderr, whatever its message holds; returns exit status 2.

    Messages are written to be one line; a line break that still gets in (from a file name,
    say) is replaced by a space, so that the error is always exactly one line.
    """
    message = " ".join(line.strip() for line in str(error).splitlines())
    print(f"stochrelax: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stochrelax`` console script; returns the exit status.

    A user error (:data:`USER_ERRORS`) is one line on stderr and exit status 2, or, with
    ``--debug``, raised again so that its traceback shows. A bad command line is always
    one line: it has no traceback worth showing.
    """
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        return _user_error(error)
    try:
        status = args.handler(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        return _user_error(error)
    except OSError as error:  # a read or write the command did not foresee: the file and why
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        return _user_error(UsageError(f"{where}{error.strerror or error}; check the path, its permissions and the "
                                      "free space"))
    except KeyboardInterrupt:
        print(f"stochrelax: interrupted; {args.interrupted}", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, and how to report it
        if args.debug:
            raise
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(f"stochrelax: internal error ({type(error).__name__}: {first_line}); run the command again with "
              "--debug and report its traceback", file=sys.stderr)
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
