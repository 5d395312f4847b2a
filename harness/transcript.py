"""A channel's transcript: every line stamped with the host seconds since it was opened, so the
agent's frames and the monitor's commands line up with each other and with the trace."""
from __future__ import annotations

import time
from pathlib import Path


class Transcript:
    def __init__(self, path: Path | None):
        """No path: nothing is written."""
        self._file = open(path, "w", buffering=1) if path else None
        self._t0 = time.monotonic()

    def write(self, text: str):
        if self._file:
            self._file.write(f"{time.monotonic() - self._t0:9.3f} {text}\n")

    def close(self):
        if self._file:
            self._file.close()
            self._file = None
