"""Kernel images, module resolution, the initramfs and the QEMU command line (no VM)."""
import bz2
import contextlib
import gzip
import lzma
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from harness.provision.cpio import Cpio
from harness.provision.kernel import Kernel, bzimage_banner, has_virtio_console, pvh_elf, upstream_version
from harness.errors import UsageError
from harness.machine.qemu import AGENT_PORT, CMDLINE, NIC_ID, QemuSettings, qemu_command, widen_for_uart
from harness.nic import NICS
from harness.transport import ssh


def fake_bzimage(path: Path, banner: str) -> Path:
    head = bytearray(0x1000)
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x20E, 0x400)
    head[0x600:0x600 + len(banner)] = banner.encode()
    path.write_bytes(bytes(head))
    return path


def bzimage_with_payload(path: Path, payload: bytes) -> Path:
    """A bzImage as the x86 boot protocol lays it out: 1 setup sector, then the protected-mode
    code with the compressed kernel at payload_offset, its uncompressed size appended."""
    setup = bytearray(fake_bzimage(path, "6.1.0-57-amd64 #1 SMP").read_bytes()[:0x400])
    setup[0x1F1] = 1
    body = bytearray(0x100) + payload + struct.pack("<I", 1 << 20)
    struct.pack_into("<II", setup, 0x248, 0x100, len(payload) + 4)
    path.write_bytes(bytes(setup) + bytes(body))
    return path


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress, bz2.compress,
                                      lambda data: subprocess.run(["zstd", "-q", "-c"], input=data,
                                                                  capture_output=True, check=True).stdout],
                         ids=["xz", "gzip", "bzip2", "zstd"])
def test_the_kernel_elf_is_taken_out_of_a_bzimage_for_its_pvh_entry(tmp_path, compress):
    elf = b"\x7fELF" + bytes(range(256)) * 64
    image = bzimage_with_payload(tmp_path / "vmlinuz", compress(elf))
    assert pvh_elf(image, tmp_path / "vmlinux") == tmp_path / "vmlinux"
    assert (tmp_path / "vmlinux").read_bytes() == elf and sorted(tmp_path.iterdir()) == [tmp_path / "vmlinux",
                                                                                          tmp_path / "vmlinuz"]


def test_a_payload_that_is_not_a_kernel_elf_boots_the_bzimage(tmp_path):
    assert pvh_elf(bzimage_with_payload(tmp_path / "vmlinuz", lzma.compress(b"not an ELF")), tmp_path / "x") is None
    assert pvh_elf(bzimage_with_payload(tmp_path / "vmlinuz", b"\x02\x21\x4c\x18 lz4"), tmp_path / "x") is None
    assert not (tmp_path / "x").exists()


def test_version_is_read_from_the_image(tmp_path):
    banner = "6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
    assert bzimage_banner(fake_bzimage(tmp_path / "bz", banner)) == banner
    assert upstream_version(banner) == (6, 1, 192)  # not the "6.1.0" of the release name
    assert upstream_version("3.14.40 (me@host) #1 SMP") == (3, 14, 40)
    assert upstream_version("6.8.0-rc3 #1") == (6, 8, 0)


def test_a_file_that_is_not_a_bzimage_is_a_usage_error(tmp_path):
    (tmp_path / "x").write_bytes(b"ELF" * 1000)
    with pytest.raises(UsageError, match="not a bzImage"):
        bzimage_banner(tmp_path / "x")
    with pytest.raises(UsageError, match="No such file"):
        bzimage_banner(tmp_path / "missing")


def test_modules_come_from_modules_dep_in_load_order(tmp_path):
    mods = tmp_path / "lib/modules/6.1.0"
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text(
        "kernel/igb.ko: kernel/dca.ko kernel/i2c-algo-bit.ko\nkernel/dca.ko:\nkernel/i2c-algo-bit.ko:\n"
        "kernel/e1000e.ko:\n")
    (mods / "modules.builtin").write_text("kernel/drivers/net/dummy.ko\n")
    k = Kernel("k", fake_bzimage(tmp_path / "bz", "6.1.0 #1"), mods)
    assert [p.name for p in k.modules_for(["igb"])] == ["i2c-algo-bit.ko", "dca.ko", "igb.ko"]
    assert k.modules_for(["dummy"]) == []  # built in
    assert [p.name for p in k.modules_for([], optional=("e1000e", "veth"))] == ["e1000e.ko"]  # veth: absent, fine
    with pytest.raises(UsageError, match="no module or built-in driver 'virtio_net'"):
        k.modules_for(["virtio_net"])


