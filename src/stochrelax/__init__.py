"""stochrelax: stochastic neurons, adversarial robustness, and the thesis study."""

__version__ = "0.1.0"
