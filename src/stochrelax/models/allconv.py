"""The thesis network (Fig. 5.2) and helpers to use it as a stochastic predictor.

A network is a list of blocks Conv2d → optional BatchNorm2d → activation. The
activation is a :class:`~stochrelax.nn.layers.StochasticActivation` (deterministic when
it has no noise); the stride-2 "weighted pooling" convolutions and the final
classifier convolution have no activation and no BatchNorm. The first layer
normalises pixels, so inputs — and attack budgets — stay in [0, 1] pixel units; an optional
:class:`~stochrelax.nn.layers.GaussianInputNoise` before it adds N(0, σ²) noise to those pixels
(randomized smoothing, Cohen et al. 2019).

A stochastic network defines a predictive distribution p(y | x) = E_ξ softmax(f(x, ξ)),
estimated with K noise draws by :func:`stochrelax.nn.prediction.predictive_log_prob`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal, Optional

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stochrelax.nn.estimators import ESTIMATORS
from stochrelax.nn.layers import (ACTIVATIONS, MODES, STD_GRANULARITIES, GaussianInputNoise, StochasticActivation,
                                  check_activation_args, temporarily)
from stochrelax.nn.noise import NOISES

__all__ = ["ConfigSection", "LearnableStdConfig", "ActivationConfig", "InputNoiseConfig", "ModelConfig", "ConvSpec",
           "ARCHITECTURES", "THESIS_ALLCONV", "Normalize", "ConvBlock", "AllConvNet", "PRECISIONS", "computing_in",
           "precision_of", "fold_batch_norm", "MEMORY_FORMAT", "build_model"]


@dataclass(frozen=True)
class ConvSpec:
    """One convolution of an all-convolutional network (no padding)."""

    out_channels: int
    kernel_size: int
    stride: int
    activation: bool  # False for the stride-2 "weighted pooling" convolutions and the classifier


# Thesis Fig. 5.2 on 1×28×28 inputs; spatial size after each block in the comment.
THESIS_ALLCONV = (
    ConvSpec(6, 3, 1, True),    # block1: 26×26
    ConvSpec(12, 3, 1, True),   # block2: 24×24
    ConvSpec(12, 2, 2, False),  # block3: 12×12, weighted pooling
    ConvSpec(24, 3, 1, True),   # block4: 10×10
    ConvSpec(48, 3, 1, True),   # block5: 8×8
    ConvSpec(48, 2, 2, False),  # block6: 4×4, weighted pooling
    ConvSpec(96, 3, 1, True),   # block7: 2×2
    ConvSpec(96, 2, 2, False),  # block8: 1×1, weighted pooling (the thesis' t-SNE features)
    ConvSpec(50, 1, 1, True),   # block9: 1×1
    ConvSpec(10, 1, 1, False),  # block10: 1×1, class scores
)

ARCHITECTURES: dict[str, tuple[ConvSpec, ...]] = {"thesis_allconv": THESIS_ALLCONV}


class ConfigSection(BaseModel):
    """A section of a run config: unknown keys, coerced types and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class LearnableStdConfig(ConfigSection):
    """A learnable noise std, initialised to the activation's ``std`` (Parametric Noise Injection, He et al. 2019)."""

    granularity: Literal[tuple(STD_GRANULARITIES)] = "layer"  # one std per layer or per channel


class ActivationConfig(ConfigSection):
    """The unit used after every non-pooling convolution (thesis 4.1)."""

    kind: Literal[tuple(ACTIVATIONS)] = "relu"  # "relu" or "sign" (±1)
    noise: Optional[Literal[tuple(NOISES)]] = None  # None: deterministic units
    mode: Literal[tuple(MODES)] = "additive"  # f(a − ξ) or f(a · ξ)
    std: Optional[float] = Field(default=None, gt=0)  # standard deviation of ξ
    mean: Optional[float] = None  # mean of ξ; None: 0 for additive, 1 for multiplicative
    estimator: Optional[Literal[tuple(ESTIMATORS)]] = None  # sign only; None: "ste" with noise, else "classic_ste"
    learnable_std: Optional[LearnableStdConfig] = None  # None: std stays fixed

    @model_validator(mode="after")
    def _consistent(self) -> "ActivationConfig":
        granularity = None if self.learnable_std is None else self.learnable_std.granularity
        self.estimator = check_activation_args(self.kind, self.noise, self.mode, self.std, self.mean, self.estimator,
                                               granularity)
        return self


