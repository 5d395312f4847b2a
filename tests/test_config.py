"""Bad input gets one line naming the key, the value and what is allowed; exit status 2."""
import subprocess
import sys
from pathlib import Path

import pytest

from harness import config
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
GOOD = "kernels:\n  k:\n    debian-package: linux-image-amd64\nnics: [igb]\n"

BAD_YAML = [
    ("kernels: [\n", "not valid YAML"),
    ("kernals: {}\n", "did you mean 'kernels'"),
    ("kernels: {}\n", "must name at least one kernel"),
    ("kernels:\n  k: {image: /nonexistent/bzImage}\n", "kernels.k.image: '/nonexistent/bzImage' does not exist"),
    ("kernels:\n  k: {debian-package: x, image: y}\n", "needs exactly one of"),
    ("kernels:\n  k: {debain-package: x}\n", "did you mean 'debian-package'"),
    (GOOD + "nics: igb\n", "nics: 'igb' must be a list"),
    (GOOD.replace("[igb]", "[igb, ixgb]"),
     "nics[1]: 'ixgb' unknown NIC model; choose one of: igb, e1000e, e1000, ixgbe, or vfio:"),
    (GOOD + "default: {kernel: nope}\n", "default.kernel: 'nope' is not one of: k"),
    (GOOD + "qemu: {memory: lots}\n", "qemu.memory: 'lots' must be a size in MiB"),
    (GOOD + "qemu: {memory: 8}\n", "must be between 64 and 16384"),
    (GOOD + "qemu: {accel: hvf}\n", "qemu.accel: 'hvf' is not one of: auto, kvm, tcg"),
    (GOOD + "qemu: {boot-timeout: -1}\n", "must be a positive number"),
    (GOOD + "qemu: {bianry: x}\n", "did you mean 'binary'"),
    (GOOD + "qemu: {time: fast}\n", "qemu.time: 'fast' is not one of: auto, virtual, real"),
    (GOOD + "scenarios: [nowhere/]\n", "scenarios[0]: '"),
    (GOOD + "scenarios: mine.py\n", "scenarios: 'mine.py' must be a list"),
    ("- a list\n", "must be a mapping"),
    ("kernels:\n  k: {source: /nonexistent/linux}\n", "kernels.k.source: '/nonexistent/linux' does not exist"),
    ("kernels:\n  k: {image: /etc/hostname, make: {CC: gcc}}\n",
     "kernels.k.make: {'CC': 'gcc'} only applies to kernels built from source"),
    ("kernels:\n  k: {source: /tmp, make: {cc: gcc}}\n", "kernels.k.make.cc: 'gcc' is not a make variable name"),
    ("kernels:\n  k: {source: /tmp, make: {CC: 12}}\n", "kernels.k.make.CC: 12 must be a string"),
    ("kernels:\n  k: {source: /tmp, patches: [/nonexistent.patch]}\n",
     "kernels.k.patches[0]: '/nonexistent.patch' does not exist"),
    ("kernels:\n  k: {source: /tmp, files: {include/x.h: /nonexistent.h}}\n",
     "kernels.k.files.include/x.h: '/nonexistent.h' does not exist"),
    (GOOD + "guest-binaries: [/nonexistent/ip]\n", "guest-binaries[0]: '/nonexistent/ip' does not exist"),
    (GOOD + "transport: shh\n", "transport: 'shh' is not one of: serial, ssh (did you mean 'ssh'?)"),
    ("kernels:\n  k: {source-package: Linux Source}\n", "kernels.k.source-package: 'Linux Source' must be a Debian "
     "package name, or package/suite"),
    ("kernels:\n  k: {debian-package: linux-image-amd64/}\n", "kernels.k.debian-package: 'linux-image-amd64/' must be"),
    ("kernels:\n  k: {source-package: linux-source-5.10, image: /x}\n", "needs exactly one of"),
    ("kernels:\n  k: {debian-package: x, modules: /lib/modules}\n", "kernels.k.modules: '/lib/modules' only applies "
     "with image:"),
    ("kernels:\n  k: {debian-package: x, patches: []}\n", "kernels.k.patches: [] only applies to kernels built"),
]


@pytest.mark.parametrize("text,message", BAD_YAML)
def test_bad_configuration_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "testbed.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as e:
        config.load(path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_configuration_that_is_not_utf8_is_one_line_exit_2(tmp_path):
    (tmp_path / "testbed.yaml").write_bytes(GOOD.encode() + b"# caf\xe9 in Latin-1\n")
    r = run_cli("--config", str(tmp_path / "testbed.yaml"), "list")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{tmp_path / 'testbed.yaml'}: byte {len(GOOD) + 5} is not UTF-8" in r.stderr and "Traceback" not in r.stderr


def test_a_guest_binary_must_be_executable(tmp_path):
    (tmp_path / "data.txt").write_text("not a program")
    (tmp_path / "testbed.yaml").write_text(GOOD + f"guest-binaries: [{tmp_path / 'data.txt'}]\n")
    with pytest.raises(UsageError, match=r"guest-binaries\[0\]: '.*data.txt' is not an executable file"):
        config.load(tmp_path / "testbed.yaml")


def test_good_configuration_loads(tmp_path):
    path = tmp_path / "testbed.yaml"
    path.write_text(GOOD)
    cfg = config.load(path)
    assert cfg.default_kernel == "k" and cfg.nics == ("igb",) and cfg.accel == "auto"


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args,message", [
    (["run", "carier-qmp"], "did you mean 'carrier-qmp'"),
    (["run", "overrun", "--nic", "e1000x"], "--nic e1000x: unknown NIC model"),
    (["run", "overrun", "--kernel", "3.14"], "--kernel 3.14: no such kernel"),
    (["--config", "/nonexistent.yaml", "list"], "/nonexistent.yaml: cannot read"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["run"], "the following arguments are required: scenario"),
    (["matrix", "--shard", "3/2"], "--shard 3/2: expected I/N"),
    (["matrix", "--scenarios", "overun"], "did you mean 'overrun'"),
    (["matrix", "--nics", "rtl8139"], "--nic rtl8139: unknown NIC model"),
    (["matrix", "--results", "/proc/testbed"], "results directory /proc/testbed: not writable"),
    (["diff", "--kernel", "min-6.1"], "--kernel min-6.1: give two different kernels to compare"),
    (["report", "/nonexistent"], "/nonexistent: no run.json"),
    (["report", "/tmp", "/var"], "several directories or --out need --merge"),
    (["link", "down", "--vm", "/nonexistent"], "--vm /nonexistent: no running guest"),
    (["bench", "--kernels", "2.6"], "--kernel 2.6: no such kernel"),
    (["run", "overrun", "--transport", "telnet"], "argument --transport: invalid choice: 'telnet'"),
    (["soak", "--restore", "--transport", "ssh"], "soak: --restore with transport ssh: an SSH guest always boots"),
])
def test_cli_usage_errors_exit_2_with_one_line(args, message):
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_not_a_kernel_image(tmp_path):
    fake = tmp_path / "bzImage"
    fake.write_bytes(b"\0" * 4096)
    (tmp_path / "testbed.yaml").write_text(f"kernels:\n  bad: {{image: {fake}}}\nnics: [igb]\n")
    r = run_cli("--config", str(tmp_path / "testbed.yaml"), "run", "overrun")
    assert r.returncode == 2 and "not a bzImage" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_list_names_every_scenario_with_its_source():
    r = run_cli("list")
    assert r.returncode == 0
    for name in ("carrier-qmp", "carrier-admin-down", "overrun"):
        assert name in r.stdout
    assert "af_netlink.c" in r.stdout
