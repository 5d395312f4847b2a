"""Scenarios from files of the user's: loaded like the built-in catalogue, every mistake one line
naming the file and line (exit 2), testbed.yaml found as git finds its directory."""
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from harness import config
from harness.errors import UsageError
from harness.scenario import BUILTIN, Guest, load_catalogue, scenarios_in

ROOT = Path(__file__).resolve().parent.parent
GOOD = "kernels:\n  k:\n    debian-package: linux-image-amd64\nnics: [igb]\n"
SCENARIO = '''from harness.scenario import Guest, scenario


@scenario("{name}", "a scenario of the user's", source="-", needs_nic=False)
def mine(g: Guest) -> None:
    g.note("ran")
'''


def run_testbed(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


def project(tmp_path, files: dict[str, str], yaml: str = GOOD) -> Path:
    (tmp_path / "testbed.yaml").write_text(yaml)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_file_of_scenarios_is_loaded_with_where_each_is_defined(tmp_path):
    project(tmp_path, {"s/a.py": SCENARIO.format(name="mine-a"), "s/_helper.py": "raise SystemExit",
                       "s/b.py": SCENARIO.format(name="mine-b")})
    found = load_catalogue((tmp_path / "s",))
    assert {"mine-a", "mine-b", "carrier-qmp"} <= set(found)  # and the built-in catalogue, loaded the same way
    assert found["mine-a"].origin == f"{tmp_path / 's' / 'a.py'}:4"
    assert found["carrier-qmp"].origin.startswith(str(BUILTIN / "link.py") + ":")
    listing = run_testbed("list", "--scenarios-from", "s", cwd=tmp_path).stdout
    assert f"defined at {tmp_path / 's' / 'b.py'}:4" in listing


def test_a_file_that_annotates_its_guest_loads_as_the_documented_import_says(tmp_path):
    # evaluated when the function is defined: Guest must be importable at run time, not only for type checkers
    project(tmp_path, {"hinted.py": SCENARIO.format(name="hinted")})
    [info] = scenarios_in(tmp_path / "hinted.py")
    assert typing.get_type_hints(info.func) == {"g": Guest, "return": type(None)}
    r = run_testbed("list", "--scenarios-from", "hinted.py", cwd=tmp_path)
    assert r.returncode == 0 and "hinted" in r.stdout, r.stderr


@pytest.mark.parametrize("text,message", [
    ("def broken(:\n", "bad.py:1: SyntaxError"),
    ("import os\n\nraise RuntimeError('no network here')\n",
     "bad.py:3: cannot load scenarios: RuntimeError: no network here"),
    ("from harness.scenario import nothing_like_this\n", "bad.py:1: cannot load scenarios: ImportError"),
])
def test_a_scenario_file_with_an_error_is_one_line_with_its_file_and_line(tmp_path, text, message):
    project(tmp_path, {"bad.py": text})
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        scenarios_in(tmp_path / "bad.py")
    r = run_testbed("run", "bad.py::x", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_two_scenarios_with_one_name_name_both_places(tmp_path):
    project(tmp_path, {"one.py": SCENARIO.format(name="same"), "two.py": SCENARIO.format(name="same"),
                       "clash.py": SCENARIO.format(name="carrier-qmp")})
    with pytest.raises(UsageError,
                       match=f"'same' is defined twice: {tmp_path / 'one.py'}:4 and {tmp_path / 'two.py'}:4"):
        load_catalogue((tmp_path / "one.py", tmp_path / "two.py"))
    r = run_testbed("list", "--scenarios-from", "clash.py", cwd=tmp_path)
    assert r.returncode == 2 and "'carrier-qmp' is defined twice" in r.stderr and "link.py:" in r.stderr


def test_file_py_names_a_scenario_and_a_missing_file_is_a_usage_error(tmp_path):
    project(tmp_path,
            {"two.py": SCENARIO.format(name="first") + SCENARIO.format(name="second").replace("mine", "other")})
    r = run_testbed("run", "two.py", cwd=tmp_path)
    assert r.returncode == 2 and "defines 2 scenarios (first, second); name one as two.py::NAME" in r.stderr
    r = run_testbed("run", "two.py::third", cwd=tmp_path)
    assert r.returncode == 2 and "scenario 'third': no such scenario" in r.stderr
    r = run_testbed("run", "gone.py::x", cwd=tmp_path)
    assert r.returncode == 2 and "gone.py: no such file or directory" in r.stderr


def test_testbed_yaml_is_found_upward_or_named(tmp_path, monkeypatch):
    project(tmp_path, {"sub/deeper/.keep": ""}, yaml=GOOD.replace("nics: [igb]", "nics: [e1000]"))
    deeper = tmp_path / "sub" / "deeper"
    assert config.find(start=deeper) == tmp_path / "testbed.yaml"
    monkeypatch.delenv("TESTBED_CONFIG", raising=False)
    assert run_testbed("list", cwd=deeper).returncode == 0
    elsewhere = tmp_path / "other.yaml"
    elsewhere.write_text("nonsense: 1\n")
    monkeypatch.setenv("TESTBED_CONFIG", str(elsewhere))
    assert config.find(start=deeper) == elsewhere
    assert config.find("given.yaml", start=deeper) == Path("given.yaml")  # --config wins
    r = run_testbed("list", cwd=deeper)
    assert r.returncode == 2 and "other.yaml: nonsense" in r.stderr
    monkeypatch.delenv("TESTBED_CONFIG")
    with pytest.raises(UsageError, match="no testbed.yaml in /"):
        config.find(start=Path("/"))
