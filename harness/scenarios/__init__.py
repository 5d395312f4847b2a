"""The scenario catalogue (README.md, "Scenarios"); importing this package registers them all."""
from . import buffers, clients, dump, eras, link, overrun, sendmsg, unicast  # noqa: F401
