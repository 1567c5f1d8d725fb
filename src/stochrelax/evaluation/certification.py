"""``stochrelax certify``: certified L2 robustness of a run's smoothed classifier, and reading it back.

:func:`certify_run` runs CERTIFY of Cohen, Rosenfeld & Kolter (2019, section 3.2,
https://arxiv.org/abs/1902.02918; :mod:`stochrelax.evaluation.smoothing`) on the first test images of a
finished run whose model adds Gaussian input noise, and writes ``certify.csv`` (one row per
image) and ``certify.json`` (how it was measured, and the certified accuracy at
:data:`CERTIFIED_RADII`) into the run directory. :func:`read_certificates` and
:func:`certified_accuracy` read them back for the report and its figure.

What is certified is the *smoothed* classifier g, in L2 and in [0, 1] pixel units: not the base
network, not an L∞ ball. A run without input noise is refused: noise inside the network (the
thesis' stochastic units) smooths no input, and Cohen et al.'s theorem gives it no certificate.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from stochrelax.data.fashion_mnist import FashionMNIST
from stochrelax.evaluation.smoothing import certify, smoothing_sigma
from stochrelax.models.allconv import fold_batch_norm
from stochrelax.rundir.layout import (CERTIFY_CSV, CERTIFY_JSON, Run, RunDirError, error_reason, read_json, run_lock,
                                      write_run_file)

__all__ = ["CERTIFIED_RADII", "CERTIFICATE_COLUMNS", "CertifySettings", "CertificateRow", "Certification",
           "certify_run", "certified_accuracy", "read_certificates", "read_certification"]

CERTIFIED_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
"""L2 radii (pixel units) at which the summary and the report give the certified accuracy."""


@dataclass(frozen=True)
class CertifySettings:
    """How to certify: the arguments of :func:`stochrelax.evaluation.smoothing.certify` and the smoothing σ expected.

    ``n0``, ``n`` and ``alpha`` default to Cohen et al.'s (section 4): 100 selection draws,
    100,000 estimation draws, α = 0.001.
    """

    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    batch: int = 1000  # noise draws per forward pass
    seed: int = 0  # image i is certified with seed + i, so a row does not depend on how many were certified
    sigma: float | None = None  # None: the model's input noise std; given, it must equal it


@dataclass(frozen=True)
class CertificateRow:
    """One row of ``certify.csv``: the certificate of one test image."""

    index: int  # position in the test split
    label: int
    prediction: int  # -1: abstained
    radius: float  # certified L2 radius in pixels; 0 when abstaining
    correct: bool  # prediction == label (never when abstaining)
    seconds: float


CERTIFICATE_COLUMNS = tuple(CertificateRow.__dataclass_fields__)
"""The columns of ``certify.csv``, in order."""


@dataclass(frozen=True)
class Certification:
    """What :func:`certify_run` measured and wrote."""

    rows: list[CertificateRow]
    sigma: float
    accuracy: dict[float, float]  # certified accuracy at each of CERTIFIED_RADII


def certified_accuracy(rows: Sequence[CertificateRow], radii: Sequence[float] = CERTIFIED_RADII) -> dict[float, float]:
    """Certified accuracy at each radius r: the fraction of images whose certificate is correct with
    radius ≥ r (Cohen et al., section 4); abstentions count as wrong. NaN for no rows."""
    return {radius: (sum(row.correct and row.radius >= radius for row in rows) / len(rows) if rows else float("nan"))
            for radius in radii}


def _check_certifiable(run: Run, sigma: float | None) -> float:
    """The run's smoothing σ.

    Raises:
        RunDirError: if its model has no Gaussian input noise, or ``sigma`` is another σ.
    """
    try:
        return smoothing_sigma(run.model, sigma)
    except ValueError as error:
        raise RunDirError(f"{run.path}: {error}") from None


def _csv_text(rows: Sequence[CertificateRow]) -> str:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CERTIFICATE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(row) for row in rows)
    return table.getvalue()


def certify_run(run: Run, data: FashionMNIST, settings: CertifySettings = CertifySettings(), *,
                device: torch.device | str = "cpu", progress: bool = False) -> Certification:
    """Certifies the smoothed classifier of a finished run on every test image of ``data``.

    Writes ``certify.csv`` and ``certify.json`` into the run directory, each all or nothing,
    under the run's lock (:func:`stochrelax.rundir.layout.run_lock`); an earlier certification is replaced.
    The smoothed classifier is evaluated with BatchNorm folded into the convolutions
    (:func:`~stochrelax.models.allconv.fold_batch_norm`, the same function in eval mode, one layer less).

    Args:
        run: a finished run whose model adds Gaussian input noise (``model.input_noise``).
        data: Fashion-MNIST with its ``limit`` applied: every test image is certified.
        settings: the draws, α, batch, seed, and the σ expected.
        device: where to compute.
        progress: show a progress bar over the images.

    Raises:
        RunDirError: if the model has no input noise or another σ than ``settings.sigma``, another
            process is writing the run, or a file cannot be written.
    """
    sigma = _check_certifiable(run, settings.sigma)
    with run_lock(run.path):
        model = fold_batch_norm(run.model.to(device))  # certification runs in eval mode: BatchNorm is affine
        images, labels = data.test_images.to(device), data.test_labels.tolist()
        rows, start = [], time.perf_counter()
        for index in tqdm(range(len(labels)), desc="certify", disable=not progress):
            image_start = time.perf_counter()
            certificate = certify(model, images[index].float() / 255, settings.n0, settings.n, settings.alpha,
                                  settings.batch, settings.seed + index)
            rows.append(CertificateRow(index, labels[index], certificate.prediction, certificate.radius,
                                       certificate.prediction == labels[index], time.perf_counter() - image_start))
        accuracy = certified_accuracy(rows)
        record = {"sigma": sigma, "settings": asdict(settings), "examples": len(rows), "device": str(device),
                  "seconds": time.perf_counter() - start,
                  "certified_accuracy": [{"radius": radius, "accuracy": value} for radius, value in accuracy.items()]}
        write_run_file(run.path / CERTIFY_CSV, _csv_text(rows))
        write_run_file(run.path / CERTIFY_JSON, json.dumps(record, indent=2) + "\n")
    return Certification(rows, sigma, accuracy)


_PARSERS = {"index": int, "label": int, "prediction": int, "radius": float,
            "correct": {"True": True, "False": False}.__getitem__, "seconds": float}
"""How each column of ``certify.csv`` is read back."""


def read_certificates(run_dir: str | Path) -> list[CertificateRow] | None:
    """The rows of a run's ``certify.csv``, or ``None`` if it was never certified.

    Raises:
        RunDirError: if the file cannot be read, lacks a column, or holds a value of the wrong kind.
    """
    path = Path(run_dir) / CERTIFY_CSV
    if not path.exists():
        return None
    fix = f"certify the run again (`stochrelax certify {path.parent}`)"
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in CERTIFICATE_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise RunDirError(f"{path} is damaged (no column {', '.join(missing)}); {fix}")
            return [CertificateRow(**{column: _PARSERS[column](record[column]) for column in CERTIFICATE_COLUMNS})
                    for record in reader]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"{path} is damaged ({error_reason(error)}); {fix}") from None


def read_certification(run_dir: str | Path) -> dict | None:
    """A run's ``certify.json`` (σ, settings, images, certified accuracy), or ``None`` if it was never certified.

    Raises:
        RunDirError: if the file is damaged.
    """
    path = Path(run_dir) / CERTIFY_JSON
    return read_json(path, f"certify the run again (`stochrelax certify {path.parent}`)") if path.exists() else None
