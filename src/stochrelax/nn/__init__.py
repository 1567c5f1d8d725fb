"""Building blocks: noise families, gradient estimators, stochastic units, and a network as a stochastic predictor.

Layers to drop into any ``nn.Module``: :class:`StochasticActivation` (noise in a unit's
pre-activation, thesis eq. 3.1) with its pure function :func:`stochastic_activation`, and
:class:`GaussianInputNoise` (randomized smoothing's input noise). :mod:`stochrelax.nn.prediction`
treats any network holding them as the predictive distribution it defines.
"""

from stochrelax.nn.estimators import ESTIMATORS
from stochrelax.nn.layers import (ACTIVATIONS, MODES, GaussianInputNoise, StochasticActivation, noise_disabled,
                                  stochastic_activation)
from stochrelax.nn.noise import NOISES, make_noise
from stochrelax.nn.prediction import (collect_log_prob, evaluating, input_noise_std, is_stochastic, predictive_log_prob,
                                      sample_logits)

__all__ = ["ESTIMATORS", "ACTIVATIONS", "MODES", "GaussianInputNoise", "StochasticActivation", "noise_disabled",
           "stochastic_activation", "NOISES", "make_noise", "collect_log_prob", "evaluating", "input_noise_std",
           "is_stochastic", "predictive_log_prob", "sample_logits"]
