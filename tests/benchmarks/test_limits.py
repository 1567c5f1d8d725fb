"""FLOPs of the thesis network, counted by :func:`benchmarks.limits.count_conv_flops` and by hand."""

from __future__ import annotations

import torch

from benchmarks import limits
from benchmarks.suite import TRAIN_VARIANTS, thesis_model
from stochrelax.models.allconv import THESIS_ALLCONV


def _flops_by_hand(specs, size: int = 28, channels: int = 1) -> int:
    total = 0
    for spec in specs:
        size = (size - spec.kernel_size) // spec.stride + 1
        total += 2 * channels * spec.kernel_size ** 2 * spec.out_channels * size * size
        channels = spec.out_channels
    return total


def test_conv_flops_of_the_thesis_network() -> None:
    # 26²·6·9·1 + 24²·12·9·6 + 12²·12·4·12 + 10²·24·9·12 + 8²·48·9·24 + 4²·48·4·48 + 2²·96·9·48
    # + 96·4·96 + 50·96 + 10·50 multiply-adds, ×2.
    assert _flops_by_hand(THESIS_ALLCONV) == 3_541_912
    for activation in (TRAIN_VARIANTS["deterministic"], TRAIN_VARIANTS["sign-score"]):
        model = thesis_model(activation)
        before = ([m.training for m in model.modules()], torch.get_rng_state(),
                  {k: v.clone() for k, v in model.state_dict().items()})
        assert limits.count_conv_flops(model) == 3_541_912
        assert [m.training for m in model.modules()] == before[0]
        assert torch.equal(torch.get_rng_state(), before[1])
        assert all(torch.equal(v, before[2][k]) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())
