"""stochrelax: noise inside neural networks, and how robust it honestly makes them.

The front door, ``import stochrelax as sr``:

- layers to drop into any ``nn.Module``: :class:`StochasticActivation` and its pure function
  :func:`stochastic_activation` (noise in a unit's pre-activation, thesis eq. 3.1),
  :class:`GaussianInputNoise`, :func:`noise_disabled`; the noise families (:data:`NOISES`,
  :func:`make_noise`) and the sign units' gradient estimators (:data:`ESTIMATORS`);
- a network as a stochastic predictor: :func:`sample_logits`, :func:`predictive_log_prob`,
  :func:`evaluating`, :func:`is_stochastic`, :class:`Randomized`;
- one call that evaluates any classifier against the adaptive worst case: :func:`evaluate_robustness`;
- the thesis network (:func:`build_model`, :class:`ModelConfig`) and its data (:func:`load_fashion_mnist`).

Every attack, with the proxies of sign units, is in :mod:`stochrelax.attacks`; the layers of the
package are described in :mod:`stochrelax.nn` and the README's Architecture section.
"""

from stochrelax.base.version import __version__
from stochrelax.data.fashion_mnist import FashionMNIST, load_fashion_mnist
from stochrelax.evaluation.robust_accuracy import RobustnessEvaluation, evaluate_robustness
from stochrelax.models.allconv import ModelConfig, build_model
from stochrelax.nn.estimators import ESTIMATORS
from stochrelax.nn.layers import GaussianInputNoise, StochasticActivation, noise_disabled, stochastic_activation
from stochrelax.nn.noise import NOISES, make_noise
from stochrelax.nn.prediction import Randomized, evaluating, is_stochastic, predictive_log_prob, sample_logits

__all__ = ["__version__", "StochasticActivation", "stochastic_activation", "GaussianInputNoise", "noise_disabled",
           "NOISES", "make_noise", "ESTIMATORS", "sample_logits", "predictive_log_prob", "evaluating", "is_stochastic",
           "Randomized", "evaluate_robustness", "RobustnessEvaluation", "build_model", "ModelConfig",
           "load_fashion_mnist", "FashionMNIST"]
