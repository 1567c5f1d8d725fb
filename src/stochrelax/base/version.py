"""The version of stochrelax, recorded in every run's summary (pyproject.toml states the same)."""

__version__ = "0.1.0"
