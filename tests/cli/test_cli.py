"""Tests of the ``stochrelax`` command line (:mod:`stochrelax.cli`), run in-process through ``main``.

A bad input must give exit status 2 and exactly one line on stderr starting
``stochrelax: error:``, before any run directory is created.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from stochrelax.cli import main
from stochrelax.data import idx_files as data_files
from stochrelax.rundir import layout as runs, records

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "relu_deterministic.yaml"


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``stochrelax ARGV`` (usable in module-scoped fixtures)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(argv)
    return status, stdout.getvalue(), stderr.getvalue()


def assert_one_line_error(status: int, stderr: str, *fragments: str) -> str:
    assert status == 2
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("stochrelax: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def train_args(config: Path, out: Path, data_dir: Path, *extra: str, device: str = "cpu") -> list[str]:
    return ["train", str(config), "--out", str(out), "--data-dir", str(data_dir), "--device", device,
            "--no-progress", *extra]


# --- train and evaluate ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(real_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    status, stdout, stderr = run_main(train_args(CONFIG, out, real_data_dir, "--epochs", "1", "--train-limit",
                                                 "1000", "--test-limit", "500"))
    return out, status, stdout, stderr


def test_train_succeeds_and_prints_epoch_and_done_lines(trained):
    out, status, stdout, stderr = trained
    assert (status, stderr) == (0, "")
    lines = stdout.splitlines()
    assert lines[0] == f"training {CONFIG} on cpu -> {out}"
    assert re.fullmatch(r"epoch 1/1  train loss \d+\.\d{4} acc \d+\.\d\d%  test loss \d+\.\d{4} acc \d+\.\d\d%  "
                        r"\d+\.\ds \(\+\d+\.\ds eval\)", lines[1])
    assert re.fullmatch(rf"done: test accuracy \d+\.\d\d% after 1 epochs \(\d+\.\ds per epoch\); "
                        rf"run saved in {re.escape(str(out))}", lines[2])
    assert len(lines) == 3


def test_train_records_command_line_overrides_in_the_run_config(trained):
    out = trained[0]
    recorded = yaml.safe_load((out / runs.CONFIG_FILE).read_text())
    assert recorded["train"]["epochs"] == 1
    assert recorded["data"] == {"train_limit": 1000, "test_limit": 500}
    assert recorded["train"]["lr"] == 0.001 and recorded["train"]["seed"] == 0  # from the file and the default
    summary = runs.load_run(out).summary
    assert (summary["train_examples"], summary["test_examples"]) == (1000, 500)


def test_evaluate_prints_the_accuracy_of_the_run(trained, real_data_dir, capsys):
    out = trained[0]
    status = main(["evaluate", str(out), "--samples", "2", "--test-limit", "500", "--data-dir", str(real_data_dir),
                   "--device", "cpu"])
    captured = capsys.readouterr()
    assert (status, captured.err) == (0, "")
    accuracy = f"{runs.load_run(out).summary['test_accuracy']:.2%}"  # deterministic: the same 500 images
    assert re.fullmatch(rf"{re.escape(str(out))}: test accuracy {re.escape(accuracy)}  NLL \d+\.\d{{4}}  "
                        r"\(K=1 noise samples, 500 images\)\n", captured.out)


def test_train_with_an_existing_out_needs_overwrite(real_data_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    status = main(train_args(CONFIG, tmp_path, real_data_dir, "--epochs", "1"))
    assert_one_line_error(status, capsys.readouterr().err, str(tmp_path), "--overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- data info ---------------------------------------------------------------------------------

def test_data_info_verifies_all_four_files_and_prints_pixel_stats(real_data_dir, capsys):
    assert main(["data", "info", "--data-dir", str(real_data_dir)]) == 0
    out = capsys.readouterr().out
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        assert re.search(rf"^  {re.escape(name)}: [\d,]+ bytes, sha256 [0-9a-f]{{16}}… OK$", out, re.MULTILINE)
    assert "train: 60,000 images   test: 10,000 images" in out
    assert "train pixel mean 0.2860  std 0.3530" in out


# --- errors ------------------------------------------------------------------------------------

def test_bad_config_key_is_a_one_line_error_and_creates_no_run(real_data_dir, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epochz: 3\n")
    out = tmp_path / "run"
    status = main(train_args(config, out, real_data_dir))
    assert_one_line_error(status, capsys.readouterr().err, str(config), "train.epochz: unknown key", "epochs")
    assert not out.exists()


def test_missing_config_file_is_a_one_line_error(real_data_dir, tmp_path, capsys):
    config = tmp_path / "missing.yaml"
    status = main(train_args(config, tmp_path / "run", real_data_dir))
    assert_one_line_error(status, capsys.readouterr().err, f"{config}: config file not found")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("contents", ["missing", "empty", "other_files"])
def test_evaluate_on_a_directory_that_is_not_a_run_is_a_one_line_error(real_data_dir, tmp_path, capsys, contents):
    path = tmp_path / "somewhere"
    if contents != "missing":
        path.mkdir()
    if contents == "other_files":
        (path / "notes.txt").write_text("hello")
    status = main(["evaluate", str(path), "--data-dir", str(real_data_dir), "--device", "cpu"])
    assert_one_line_error(status, capsys.readouterr().err, str(path), "not a stochrelax run directory")


@pytest.mark.parametrize("command", ["train", "evaluate", "data info"])
def test_empty_data_dir_is_a_one_line_error_naming_a_missing_file(command, trained, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = {
        "train": train_args(CONFIG, tmp_path / "run", empty),
        "evaluate": ["evaluate", str(trained[0]), "--data-dir", str(empty), "--device", "cpu"],
        "data info": ["data", "info", "--data-dir", str(empty)],
    }[command]
    line = assert_one_line_error(main(argv), capsys.readouterr().err, str(empty), "is missing from")
    assert re.search(r"(train|t10k)-(images-idx3|labels-idx1)-ubyte\.gz is missing", line)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the error when CUDA is absent")
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_device_cuda_without_cuda_is_a_one_line_error(command, real_data_dir, tmp_path, capsys):
    argv = {
        "train": train_args(CONFIG, tmp_path / "run", real_data_dir, device="cuda"),
        "evaluate": ["evaluate", str(tmp_path), "--data-dir", str(real_data_dir), "--device", "cuda"],
    }[command]
    assert_one_line_error(main(argv), capsys.readouterr().err, "--device cuda", "no CUDA device")
    assert not (tmp_path / "run").exists()


def test_bench_outside_a_source_checkout_is_a_one_line_error_saying_how(monkeypatch, tmp_path, capsys):
    """An installed stochrelax has no ``benchmarks/`` beside it: the error says where they are."""
    monkeypatch.setattr("stochrelax.cli.commands.__file__", str(tmp_path / "site-packages" / "stochrelax" / "cli" / "commands.py"))
    assert_one_line_error(main(["bench", "--quick"]), capsys.readouterr().err, "source checkout",
                          "python -m benchmarks")


# --- attack ------------------------------------------------------------------------------------

def test_attack_prints_the_table_and_writes_it_to_the_run(trained, real_data_dir, capsys):
    out = trained[0]
    status = main(["attack", str(out), "--attack", "fgsm,missing", "--eps", "0,0.1", "--p", "0.2", "--limit", "50",
                   "--no-convergence-check", "--no-progress", "--data-dir", str(real_data_dir), "--device", "cpu"])
    captured = capsys.readouterr()
    assert (status, captured.err) == (0, "")
    lines = captured.out.splitlines()
    assert re.fullmatch(rf"{re.escape(str(out))}: clean accuracy \d+\.\d% on 50 test images "
                        r"\(averaged predictor, fixed draws\)", lines[0])
    assert lines[1].split() == ["attack", "budget", "EOT", "accuracy", "clean", "single", "draw", "success", "L-inf",
                                "n", "K", "steps", "proxy", "seconds"]
    assert [line.split()[:2] for line in lines[3:6]] == [["fgsm", "eps=0"], ["fgsm", "eps=0.1"], ["missing", "p=0.2"]]
    assert [line.split()[8:12] for line in lines[3:6]] == [["50", "1", "1", "own"], ["50", "1", "1", "own"],
                                                            ["50", "1", "-", "-"]]
    assert (out / runs.ATTACKS_CSV).is_file() and (out / runs.ATTACKS_JSON).is_file()


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--attack", "deepfool"], "valid: fgsm"),
    (["--eps", "-0.1"], "--eps"),
    (["--eps", "0.1,abc"], "comma-separated numbers"),
    (["--p", "1.0"], "--p"),
    (["--eps", ""], "at least one budget"),
    (["--proxies", "tanh"], "needs a temperature"),
    (["--proxy", "relu:1"], "valid: tanh, own"),
], ids=["unknown_attack", "negative_eps", "not_a_number", "p_of_one", "empty_eps", "proxy_without_temperature",
        "unknown_proxy"])
def test_bad_attack_arguments_are_one_line_errors(trained, argv, fragment, capsys):
    assert_one_line_error(main(["attack", str(trained[0]), *argv]), capsys.readouterr().err, fragment)


# --- help --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "mentions"), [
    ([], ["train", "evaluate", "attack", "certify", "runs", "compare", "data", "--version", "--debug", "full Python traceback"]),
    (["train"], ["config", "--resume", "--out", "--epochs", "--seed", "--train-limit", "--test-limit", "--overwrite",
                 "--no-progress", "--data-dir", "--device", "--precision", "bfloat16"]),
    (["evaluate"], ["RUN_DIR", "--samples", "--seed", "--test-limit", "--data-dir", "--device"]),
    (["attack"], ["RUN_DIR", "--attack", "--eps", "--p", "--eot", "--samples", "--limit", "--seed", "apgd-ce",
                  "square", "missing", "worst-case", "--proxy", "--proxies", "--worst-case-steps", "--transfer-from",
                  "--precision"]),
    (["certify"], ["RUN_DIR", "--sigma", "--n0", "--n", "--alpha", "--limit", "--batch", "--seed", "--no-progress",
                   "--data-dir", "--device", "L2 radius", "Cohen"]),
    (["data", "info"], ["--data-dir", "--json"]),
    (["sweep"], ["GRID", "--out", "--seeds", "--preset", "smoke", "quick", "standard", "thesis", "--backend", "ray",
                 "--workers", "--ray-address"]),
    (["reproduce"], ["--out", "--grid", "--seeds", "--preset", "--backend", "--workers", "--tsne-count",
                     "--until-decided", "--max-seeds"]),
    (["bench"], ["--quick", "--out", "--data-dir"]),
    (["runs"], ["DIR", "--json", "finished", "unfinished", "failed", "damaged"]),
    (["compare"], ["RUN_DIR", "--markdown"]),
], ids=["top_level", "train", "evaluate", "attack", "certify", "data_info", "sweep", "reproduce", "bench", "runs", "compare"])
def test_help_exits_zero_and_lists_the_arguments(argv, mentions, capsys):
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: stochrelax {' '.join(argv)}".rstrip())
    for mention in mentions:
        assert mention in out


def test_installed_console_script_runs():
    script = Path(sys.executable).parent / "stochrelax"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: stochrelax")
    assert "train" in result.stdout and "evaluate" in result.stdout


# --- resume, sweep, results, reproduce ---------------------------------------------------------

def test_train_resume_continues_an_interrupted_run(real_data_dir, tmp_path):
    from stochrelax.data.fashion_mnist import load_fashion_mnist
    from stochrelax.rundir.config import load_config
    from stochrelax.training.loop import train_run

    config = load_config(CONFIG, {"train": {"epochs": 2}, "data": {"train_limit": 500, "test_limit": 200}})

    def killed_after_epoch_1(metrics):
        if metrics.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, load_fashion_mnist(real_data_dir), tmp_path / "run", on_epoch=killed_after_epoch_1)
    status, stdout, stderr = run_main(["train", "--resume", str(tmp_path / "run"), "--data-dir", str(real_data_dir),
                                       "--device", "cpu", "--no-progress"])
    assert status == 0, stderr
    assert stdout.startswith("resuming") and "epoch 2/2" in stdout and "epoch 1/2" not in stdout
    assert [m["epoch"] for m in records.read_metrics(tmp_path / "run")] == [1, 2]


@pytest.mark.parametrize(("argv", "fragments"), [
    (["train"], ["give a CONFIG", "--resume RUN_DIR"]),
    (["train", str(CONFIG), "--resume", "x"], ["give a CONFIG", "--resume RUN_DIR"]),
    (["train", "--resume", "/nonexistent"], ["not a run directory"]),
    (["sweep", str(CONFIG.parent / "thesis_study.yaml"), "--out", "x", "--ray-address", "a:1"],
     ["--ray-address needs --backend ray"]),
    (["sweep", str(CONFIG.parent / "thesis_study.yaml"), "--out", "x", "--preset", "huge"],
     ["invalid choice: 'huge'", "smoke"]),
    (["sweep", str(CONFIG), "--out", "x"], ["unknown key(s)", "model, train"]),
    (["reproduce", "--out", "x", "--max-seeds", "6"], ["--max-seeds needs --until-decided"]),
    (["reproduce", "--out", "x", "--seeds", "1", "--until-decided"], ["at least 2 at the first"]),
    (["reproduce", "--out", "x", "--seeds", "3", "--until-decided", "--max-seeds", "3"],
     ["more seeds than the one before"]),
])
def test_bad_resume_and_sweep_arguments_are_one_line_errors(argv, fragments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(main(argv), capsys.readouterr().err, *fragments)
    assert list(tmp_path.iterdir()) == []


TINY_GRID = """
base: {model: {activation: {kind: relu}}, train: {epochs: 100}}
groups:
  plain: {}
