"""What the figures compute from a model: tensors in, tensors or numbers out (predictions over
noise draws, confidences, calibration, features, curves)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from sklearn.manifold import TSNE

from stochrelax.data.fashion_mnist import CLASS_NAMES, FashionMNIST
from stochrelax.nn.prediction import ROWS_PER_PASS, evaluating, predictive_log_prob, sample_logits


def first_test_images(data: FashionMNIST, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` test images as [0, 1] pixels (N, 1, 28, 28) and their labels (N,)."""
    subset = data.limit(test_limit=limit)
    return subset.test_images.float() / 255, subset.test_labels


@torch.no_grad()
def draw_logits(model: torch.nn.Module, pixels: torch.Tensor, samples: int) -> torch.Tensor:
    """Class scores of ``samples`` noise draws for every image, in eval mode with the noise on.

    Returns:
        (K, N, classes); K = 1 for a model without active noise.
    """
    batch = max(1, ROWS_PER_PASS // samples)  # images per call: whole draws of them fill a pass
    with evaluating(model):
        return torch.cat([sample_logits(model, chunk, samples) for chunk in pixels.split(batch)], dim=1)


@torch.no_grad()
def block_features(model: torch.nn.Module, pixels: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named blocks for every image (one noise draw), e.g. ``{"block8": (N, 96, 1, 1)}``."""
    with evaluating(model):
        chunks = [model.forward_features(chunk, names) for chunk in pixels.split(ROWS_PER_PASS)]
    return {name: torch.cat([chunk[name] for chunk in chunks]) for name in names}


def confidences(log_prob: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum predictive probability (N,) and whether its class is the label (N,) bool."""
    confidence, prediction = log_prob.exp().max(dim=1)
    return confidence, prediction == labels


def calibration_bins(confidence: torch.Tensor, correct: torch.Tensor,
                     bins: int = 15) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Equal-width confidence bins (lo, hi] on [0, 1] (the first also takes 0).

    Returns:
        Per bin (bins,): the number of predictions, their mean confidence and their
        accuracy (both 0 for an empty bin).
    """
    confidence = confidence.double()
    edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    index = torch.bucketize(confidence, edges[1:-1])  # (N,) in [0, bins)
    counts = torch.bincount(index, minlength=bins).double()
    confidence_sum = torch.bincount(index, weights=confidence, minlength=bins)
    correct_sum = torch.bincount(index, weights=correct.double(), minlength=bins)
    occupied = counts.clamp(min=1)
    return counts, confidence_sum / occupied, correct_sum / occupied


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> float:
    """ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b| over equal-width bins (Guo et al. 2017).

    Args:
        confidence: (N,) maximum predictive probability of each prediction.
        correct: (N,) whether each prediction is right.
        bins: number of equal-width bins on [0, 1].
    """
    counts, mean_confidence, accuracy = calibration_bins(confidence, correct, bins)
    return float((counts / counts.sum() * (accuracy - mean_confidence).abs()).sum())


def accuracy_by_samples(logits: torch.Tensor, labels: torch.Tensor, sample_counts: Sequence[int]) -> list[float]:
    """Accuracy of the predictor averaging the softmax of the first K draws, for each K.

    Args:
        logits: (K_max, N, classes) class scores of independent noise draws; a K above
            K_max uses all K_max draws (K_max = 1 for a deterministic model).
        labels: (N,).
        sample_counts: the K to evaluate.
    """
    return [(predictive_log_prob(logits[:count]).argmax(dim=1) == labels).double().mean().item()
            for count in sample_counts]


def single_draw_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy of one noisy pass: mean and std over the K draws of ``logits`` (K, N, classes)."""
    per_draw = (logits.argmax(dim=2) == labels).double().mean(dim=1)  # (K,)
    return per_draw.mean().item(), (per_draw.std().item() if per_draw.numel() > 1 else 0.0)


def channel_norm_maps(features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """L2 norm over channels of every block output with spatial size > 1: (N, C, H, W) → (N, H, W)."""
    return {name: output.norm(dim=1) for name, output in features.items() if output.shape[-2] * output.shape[-1] > 1}


def default_heatmap_indices(labels: torch.Tensor) -> tuple[int, int]:
    """Indices of the first "Ankle boot" and the first "Bag" (thesis Fig. 4.4: two classes, similar heat maps).

    Raises:
        ValueError: if one of the classes is not among ``labels``.
    """
    found = []
    for name in ("Ankle boot", "Bag"):
        positions = (labels == CLASS_NAMES.index(name)).nonzero()
        if positions.numel() == 0:
            raise ValueError(f"no {name!r} among the {labels.numel()} test images; pass indices")
        found.append(int(positions[0]))
    return found[0], found[1]


def mean_curve(curves: Sequence[Mapping[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and sample std (0 for one curve) over curves ``{x: y}``, at the x values all of them share."""
    xs = sorted(set.intersection(*(set(curve) for curve in curves)))
    values = np.array([[curve[x] for x in xs] for curve in curves])  # (curves, points)
    std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(xs))
    return np.array(xs), values.mean(axis=0), std


def tsne_embedding(features: torch.Tensor, seed: int) -> np.ndarray:
    """2-D t-SNE (PCA initialisation) of (N, D) features; perplexity 30, or less for few points."""
    perplexity = min(30.0, (features.shape[0] - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features.double().numpy())
