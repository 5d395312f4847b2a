"""Values on one line, as traces and decoded messages show them."""
from __future__ import annotations


def show(value, limit: int = 80) -> str:
    """An attribute's value on one line: nested ones as {NAME=value, ...}, long ones cut."""
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}={show(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(show(v, limit) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def show_attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={show(v)}" for k, v in attrs.items())