"""


def test_sweep_results_and_reproduce_on_a_small_grid(real_data_dir, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(TINY_GRID)
    common = ["--preset", "smoke", "--workers", "1", "--no-progress", "--data-dir", str(real_data_dir),
              "--device", "cpu"]
    status, stdout, stderr = run_main(["sweep", str(grid), "--out", str(tmp_path / "study"), *common])
    assert status == 0, stderr
    assert "done plain-seed0: test accuracy" in stdout and "sweep finished: 1 of 1 runs done" in stdout

    status, stdout, stderr = run_main(["results", str(tmp_path / "study")])
    assert status == 0, stderr
    assert stdout.startswith("Pipeline check: the smoke preset") and "| baseline_clean_accuracy: " in stdout
    assert "| plain |" in stdout
    assert {path.name for path in (tmp_path / "study").glob("*.csv")} == {"results.csv", "verdicts.csv", "power.csv"}

    status, stdout, stderr = run_main(["reproduce", "--grid", str(grid), "--out", str(tmp_path / "study"),
                                       "--limit", "100", "--tsne-count", "60", *common])
    assert status == 0, stderr
    assert "done plain-seed0: test accuracy" in stdout and "already complete" in stdout
    page = (tmp_path / "study" / "report" / "index.html").read_text()
    assert "Verdicts" in page and "stochrelax reproduce --preset smoke --seeds 1" in page
    assert page.index("Pipeline check: the smoke preset") < page.index("<h2>Verdicts</h2>")


# --- bad input changes nothing --------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(real_data_dir, tmp_path_factory) -> Path:
    """A finished tiny run (1 epoch, 64 images) alone in its directory ``ROOT/run``: every case below
    checks that nothing under ROOT changed, so ROOT also catches a new run or study next to it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    status, _, stderr = run_main(train_args(CONFIG, run, real_data_dir, "--epochs", "1", "--train-limit", "64",
                                            "--test-limit", "64"))
    assert status == 0 and runs.is_finished(run), stderr
    return run