def test_cpio_unpacks_with_busybox(tmp_path):
    c = Cpio()
    c.dir("bin")
    c.file("init", b"#!/bin/sh\necho hi\n", 0o755)
    c.symlink("bin/sh", "/bin/busybox")
    c.chardev("console", 5, 1)
    (tmp_path / "a.cpio").write_bytes(c.finish())
    listing = subprocess.run(["busybox", "cpio", "-tv"], stdin=open(tmp_path / "a.cpio", "rb"),
                             capture_output=True, text=True, check=True).stdout
    assert "bin/sh -> /bin/busybox" in listing
    assert "-rwxr-xr-x" in listing and "crw-------" in listing


def test_qemu_command_line():
    cmd = qemu_command(QemuSettings(accel="tcg"), Path("/k"), Path("/i"), NICS["igb"],
                       {"console": 3, "agent": 4, "qmp": 5, "brake": 6}, Path("/run"))
    joined = " ".join(cmd)
    assert cmd[cmd.index("-machine") + 1] == "q35,hpet=off"
    assert f"-device igb,id={NIC_ID},netdev=net0" in joined and "restrict=on" in joined
    assert "-no-reboot" in cmd and "-nodefaults" in cmd and "panic=-1" in joined
    assert "socket,id=console,fd=3" in joined and "socket,id=agent,fd=4" in joined
    assert "-mon chardev=qmp,mode=control" in joined and "-mon chardev=brake,mode=control" in joined
    assert joined.index("chardev:console") < joined.index("chardev:agent")  # ttyS0, then ttyS1
    assert "-device pvpanic -action panic=pause" in joined  # the agent's pause button
    assert "-icount" not in cmd  # a real-time guest
    nonic = qemu_command(QemuSettings(time="virtual"), Path("/k"), Path("/i"), None,
                         {"console": 3, "agent": 4, "qmp": 5, "brake": 6}, Path("/run"))
    assert "-netdev" not in nonic and [a for a in nonic if a.startswith(("igb", "e1000"))] == []
    assert nonic[nonic.index("-icount") + 1] == "shift=6,sleep=off"


def test_the_agent_is_on_a_virtio_serial_port_after_the_nic_for_a_kernel_with_the_virtio_console():
    fds = {"console": 3, "agent": 4, "qmp": 5, "brake": 6}
    cmd = qemu_command(QemuSettings(), Path("/k"), Path("/i"), NICS["igb"], fds, Path("/run"), virtio_agent=True)
    joined = " ".join(cmd)
    assert "chardev:agent" not in joined and "-serial chardev:console" in joined  # no ttyS1
    assert f"virtserialport,bus=agentbus.0,chardev=agent,name={AGENT_PORT}" in joined
    assert joined.index(f"igb,id={NIC_ID}") < joined.index("virtio-serial-pci")  # the NIC keeps its slot
    # guest/init finds the port by this name
    assert f'= {AGENT_PORT} ]' in (Path(__file__).parent.parent / "guest" / "init").read_text()


@pytest.mark.parametrize("config,expected", [
    ("CONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=y\n", True),
    ("CONFIG_VIRTIO_PCI=m\nCONFIG_VIRTIO_CONSOLE=m\n", True),  # Debian's 6.1: modules, loaded by init
    ("CONFIG_VIRTIO_PCI=y\n# CONFIG_VIRTIO_CONSOLE is not set\n", False),
    ("CONFIG_VIRTIO_CONSOLE=y\n", False),
])
def test_a_kernel_has_the_virtio_console_when_its_config_has_both_drivers(config, expected):
    assert has_virtio_console(config) is expected


def test_host_programs_come_with_the_shared_objects_ldd_finds():
    from harness.provision.image import host_files
    files = host_files([Path("/usr/sbin/ip")])
    assert "usr/sbin/ip" in files and "lib64/ld-linux-x86-64.so.2" in files
    assert any(name.endswith("/libc.so.6") for name in files) and any("libmnl" in name for name in files)


@pytest.mark.skipif(os.geteuid() != 0, reason="beyond net.core.wmem_max only root may widen a socket")
def test_the_uart_sockets_take_kilobytes_written_a_byte_at_a_time():
    # QEMU's UART writes a byte per send; at the default buffer the 279th would wait
    ours, qemus = socket.socketpair()
    widen_for_uart(qemus)
    qemus.setblocking(False)
    sent = 0
    with contextlib.suppress(BlockingIOError), ours, qemus:
        while sent < 8192:
            qemus.send(b"x")
            sent += 1
    assert sent == 8192


def test_on_the_real_clock_the_guest_ticks_periodically_and_on_the_virtual_one_it_may_not():
    real, virtual = QemuSettings(time="real", kernel_args="pci=nomsi"), QemuSettings(time="virtual")
    assert real.kernel_command_line("ssh.x=1").split()[-3:] == ["nohz=off", "ssh.x=1", "pci=nomsi"]
    assert "nohz" not in virtual.kernel_command_line() and virtual.kernel_command_line().startswith(CMDLINE)
    # the SSH transport asks for periodic ticks on either clock (it waits on the host's packets)
    assert "nohz=off" in virtual.kernel_command_line(ssh.KERNEL_ARGS).split()
