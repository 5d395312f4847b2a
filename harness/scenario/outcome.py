"""How a scenario ends early: it does not apply (Skip), or the kernel did not do what it
expects (Failed)."""


class Skip(Exception):
    """The scenario does not apply to this kernel or NIC; the message says why."""


class Failed(AssertionError):
    """The kernel did not behave as the scenario expects."""