@pytest.fixture(scope="module")
def finished_files(finished_run) -> dict[str, str]:
    """:func:`file_hashes` of the finished run's ROOT as training left it."""
    return file_hashes(finished_run.parent)


def flip_a_decompressed_byte(path: Path) -> None:
    """Valid gzip whose contents fail the checksum."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw)))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


@pytest.fixture(scope="module")
def damaged_data_dirs(real_data_dir, tmp_path_factory) -> dict[str, Path]:
    """Copies of Fashion-MNIST with one file damaged: ``checksum`` (t10k-labels decompresses to other bytes)
    and ``truncated`` (t10k-images lost its last 100 bytes)."""
    damage = {"checksum": ("t10k-labels-idx1-ubyte.gz", flip_a_decompressed_byte),
              "truncated": ("t10k-images-idx3-ubyte.gz", truncate)}
    directories = {}
    for kind, (name, damage_file) in damage.items():
        directories[kind] = tmp_path_factory.mktemp(kind)
        for file_name, _ in data_files.SPLIT_FILES.values():
            shutil.copy(real_data_dir / file_name, directories[kind] / file_name)
        damage_file(directories[kind] / name)
    return directories


def file_hashes(root: Path) -> dict[str, str]:
    """Every file and directory below ``root``: SHA-256 of a file's bytes, ``"dir"`` for a directory."""
    return {str(path.relative_to(root)): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))}


