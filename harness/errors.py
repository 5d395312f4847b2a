"""Errors a user can fix: the CLI prints them as one line and exits 2."""


class UsageError(Exception):
    """Bad input (configuration, kernel path, NIC, scenario name): say which key, which value,
    and what would be right."""
