"""The thesis' "missing features" attack (thesis 4.3.3, eq. 4.7)."""

from __future__ import annotations

import torch

from stochrelax.attacks.core import check_images

__all__ = ["MissingFeatures"]


class MissingFeatures:
    """Zeroes each input pixel independently with probability p.

    Thesis 4.3.3: x_adv = dropout_p(x). Not an L∞ attack and not adaptive: it measures
    how much the model relies on a few features. By default kept pixels are unchanged;
    ``rescale=True`` multiplies them by 1/(1 − p) as torch's Dropout (the thesis'
    implementation) does, then clips to [0, 1] so that the input stays an image (the
    thesis did not clip).

    Args:
        p: probability of zeroing a pixel, in [0, 1) (default 0.1).
        rescale: Dropout's 1/(1 − p) rescaling of the kept pixels (default False).
        generator: source of the masks (default: torch's global generator).

    Shapes: images (B, C, H, W) in [0, 1], labels (B,) (unused) → images (B, C, H, W).

    Example:
        >>> damaged = MissingFeatures(p=0.3)(images, labels)
    """


    def __init__(self, p: float = 0.1, rescale: bool = False, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"missing-feature probability p must be in [0, 1), got {p}")
        self.p, self.rescale, self.generator = float(p), rescale, generator

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images, labels)
        keep = torch.rand(images.shape, generator=self.generator).to(images.device) >= self.p
        kept = images * keep
        return (kept / (1.0 - self.p)).clamp(0.0, 1.0) if self.rescale else kept

    def __repr__(self) -> str:
        return f"MissingFeatures(p={self.p:g}, rescale={self.rescale})"