BAD_CONFIGS: dict[str, bytes | None] = {  # name -> contents of a config file (None: no such file)
    "malformed_yaml": b"train: {epochs: 3\n",
    "unknown_key": b"train: {epochz: 3}\n",
    "wrong_type": b"train: {epochs: ten}\n",
    "negative_eps": b"train: {adversarial: {method: pgd, eps: -0.1}}\n",
    "eps_above_one": b"train: {adversarial: {method: fgsm_mixture, eps: 8}}\n",
    "zero_std": b"model: {activation: {noise: gaussian, std: 0}}\n",
    "zero_epochs": b"train: {epochs: 0}\n",
    "empty": b"",
    "not_a_mapping": b"- train\n",
    "binary": bytes(range(256)),
    "missing": None,
}

CPU = " --data-dir {data} --device cpu"
CHECKSUM_FAILURE = "{checksum}/t10k-labels-idx1-ubyte.gz fails its checksum"
TRUNCATED = "{truncated}/t10k-images-idx3-ubyte.gz is truncated or corrupt gzip data"
REPAIR = "replace it with a fresh copy from http"

ERROR_CASES = {
    # id: (the arguments, where {run}, {root}, {data}, {checksum}, {truncated}, {grid} and {config:NAME}
    #      (a file of BAD_CONFIGS) stand for paths; fragments of the one error line, with the same paths)
    "malformed_yaml": ("train {config:malformed_yaml} --out {run} --overwrite" + CPU,
                       ["{config:malformed_yaml}: not valid YAML (", "at line 2, column 1"]),
    "unknown_key": ("train {config:unknown_key} --out {run} --overwrite" + CPU,
                    ["train.epochz: unknown key; allowed keys: epochs,"]),
    "wrong_type": ("train {config:wrong_type} --out {run} --overwrite" + CPU,
                   ["train.epochs: Input should be a valid integer (got 'ten')"]),
    "negative_eps": ("train {config:negative_eps} --out {run} --overwrite" + CPU,
                     ["train.adversarial.eps: must be >= 0 and <= 1 (got -0.1)"]),
    "eps_above_one": ("train {config:eps_above_one} --out {run} --overwrite" + CPU,
                      ["train.adversarial.eps: must be >= 0 and <= 1 (got 8)"]),
    "zero_std": ("train {config:zero_std} --out {run} --overwrite" + CPU,
                 ["model.activation.std: must be > 0 (got 0)"]),
    "zero_epochs": ("train {config:zero_epochs} --out {run} --overwrite" + CPU, ["train.epochs: must be >= 1 (got 0)"]),
    "zero_epochs_new_out": ("train {config:zero_epochs} --out {root}/new" + CPU,
                            ["train.epochs: must be >= 1 (got 0)"]),
    "empty_config": ("train {config:empty} --out {run} --overwrite" + CPU, ["the config file holds no settings"]),
    "not_a_mapping": ("train {config:not_a_mapping} --out {run} --overwrite" + CPU, ["expected a mapping", "got list"]),
    "binary_config": ("train {config:binary} --out {run} --overwrite" + CPU,
                      ["not a text file (byte 128 is not UTF-8)"]),
    "missing_config": ("train {config:missing} --out {run} --overwrite" + CPU,
                       ["{config:missing}: config file not found; check the path"]),
    "directory_as_config": ("train {root} --out {run} --overwrite" + CPU,
                            ["{root}: cannot read the config file (Is a directory)"]),
    "negative_seed": (f"train {CONFIG} --out {{run}} --overwrite --seed -1" + CPU,
                      ["train.seed: must be >= 0 and <= 4294967295 (got -1)"]),
    "resume_zero_epochs": ("train --resume {run} --epochs 0" + CPU, ["argument --epochs: must be >= 1, got 0"]),
    "debug_bad_argument": ("--debug train --resume {run} --epochs ten" + CPU,  # never a traceback: nothing to see
                           ["argument --epochs: invalid _positive_int value: 'ten'"]),
    "train_checksum": (f"train {CONFIG} --out {{run}} --overwrite --data-dir {{checksum}} --device cpu",
                       [CHECKSUM_FAILURE, REPAIR]),
    "resume_truncated": ("train --resume {run} --data-dir {truncated} --device cpu", [TRUNCATED, REPAIR]),
    "data_info_checksum": ("data info --data-dir {checksum}", [CHECKSUM_FAILURE, REPAIR]),
    "data_info_truncated": ("data info --data-dir {truncated}", [TRUNCATED, REPAIR]),
    "evaluate_checksum": ("evaluate {run} --data-dir {checksum} --device cpu", [CHECKSUM_FAILURE, REPAIR]),
    "attack_checksum": ("attack {run} --limit 10 --data-dir {checksum} --device cpu", [CHECKSUM_FAILURE, REPAIR]),
    "certify_without_input_noise": ("certify {run} --n0 5 --n 10 --limit 2 --no-progress" + CPU,
                                    ["{run}: the model adds no Gaussian input noise (model.input_noise)",
                                     "a certificate for noise inside the network is not what Cohen"]),
    "certify_alpha_of_one": ("certify {run} --alpha 1" + CPU, ["argument --alpha: must be in (0, 1), got 1"]),
    "certify_zero_sigma": ("certify {run} --sigma 0" + CPU, ["argument --sigma: must be > 0, got 0"]),
    "attack_p_above_one": ("attack {run} --attack missing --p 1.5" + CPU,
                           ["--p: missing-feature ratios must be in [0, 1), got [1.5]"]),
    "attack_negative_p": ("attack {run} --attack missing --p=-0.1" + CPU,
                          ["--p: missing-feature ratios must be in [0, 1), got [-0.1]"]),
    "attack_negative_eps": ("attack {run} --attack fgsm --eps=-0.1" + CPU,
                            ["--eps: budgets are L-inf distances in [0, 1] pixel units, got [-0.1]"]),
    "sweep_unsafe_name": ("sweep {grid} --out {root}/study --preset smoke" + CPU,
                          ["{grid}: group '../../escaped' cannot be used in a run directory's name"]),
}
UNSAFE_GRID = "groups:\n  ../../escaped: {set: {model.activation.kind: relu}}\n"