class InputNoiseConfig(ConfigSection):
    """Gaussian noise N(0, std²) added to the [0, 1] pixels before normalisation, in training and
    evaluation: the base classifier of randomized smoothing (Cohen, Rosenfeld & Kolter 2019,
    https://arxiv.org/abs/1902.02918), which ``stochrelax certify`` certifies."""

    std: float = Field(gt=0)  # σ in pixel units (Cohen et al. use 0.12–1.0 on CIFAR-10)


class ModelConfig(ConfigSection):
    """Network architecture (thesis Fig. 5.2), input noise and input normalisation."""

    architecture: Literal[tuple(ARCHITECTURES)] = "thesis_allconv"  # preset list of convolutions
    batch_norm: bool = True  # BatchNorm2d between each convolution and its activation
    input_mean: float = 0.5  # normalisation, the model's first layer (thesis: 0.5; data: 0.2860)
    input_std: float = Field(default=0.5, gt=0)  # (thesis: 0.5; data: 0.3530)
    activation: ActivationConfig = ActivationConfig()
    input_noise: Optional[InputNoiseConfig] = None  # None: no noise on the input pixels

    @property
    def stochastic(self) -> bool:
        """Whether the network draws noise: at its units or on its input pixels."""
        return self.activation.noise is not None or self.input_noise is not None

    @property
    def beyond_thesis(self) -> bool:
        """Whether the network has what the thesis did not study: a learnable noise std or input noise."""
        return self.activation.learnable_std is not None or self.input_noise is not None


