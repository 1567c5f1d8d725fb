"""The ``stochrelax`` argument parser: one small function per command (:data:`COMMANDS`).

A bad argument is a :class:`~stochrelax.cli.commands.UsageError`: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from stochrelax.attacks.proxies import Proxy
from stochrelax.base.version import __version__
from stochrelax.cli import commands
from stochrelax.cli.commands import DEVICES, UsageError
from stochrelax.evaluation.certification import CERTIFIED_RADII, CertifySettings
from stochrelax.evaluation.table import DEFAULT_BUDGETS, DEFAULT_PROXIES, EVALUATIONS, THESIS_ATTACKS
from stochrelax.models.allconv import PRECISIONS
from stochrelax.study.grid import PRESETS, STUDY_GRID
from stochrelax.study.sweep import BACKENDS

__all__ = ["build_parser", "COMMANDS"]


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


def _directory(text: str) -> Path:
    """An output directory: absent (it will be made) or a directory, not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give a directory")
    return path


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




def _add_data_dir(sub: argparse.ArgumentParser) -> None:
    """--data-dir, for every command that reads Fashion-MNIST."""
    sub.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                     help="directory with the four Fashion-MNIST .gz files (default: $STOCHRELAX_DATA, "
                          "/usr/share/datasets/fashion-mnist, then a download into the cache)")


def _add_common_options(sub: argparse.ArgumentParser) -> None:
    """--data-dir and --device, shared by every command that loads data and computes."""
    _add_data_dir(sub)
    sub.add_argument("--device", default="auto", choices=list(DEVICES),
                     help="where to compute (default: auto = CUDA when present)")


def _add_sweep_options(sub: argparse.ArgumentParser) -> None:
    """The options ``sweep`` and ``reproduce`` share."""
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
    _add_common_options(sub)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax train``."""
    train = subparsers.add_parser("train", help="train a network from a YAML config and write a run directory",
                                description="Train a network from a YAML config and write a run directory.")
    train.add_argument("config", type=Path, nargs="?", default=None,
                       help="YAML config, e.g. configs/relu_deterministic.yaml")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue an interrupted run from its last epoch checkpoint (instead of CONFIG)")
    train.add_argument("--out", type=Path, default=None, metavar="DIR", help="run directory (default: runs/CONFIG-seedS)")
    train.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help="override train.epochs")
    train.add_argument("--seed", type=int, default=None, metavar="S", help="override train.seed")
    train.add_argument("--precision", choices=list(PRECISIONS), default=None,
                       help="override train.precision: bfloat16 runs the convolutions in bfloat16 (autocast), the "
                            "rest in float32")
    train.add_argument("--train-limit", type=_positive_int, default=None, metavar="N", help="use the first N training images")
    train.add_argument("--test-limit", type=_positive_int, default=None, metavar="N", help="use the first N test images")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common_options(train)
    train.set_defaults(handler=commands.train)


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax evaluate``."""
    evaluate = subparsers.add_parser("evaluate", help="test accuracy of finished runs",
                                   description="Test accuracy and NLL of finished runs, averaging K noise samples.")
    evaluate.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    evaluate.add_argument("--samples", type=_positive_int, default=1, metavar="K",
                          help="K softmax samples averaged per prediction (default 1, the thesis setting)")
    evaluate.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the noise draws")
    evaluate.add_argument("--test-limit", type=_positive_int, default=None, metavar="N", help="use the first N test images")
    _add_common_options(evaluate)
    evaluate.set_defaults(handler=commands.evaluate)


