"""The scenario catalogue (../shared/SCENARIOS.md); importing this package registers them all."""
from . import buffers, clients, dump, link, overrun, sendmsg, unicast  # noqa: F401
