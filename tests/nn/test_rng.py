"""Seeding and replaying the global random generators without changing the caller's state."""

from __future__ import annotations

import json
import random

import numpy as np
import torch

from stochrelax.nn.rng import generator_states, host_generator_states, replaying, seeded, set_host_generator_states


def _draw_all() -> tuple:
    return torch.rand(3).tolist(), random.random(), np.random.rand()


def test_seeded_seeds_torch_python_and_numpy_and_restores_their_states() -> None:
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    with seeded(7):
        first = _draw_all()
    after_block = _draw_all()
    with seeded(7):
        assert _draw_all() == first
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    assert _draw_all() == after_block, "the caller's generators must continue as if the block never ran"


def test_host_generator_states_survive_a_json_round_trip() -> None:
    random.seed(5), np.random.seed(5)
    random.random(), np.random.normal()  # leaves a cached Gaussian in NumPy's state
    states = json.loads(json.dumps(host_generator_states()))
    expected = (random.random(), np.random.normal(), np.random.rand())
    set_host_generator_states(states)
    assert (random.random(), np.random.normal(), np.random.rand()) == expected


def test_replaying_draws_the_same_numbers_and_restores_the_current_state() -> None:
    torch.manual_seed(0)
    states = generator_states()
    drawn = torch.rand(4)
    after = torch.get_rng_state()
    with replaying(states):
        assert torch.equal(torch.rand(4), drawn)
    assert torch.equal(torch.get_rng_state(), after)