def _add_attack(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax attack``."""
    attack = subparsers.add_parser(
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
    attack.add_argument("--precision", choices=list(PRECISIONS), default="float32",
                        help="of the convolutions while attacking and judging (default float32; bfloat16: "
                             "autocast, recorded in every row)")
    attack.add_argument("--no-convergence-check", action="store_true",
                        help="skip the probe that reruns PGD with twice the steps and EOT samples")
    attack.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common_options(attack)
    attack.set_defaults(handler=commands.attack)


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value:g}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def _add_certify(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax certify``."""
    defaults = CertifySettings()
    certify = subparsers.add_parser(
        "certify", help="certified L2 robustness of a run's smoothed classifier (randomized smoothing)",
        description="Certify the smoothed classifier of a finished run whose model adds Gaussian input noise "
                    "(model.input_noise), by CERTIFY of Cohen, Rosenfeld & Kolter (2019): per test image a "
                    "prediction and an L2 radius, in pixels, on which the smoothed classifier provably keeps it, "
                    "with probability at least 1 - alpha. Writes certify.csv and certify.json in the run "
                    "directory and prints the certified accuracy at radii "
                    f"{', '.join(f'{radius:g}' for radius in CERTIFIED_RADII)}. Runs without input noise are "
                    "refused: noise inside the network gives no such certificate.")
    certify.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    certify.add_argument("--sigma", type=_positive_float, default=None, metavar="SIGMA",
                         help="the smoothing noise std; must equal the model's input noise std (default: the model's)")
    certify.add_argument("--n0", type=_positive_int, default=defaults.n0, metavar="N",
                         help=f"noise draws that select the class (default {defaults.n0})")
    certify.add_argument("--n", type=_positive_int, default=defaults.n, metavar="N",
                         help=f"noise draws that bound its probability (default {defaults.n})")
    certify.add_argument("--alpha", type=_probability, default=defaults.alpha, metavar="A",
                         help=f"failure probability of each certificate (default {defaults.alpha:g})")
    certify.add_argument("--limit", type=_positive_int, default=500, metavar="N",
                         help="certify the first N test images (default 500)")
    certify.add_argument("--batch", type=_positive_int, default=defaults.batch, metavar="B",
                         help=f"noise draws per forward pass (default {defaults.batch})")
    certify.add_argument("--seed", type=int, default=defaults.seed, metavar="S",
                         help="seed of the noise draws; image i uses S + i")
    certify.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common_options(certify)
    certify.set_defaults(handler=commands.certify)


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax report``."""
    report = subparsers.add_parser(
        "report", help="one HTML page (and report.md) with the tables and figures of finished runs",
        description="Write OUT/index.html — summary table and every figure of the thesis, no network or "
                    "JavaScript needed — and OUT/report.md with the same tables.")
    report.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=_directory, required=True, metavar="DIR", help="report directory")
    report.add_argument("--limit", type=_positive_int, default=2000, metavar="N",
                        help="first N test images for the figures that run the models (default 2000)")
    report.add_argument("--tsne-count", type=_positive_int, default=2000, metavar="N",
                        help="test images per t-SNE plot (default 2000)")
    _add_data_dir(report)
    report.add_argument("--no-progress", action="store_true", help="no progress bar")
    report.set_defaults(handler=commands.report)


def _add_results(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax results``."""
    results = subparsers.add_parser(
        "results", help="aggregate runs over seeds and judge the thesis' claims (CSV and Markdown)",
        description="Aggregate every finished run below RUNS into results.csv and results.md (one row per "
                    "configuration, mean ± std over seeds of clean accuracy and of accuracy under each attack, "
                    "budget and EOT setting), and judge the thesis' claims into verdicts.csv and verdicts.md "
                    "(estimate, 95% confidence interval over seeds and test images, holds / fails / inconclusive).")
    results.add_argument("root", type=Path, metavar="RUNS", help="directory holding run directories")
    results.add_argument("--out", type=_directory, default=None, metavar="DIR", help="where to write (default: RUNS)")
    results.set_defaults(handler=commands.results)


def _add_sweep(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax sweep``."""
    sweep = subparsers.add_parser(
        "sweep", help="train and attack every run x seed of an experiment grid; resumable",
        description="Train every run x seed of an experiment grid into OUT/NAME-seedS and attack it with the "
                    "thesis attacks (single-draw and EOT). Run it again to continue an interrupted sweep: "
                    "finished runs are skipped, unfinished ones resume from their last epoch checkpoint.")
    sweep.add_argument("grid", type=Path, metavar="GRID", help="experiment grid, e.g. configs/thesis_study.yaml")
    sweep.add_argument("--out", type=Path, required=True, metavar="DIR", help="study directory")
    _add_sweep_options(sweep)
    sweep.set_defaults(handler=commands.sweep, interrupted=commands.CONTINUE_STUDY)


def _add_reproduce(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax reproduce``."""
    reproduce = subparsers.add_parser(
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
    reproduce.add_argument("--until-decided", action="store_true",
                           help="judge after --seeds seeds with 99%% intervals, then give --max-seeds seeds only to "
                                "the configurations that a still-inconclusive claim reads and judge those claims "
                                "again with 96%% intervals: α = 0.01 + 0.04 spent over the two looks")
    reproduce.add_argument("--max-seeds", type=_positive_int, default=None, metavar="N",
                           help="seeds of the second look with --until-decided (default: twice --seeds)")
    _add_sweep_options(reproduce)
    reproduce.set_defaults(handler=commands.reproduce, interrupted=commands.CONTINUE_STUDY)


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax bench``."""
    bench = subparsers.add_parser(
        "bench", help="benchmarks: stochrelax against the plain alternatives, as ratios measured in one run",
        description="Time stochrelax against the obvious alternatives in the same process (plain DataLoader "
                    "training, ART attacks, looped EOT and Monte Carlo prediction, a large matrix product), "
                    "alternating repetitions; print medians, ratios and spreads, and the end-to-end times.")
    bench.add_argument("--quick", action="store_true", help="tiny sizes, under a minute (what CI runs); "
                                                            "no end-to-end run")
    bench.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the report as JSON")
    bench.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                       help="torch threads (default 1: a sweep runs one single-thread worker per core)")
    _add_data_dir(bench)
    bench.add_argument("--no-progress", action="store_true", help="do not log each measurement to stderr")
    bench.set_defaults(handler=commands.bench)


def _add_runs(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax runs``."""
    runs = subparsers.add_parser(
        "runs", help="list the runs below directories: status, units, noise, epochs, accuracies",
        description="One line per run directory found below DIR (default: runs): its status (finished, "
                    "unfinished at epoch k of n, failed and why, damaged and why), units, noise, adversarial "
                    "training, epochs, clean accuracy, worst-case robust accuracy at eps 0.1 when attacked (the "
                    "number of test images in brackets) and when it last changed. Reads no weights.")
    runs.add_argument("dirs", nargs="*", type=Path, default=[Path("runs")], metavar="DIR")
    runs.add_argument("--json", action="store_true", help="print JSON, one object per run")
    runs.set_defaults(handler=commands.runs)


def _add_compare(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax compare``."""
    compare = subparsers.add_parser(
        "compare", help="finished runs side by side: the config fields that differ, then their metrics",
        description="Put finished runs side by side, one column each: the config fields in which they differ, "
                    "then clean accuracy, loss, epochs and the accuracy under every attack any of them was "
                    "attacked with (the number of test images in brackets).")
    compare.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    compare.add_argument("--markdown", action="store_true", help="print a Markdown table instead of aligned text")
    compare.set_defaults(handler=commands.compare)


def _add_data(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``stochrelax data info``."""
    data = subparsers.add_parser("data", help="dataset commands", description="Dataset commands.")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    info = data_commands.add_parser("info", help="where Fashion-MNIST was found, checksums, sizes, pixel stats",
                                    description="Where Fashion-MNIST was found, checksums, sizes and pixel stats.")
    _add_data_dir(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=commands.data_info)


COMMANDS = (_add_train, _add_evaluate, _add_attack, _add_certify, _add_report, _add_results, _add_sweep, _add_reproduce,
            _add_runs, _add_compare, _add_bench, _add_data)
"""Each adds one command's sub-parser, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``stochrelax`` parser: global options, then one sub-parser per command (:data:`COMMANDS`)."""
    parser = _Parser(
        prog="stochrelax",
        description="Stochastic neurons (noise in pre-activations), trained on Fashion-MNIST, "
                    "and their adversarial robustness.")
    parser.add_argument("--version", action="version", version=f"stochrelax {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error in a command, show the full Python traceback instead of one line")
    parser.set_defaults(interrupted="nothing was lost but the work in progress")  # what Ctrl-C says to do next
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