@pytest.fixture
def places(finished_run, damaged_data_dirs, real_data_dir, tmp_path) -> dict[str, Path]:
    """What the cases' placeholders stand for; the bad configs and the grid are written to ``tmp_path``."""
    for name, contents in BAD_CONFIGS.items():
        if contents is not None:
            (tmp_path / f"{name}.yaml").write_bytes(contents)
    (tmp_path / "grid.yaml").write_text(UNSAFE_GRID)
    return {"run": finished_run, "root": finished_run.parent, "data": real_data_dir, "grid": tmp_path / "grid.yaml",
            "config_dir": tmp_path, **damaged_data_dirs}


def fill_in(template: str, places: dict[str, Path]) -> str:
    """``template`` with every ``{name}`` and ``{config:NAME}`` replaced by its path."""
    def path(match: re.Match) -> str:
        return str(places["config_dir"] / f"{match[2]}.yaml" if match[1] else places[match[2]])

    return re.sub(r"\{(config:)?(\w+)\}", path, template)


@pytest.mark.parametrize(("template", "fragments"), list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_bad_input_is_one_error_line_and_changes_no_file(template, fragments, places, finished_files):
    status, stdout, stderr = run_main(fill_in(template, places).split())
    line = assert_one_line_error(status, stderr, *(fill_in(fragment, places) for fragment in fragments))
    assert "Traceback" not in stderr and stdout == ""
    assert file_hashes(places["root"]) == finished_files, line  # the run's bytes, and nothing new next to it


def test_with_debug_a_bad_input_shows_its_traceback_and_still_changes_no_file(places, finished_files):
    argv = fill_in(ERROR_CASES["negative_eps"][0], places).split()
    result = subprocess.run([sys.executable, "-m", "stochrelax.cli", "--debug", *argv], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.splitlines()[-1].startswith("stochrelax.rundir.config.ConfigError: ")
    assert "train.adversarial.eps: must be >= 0 and <= 1 (got -0.1)" in result.stderr.splitlines()[-1]
    assert file_hashes(places["root"]) == finished_files


def test_a_line_break_in_an_error_message_is_replaced_so_the_error_stays_one_line(tmp_path, capsys):
    config = tmp_path / "two\nlines.yaml"
    status = main(["train", str(config), "--out", str(tmp_path / "run")])
    assert_one_line_error(status, capsys.readouterr().err, f"{tmp_path}/two lines.yaml: config file not found")
    assert not (tmp_path / "run").exists()


# --- every command against every damaged file of a run and a study ---------------------------------

def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _emptied(path: Path) -> None:
    path.write_bytes(b"")


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 4)


def _a_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _bit_flipped(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # the subtlest damage: one bit in the middle
    path.write_bytes(bytes(raw))


def _key_renamed(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    first_key = re.search(rb'\A([a-z])|\{\s*"([a-z])', raw)  # a YAML file's first key, or a JSON object's
    raw[first_key.start(first_key.lastindex)] ^= 0x01  # one bit: "epoch" becomes "dpoch", "model" "lodel"
    path.write_bytes(bytes(raw))


DAMAGES = {"truncated": _truncated, "empty": _emptied, "garbage": _garbage, "a directory": _a_directory,
           "bit-flipped": _bit_flipped, "a key renamed": _key_renamed}
RUN_FILES = [runs.CONFIG_FILE, runs.RUN_FILE, runs.SUMMARY_FILE, runs.WEIGHTS_FILE, runs.ATTACKS_JSON,
             runs.METRICS_FILE, runs.EVENTS_FILE, runs.TRAINING_STATS_FILE]


@pytest.fixture(scope="module")
def pristine_study(real_data_dir, tmp_path_factory) -> Path:
    """A study of one finished, attacked tiny run ``STUDY/run-seed0``, with its ``sweep.json``."""
    study = tmp_path_factory.mktemp("pristine") / "study"
    grid = study.parent / "grid.yaml"
    grid.write_text("base: {train: {epochs: 1}}\ngroups: {run: {set: {model.activation.kind: relu}}}\n")
    status, _, stderr = run_main(["sweep", str(grid), "--out", str(study), "--preset", "smoke", "--workers", "1",
                                  "--no-progress", "--data-dir", str(real_data_dir)])
    assert status == 0, stderr
    return study


def _commands(study: Path, data_dir: Path, out: Path) -> dict[str, list[str]]:
    run, data = str(study / "run-seed0"), ["--data-dir", str(data_dir)]
    return {
        "evaluate": ["evaluate", run, "--test-limit", "20", *data],
        "attack": ["attack", run, "--attack", "fgsm", "--eps", "0.05", "--limit", "20", "--no-progress",
                   "--no-convergence-check", *data],
        "report": ["report", run, "--out", str(out), "--limit", "20", "--tsne-count", "20", "--no-progress", *data],
        "results": ["results", str(study)],
        "train --resume": ["train", "--resume", run, "--no-progress", *data],
    }


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("damaged", [*RUN_FILES, "sweep.json"])
def test_every_command_meets_a_damaged_file_with_one_line_or_carries_on_and_changes_nothing(
        pristine_study, real_data_dir, tmp_path, damaged, damage):
    study = tmp_path / "study"
    shutil.copytree(pristine_study, study)
    DAMAGES[damage](study / damaged if damaged == "sweep.json" else study / "run-seed0" / damaged)
    for command, argv in _commands(study, real_data_dir, tmp_path / "report").items():
        before = file_hashes(study)
        status, _, stderr = run_main(argv)
        assert "Traceback" not in stderr and status in (0, 2), (command, status, stderr)
        if status == 2:
            assert_one_line_error(status, stderr)
        after = file_hashes(study)
        written = {"attack": {"run-seed0/attacks.json", "run-seed0/attacks.csv"},
                   "results": {"results.csv", "results.md", "verdicts.csv", "verdicts.md", "power.csv"},
                   }.get(command, set())
        changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
        assert changed <= (written if status == 0 else set()), (command, stderr, changed)


# --- the error boundary ---------------------------------------------------------------------------

def test_an_unexpected_error_is_one_line_that_says_to_report_it_and_debug_shows_it(monkeypatch, tmp_path):
    def broken(_args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr("stochrelax.cli.commands.data_info", broken)
    status, _, stderr = run_main(["data", "info"])
    assert status == 1 and stderr == ("stochrelax: internal error (ZeroDivisionError: division by zero); run the "
                                      "command again with --debug and report its traceback\n")
    with pytest.raises(ZeroDivisionError):
        run_main(["--debug", "data", "info"])


def test_an_os_error_nobody_foresaw_is_one_line_naming_the_file(monkeypatch):
    def unreadable(_args):
        raise PermissionError(13, "Permission denied", "/data/train.gz")

    monkeypatch.setattr("stochrelax.cli.commands.data_info", unreadable)
    status, _, stderr = run_main(["data", "info"])
    assert_one_line_error(status, stderr, "/data/train.gz: Permission denied; check the path, its permissions")


def test_ctrl_c_of_train_says_how_to_continue(monkeypatch, real_data_dir, tmp_path):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("stochrelax.cli.commands.train_run", interrupted)
    status, _, stderr = run_main(train_args(CONFIG, tmp_path / "run", real_data_dir))
    assert (status, stderr) == (130, f"stochrelax: interrupted; continue with `stochrelax train --resume "
                                     f"{tmp_path / 'run'}`\n")


@pytest.mark.parametrize("command", ["report", "results"])
def test_an_out_that_is_a_file_is_refused_before_any_work(command, finished_run, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    argv = ([command, str(finished_run)] if command == "report" else [command, str(finished_run.parent)])
    status, _, stderr = run_main([*argv, "--out", str(target)])
    assert_one_line_error(status, stderr, f"argument --out: {target} is a file; give a directory")
    assert target.read_text() == "mine"


# --- certify ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoothed_run(real_data_dir, tmp_path_factory) -> Path:
    """A finished tiny run (1 epoch, 64 images) of the thesis network with Gaussian input noise σ = 0.25."""
    root = tmp_path_factory.mktemp("smoothed")
    config = root / "smoothed.yaml"
    config.write_text("model:\n  activation: {kind: relu}\n  input_noise: {std: 0.25}\ntrain:\n  epochs: 1\n")
    run = root / "run"
    status, _, stderr = run_main(train_args(config, run, real_data_dir, "--train-limit", "64", "--test-limit", "64"))
    assert status == 0 and runs.is_finished(run), stderr
    return run


def test_certify_writes_the_certificates_and_prints_the_certified_accuracy(smoothed_run, real_data_dir):
    status, stdout, stderr = run_main(["certify", str(smoothed_run), "--sigma", "0.25", "--n0", "20", "--n", "400",
                                       "--alpha", "0.01", "--limit", "3", "--batch", "420", "--no-progress",
                                       "--data-dir", str(real_data_dir), "--device", "cpu"])
    assert (status, stderr) == (0, "")
    lines = stdout.splitlines()
    assert re.fullmatch(rf"{re.escape(str(smoothed_run))}: smoothed classifier, sigma 0\.25, n0 20, n 400, alpha 0\.01, "
                        r"on 3 test images \(\d abstained\)", lines[0])
    assert re.fullmatch(r"certified accuracy at L2 radius 0: \d+\.\d%  0\.25: \d+\.\d%  0\.5: \d+\.\d%  "
                        r"0\.75: \d+\.\d%  1: \d+\.\d%", lines[1])
    assert lines[2] == f"certificates written to {smoothed_run / runs.CERTIFY_CSV} and {runs.CERTIFY_JSON}"
    table = (smoothed_run / runs.CERTIFY_CSV).read_text().splitlines()
    assert table[0] == "index,label,prediction,radius,correct,seconds" and len(table) == 4
    for number, line in enumerate(table[1:]):
        index, label, prediction, radius, correct, seconds = line.split(",")
        assert int(index) == number and 0 <= int(label) < 10 and -1 <= int(prediction) < 10
        assert float(radius) >= 0 and correct == str(prediction == label) and float(seconds) > 0
        assert (float(radius) == 0) == (int(prediction) == -1)  # abstentions, and only they, have radius 0


def test_certify_refuses_another_sigma_and_changes_no_file(smoothed_run, real_data_dir, capsys):
    before = file_hashes(smoothed_run)
    status = main(["certify", str(smoothed_run), "--sigma", "0.5", "--n0", "5", "--n", "10", "--limit", "2",
                   "--data-dir", str(real_data_dir), "--device", "cpu", "--no-progress"])
    assert_one_line_error(status, capsys.readouterr().err, "sigma 0.5 differs from the model's input noise std 0.25")
    assert file_hashes(smoothed_run) == before


def test_overwrite_replaces_a_certified_run(smoothed_run, real_data_dir, tmp_path):
    """certify.csv and certify.json are files a run writes: --overwrite may delete them."""
    copy = tmp_path / "run"
    shutil.copytree(smoothed_run, copy)
    (copy / runs.CERTIFY_CSV).write_text("index,label,prediction,radius,correct,seconds\n")
    (copy / runs.CERTIFY_JSON).write_text("{}\n")
    assert runs.check_run_dir(copy, overwrite=True)
