"""How a measure's numbers read."""

from __future__ import annotations

import math

from stochrelax.analysis.measures import UNITS


def test_numbers_read_in_their_unit_and_a_rounded_zero_has_no_sign():
    points, accuracy, ratio = UNITS["points"], UNITS["accuracy"], UNITS["ratio"]
    assert points.text(-0.0004) == "+0.0 points" and points.text(-0.012) == "-1.2 points"
    assert accuracy.text(0.9143) == "91.4%" and ratio.text(1.104) == "×1.10"
    assert points.interval_text(-0.0004, -0.0004, 0.02) == "+0.0 points [0.0, 2.0]"
    assert accuracy.interval_text(0.5, -math.inf, math.inf) == "50.0% [−∞, ∞]"
