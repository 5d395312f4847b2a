"""The scenarios known by name: `@scenario` marks a function, and the loader finds the marked
functions of the built-in catalogue and of the user's files alike."""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from collections.abc import Callable

from ..errors import UsageError

if TYPE_CHECKING:
    from .guest import Guest


@dataclass
class ScenarioInfo:
    name: str
    description: str
    source: str            # the kernel source the scenario is about (file:function, ...)
    needs_nic: bool
    func: Callable[[Guest], None]
    origin: str = ""       # where it is defined, file:line
    nics: tuple[str, ...] = ()  # the NIC models it is about, if not every one (a matrix runs it on those)

    def applies_to(self, nic: str | None) -> bool:
        return not self.nics or nic in self.nics


def scenario(name: str, description: str, source: str, needs_nic: bool = True, nics: tuple[str, ...] = ()):
    """Mark a function as a scenario; loading its file (load_catalogue) makes it known by `name`.
    `nics` limits it to those NIC models (a driver's own behaviour)."""
    def mark(func):
        origin = f"{inspect.getsourcefile(func)}:{func.__code__.co_firstlineno}"
        func.testbed_scenario = ScenarioInfo(name, description, source, needs_nic, func, origin, tuple(nics))
        return func
    return mark


PACKAGE = Path(__file__).resolve().parents[1]  # harness/
BUILTIN = PACKAGE / "builtin"


def _import(path: Path) -> ModuleType:
    """A scenario file as a module: inside harness/ by its package name (its relative imports
    work), anywhere else by path, with its directory importable for its own helpers.  Any error
    is one line naming the file and line."""
    try:
        if path.is_relative_to(PACKAGE):
            return importlib.import_module(".".join(("harness", *path.relative_to(PACKAGE).with_suffix("").parts)))
        name = f"testbed_scenarios.{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:  # a .py path always has a source loader
            raise UsageError(f"{path}: cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        sys.modules[name] = module
        return module
    except SyntaxError as e:
        raise UsageError(f"{e.filename or path}:{e.lineno}: SyntaxError: {e.msg}") from None
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
        raise UsageError(f"{path}:{frames[-1].lineno if frames else '?'}: cannot load scenarios: "
                         f"{type(e).__name__}: {e}") from None


def scenarios_in(path: Path) -> list[ScenarioInfo]:
    """The scenarios a file defines (a directory: its *.py files, not _*.py), in file order."""
    path = path.resolve()
    if not path.exists():
        raise UsageError(f"scenarios {path}: no such file or directory; give a .py file or a directory of them")
    files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_")) if path.is_dir() else [path]
    found = []
    for file in files:
        module = _import(file)
        found += [obj.testbed_scenario for obj in vars(module).values()
                  if isinstance(getattr(obj, "testbed_scenario", None), ScenarioInfo)
                  and getattr(obj, "__module__", None) == module.__name__]
    return found


@functools.cache
def load_catalogue(sources: tuple[Path, ...] = ()) -> dict[str, ScenarioInfo]:
    """The built-in scenarios and those of `sources` (files or directories), by name; two with
    one name are an error naming both."""
    known: dict[str, ScenarioInfo] = {}
    for source in (BUILTIN, *sources):
        for info in scenarios_in(source):
            if info.name in known and known[info.name].origin != info.origin:
                raise UsageError(f"scenario {info.name!r} is defined twice: {known[info.name].origin} "
                                 f"and {info.origin}; rename one")
            known[info.name] = info
    return known
