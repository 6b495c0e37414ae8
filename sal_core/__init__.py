"""Test-time compute scaling for math problems: search over sampled solutions guided by a PRM."""

__version__ = "0.1.0"
