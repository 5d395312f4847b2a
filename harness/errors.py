"""Errors a user can fix: the CLI prints them as one line and exits 2."""


import difflib


def did_you_mean(word, choices) -> str:
    """' (did you mean 'x'?)' for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UsageError(Exception):
    """Bad input (configuration, kernel path, NIC, scenario name): say which key, which value,
    and what would be right."""


class NetworkError(Exception):
    """Something the testbed must fetch could not be reached: the CLI exits 3."""
