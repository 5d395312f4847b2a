"""The netlink testbed.  guest/ and kernel-config/ live beside the package, in the project."""
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
