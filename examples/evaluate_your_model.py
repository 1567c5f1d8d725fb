"""Evaluate the robustness of your own model with one call: a network defined here, trained briefly on
Fashion-MNIST, then attacked by stochrelax's adaptive worst case.

The network is an ordinary ``nn.Module`` with stochrelax's :class:`~stochrelax.nn.layers.StochasticActivation`
units inside: logistic noise in the pre-activations of its ReLUs (the thesis' eq. 3.1). Any classifier on
[0, 1] images works the same way, with or without those units.

    python examples/evaluate_your_model.py [--train-steps 300] [--images 500] [--device auto]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import stochrelax as sr


class NoisyNet(nn.Module):
    """Two stride-2 convolutions, each followed by a ReLU with logistic noise of std ``noise_std`` in its
    pre-activation, then a linear classifier; 1 × 28 × 28 images in [0, 1]."""

    def __init__(self, noise_std: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), sr.StochasticActivation("relu", "logistic", std=noise_std),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), sr.StochasticActivation("relu", "logistic", std=noise_std))
        self.classifier = nn.Linear(32 * 7 * 7, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)  # (B, 32, 7, 7)
        return self.classifier(features.flatten(1))  # (B, 10)


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, batch: int = 64) -> None:
    """Adam on the cross-entropy of one noise draw per step (the thesis' training)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(labels), (batch,), generator=generator)
        loss = nn.functional.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=300, help="Adam steps of batch 64 (default 300)")
    parser.add_argument("--images", type=int, default=500, help="test images attacked (default 500)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST directory (default: the usual search)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--fast", action="store_true", help="a small ensemble: a smoke test, not an evaluation")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)

    torch.manual_seed(0)
    data = sr.load_fashion_mnist(args.data_dir)
    model = NoisyNet().to(device)
    train(model, data.train_images.to(device).float() / 255, data.train_labels.to(device), args.train_steps)

    images = data.test_images[:args.images].to(device).float() / 255  # (N, 1, 28, 28) in [0, 1]
    labels = data.test_labels[:args.images].to(device)
    budget = {"eot": 2, "steps": 5, "apgd_steps": 5, "square_queries": 20} if args.fast else {}
    evaluation = sr.evaluate_robustness(model, images, labels, eps=[0.03, 0.1], **budget)
    print(evaluation.table(), end="")
    robust = evaluation.robust[0.1]  # (N,) bool: survived every attack at eps 0.1
    print(f"{int(robust.sum())} of {len(labels)} images are robust at eps 0.1; "
          f"their adversarial images: evaluation.adversarial[0.1], shape {tuple(evaluation.adversarial[0.1].shape)}")


if __name__ == "__main__":
    main()
