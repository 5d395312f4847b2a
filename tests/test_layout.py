"""The house's layout: imports run one way.  No module imports itself back through others, no
two packages import each other, the packages import in the order README's Architecture section
draws, and reading results loads neither a VM nor the catalogue."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"


def module_name(path: Path, top: Path) -> str:
    parts = list(path.relative_to(top).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exists(module: str, top: Path) -> bool:
    base = top / module.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def import_graph(root: Path = HARNESS) -> dict[str, set[str]]:
    """Module -> the harness modules it imports when it is imported (function-level imports and
    TYPE_CHECKING blocks are not: they run later, or never)."""
    graph = {}
    for path in root.rglob("*.py"):
        me = module_name(path, root.parent)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("harness"):
                target = node.module
            else:
                continue
            deps |= {f"{target}.{a.name}" if exists(f"{target}.{a.name}", root.parent) else target for a in node.names}
        graph[me] = deps - {me}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []

    def walk(node, path, seen):
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                found.append(path[path.index(dep):] + [dep])
            elif dep not in seen:
                seen.add(dep)
                walk(dep, path + [dep], seen)
    for start in sorted(graph):
        walk(start, [start], {start})
    return found


def package(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_no_two_packages_import_each_other():
    edges = {(package(m), package(d)) for m, deps in import_graph().items() for d in deps if package(m) != package(d)}
    assert sorted((a, b) for a, b in edges if (b, a) in edges) == []


# README, Architecture: `cli` -> `cells` -> `vm` -> `machine`, `transport`, `agent`;
# `builtin` -> `scenario` -> `agent`, `netlink`; the pytest plugin drives the runner as the CLI does.
ORDER = [("cli", "cells"), ("pytest_plugin", "cells"), ("cells", "vm"), ("vm", "machine"), ("vm", "transport"),
         ("vm", "agent"), ("transport", "machine"), ("transport", "agent"), ("builtin", "scenario"),
         ("scenario", "agent"), ("scenario", "netlink"), ("netlink", "agent")]


def package_reach(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package -> every package it imports, directly or through others."""
    direct: dict[str, set[str]] = {}
    for m, deps in graph.items():
        direct.setdefault(package(m), set()).update(package(d) for d in deps if package(d) != package(m))
    reach = {}
    for start in direct:
        seen, todo = set(), [start]
        while todo:
            for dep in direct.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        reach[start] = seen - {start}
    return reach


def test_packages_import_in_the_documented_order():
    reach = package_reach(import_graph())
    assert [(a, b) for a, b in ORDER if b not in reach.get(a, ())] == []  # each arrow is there
    assert [(a, b) for a, b in ORDER if a in reach.get(b, ())] == []  # and none runs back


def test_results_import_only_the_trace():
    reach = package_reach(import_graph())
    assert reach["results"] <= {"trace", "show"}, reach["results"]


def test_the_checks_find_a_cycle(tmp_path):
    pkg = tmp_path / "harness"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from ..b import x\n")
    (pkg / "b.py").write_text("from .a import y\n")
    assert ["harness.a", "harness.b", "harness.a"] in cycles(import_graph(pkg))


def test_reading_results_loads_no_vm_and_no_catalogue():
    code = ("import sys, harness.results.directory, harness.results.text; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('harness'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    assert sorted(loaded) == ["harness", "harness.results", "harness.results.differences",
                              "harness.results.directory", "harness.results.html", "harness.results.junit",
                              "harness.results.kcidb", "harness.results.text", "harness.results.timeline_svg",
                              "harness.show", "harness.trace"]
