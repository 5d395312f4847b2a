"""The scenario catalogue (../shared/SCENARIOS.md); importing this package registers them all."""
from . import link, overrun  # noqa: F401