class Normalize(nn.Module):
    """(x − mean) / std, so that the model takes raw [0, 1] pixels."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean:g}, std={self.std:g}"


class ConvBlock(nn.Module):
    """Conv2d → optional BatchNorm2d → optional activation."""

    def __init__(self, in_channels: int, spec: ConvSpec, batch_norm: bool, activation: StochasticActivation | None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, spec.out_channels, spec.kernel_size, spec.stride)
        self.norm = nn.BatchNorm2d(spec.out_channels) if batch_norm and activation is not None else nn.Identity()
        self.act = activation if activation is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # under bfloat16 autocast the convolution's output is cast back to its input's precision, so that
        # BatchNorm and the stochastic units (noise draws, estimators) compute in float32; a no-op otherwise
        return self.act(self.norm(self.conv(x).to(x.dtype)))


class AllConvNet(nn.Module):
    """All-convolutional classifier; blocks are named ``block1`` … ``blockN``.

    Args:
        specs: the convolutions, in order; the last one gives the class scores at 1×1.
        make_activation: builds a fresh activation module for each block that has one, given its channels.
        batch_norm: put BatchNorm2d before every activation.
        input_mean: pixel mean subtracted by the first layer.
        input_std: pixel std divided by the first layer.
        in_channels: channels of the input images.
        input_noise_std: σ of Gaussian noise added to the pixels before normalisation; ``None``: none.
    """

    def __init__(self, specs: Iterable[ConvSpec], make_activation, batch_norm: bool = True,
                 input_mean: float = 0.5, input_std: float = 0.5, in_channels: int = 1,
                 input_noise_std: float | None = None) -> None:
        super().__init__()
        self.input_noise = nn.Identity() if input_noise_std is None else GaussianInputNoise(input_noise_std)
        self.normalize = Normalize(input_mean, input_std)
        blocks = OrderedDict()
        for index, spec in enumerate(specs, start=1):
            activation = make_activation(spec.out_channels) if spec.activation else None
            blocks[f"block{index}"] = ConvBlock(in_channels, spec, batch_norm, activation)
            in_channels = spec.out_channels
        self.blocks = nn.Sequential(blocks)
        self.precision = "float32"  # of the convolutions (a key of PRECISIONS; set with computing_in)

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks._modules)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores (B, classes), float32, for pixel images (B, C, H, W) in [0, 1]."""
        with _autocast(self.precision, images.device):
            scores = self.blocks(self.normalize(self.input_noise(images)))  # (B, classes, 1, 1)
        return scores.flatten(1)  # (B, classes)

    def forward_features(self, images: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs of the named blocks (after their activation), e.g. ``{"block8": (B, 96, 1, 1)}``.

        Raises:
            KeyError: for an unknown block name (the message lists the valid ones).
        """
        wanted = set(names)
        unknown = wanted.difference(self.block_names)
        if unknown:
            raise KeyError(f"unknown block(s) {sorted(unknown)}; valid: {', '.join(self.block_names)}")
        features, x = {}, self.normalize(self.input_noise(images))
        for name, block in self.blocks.named_children():
            x = block(x)
            if name in wanted:
                features[name] = x
                if len(features) == len(wanted):
                    break
        return features


PRECISIONS: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Precisions of the convolutions. ``bfloat16`` runs them under autocast (oneDNN's BF16 kernels on
CPUs with AVX-512 BF16 or AMX, tensor cores on GPUs); BatchNorm, the stochastic units with their
noise draws and estimators, the class scores and so the loss, and the attacks' perturbations stay
float32."""


def _autocast(precision: str, device: torch.device) -> torch.autocast:
    """Autocast to ``precision`` on ``device`` (disabled for float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=PRECISIONS[precision] != torch.float32)


@contextmanager
def computing_in(model: nn.Module, precision: str) -> Iterator[nn.Module]:
    """Every :class:`AllConvNet` in ``model`` computes its convolutions in ``precision`` within the
    block (copies made meanwhile, such as smooth surrogates, keep it); the previous precisions are
    restored on exit.

    Raises:
        ValueError: for an unknown precision (the message lists the valid ones).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    networks = [module for module in model.modules() if isinstance(module, AllConvNet)]
    with temporarily(networks, "precision", [precision] * len(networks)):
        yield model


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose BatchNorm layers are folded into their convolutions.

    In eval mode BatchNorm is a fixed affine map per channel, so conv → BN is one convolution
    with W' = W·γ/√(σ² + ε) and b' = (b − μ)·γ/√(σ² + ε) + β (Jacob et al. 2018, section 3.2,
    https://arxiv.org/abs/1712.05877): the copy computes what ``model.eval()`` computes, up to
    rounding, with one layer less per block — in every forward and backward pass of an attack.
    ``model`` itself is not changed.
    """
    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        if isinstance(block, ConvBlock) and isinstance(block.norm, nn.BatchNorm2d):
            norm, conv = block.norm, block.conv
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # (C,)
            with torch.no_grad():
                bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))  # (C, C_in, k, k), layout kept
                conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
            block.norm = nn.Identity()
    return folded


def precision_of(model: nn.Module) -> str:
    """The precision ``model``'s convolutions compute in now (float32 for a model without an :class:`AllConvNet`)."""
    return next((module.precision for module in model.modules() if isinstance(module, AllConvNet)), "float32")


MEMORY_FORMAT = torch.channels_last
"""Layout of the convolution weights (and so of every activation): oneDNN's kernels for these
narrow convolutions run 1.2–1.5× faster channels-last than NCHW on the CPU (``stochrelax bench``);
the values, and so every result, are the same."""


def build_model(config: ModelConfig) -> AllConvNet:
    """Builds the network described by a :class:`ModelConfig`, channels-last."""
    act = config.activation
    granularity = None if act.learnable_std is None else act.learnable_std.granularity

    def make_activation(channels: int) -> StochasticActivation:
        return StochasticActivation(act.kind, act.noise, act.mode, act.std, act.mean, act.estimator, granularity,
                                    channels)

    input_noise_std = None if config.input_noise is None else config.input_noise.std
    model = AllConvNet(ARCHITECTURES[config.architecture], make_activation, config.batch_norm,
                       config.input_mean, config.input_std, input_noise_std=input_noise_std)
    return model.to(memory_format=MEMORY_FORMAT)
