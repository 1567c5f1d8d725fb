"""stochrelax: stochastic neurons, adversarial robustness, and the thesis study."""

from stochrelax.base.version import __version__

__all__ = ["__version__"]
