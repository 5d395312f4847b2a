"""The 82598 model (qemu-model/ixgbe.c) register by register, without a kernel: QEMU's qtest
protocol drives it as the ixgbe driver would (the 82598 datasheet and the 3.14/6.1 drivers are the map), and each test
fails on a model with that behaviour broken.  MSI and MSI-X messages are pointed at guest RAM,
so a message sent is a word written there; INTx is seen through the IOAPIC's input lines; frames
go in and out through a UDP netdev whose other end is this test."""
import contextlib
import socket
import struct
import time

import pytest

from harness.provision import qemu as qemu_build
from harness.config import default_cache
from tests.qtest import QtestMachine

CACHE = default_cache()
BINARY = qemu_build.find(CACHE)
pytestmark = pytest.mark.skipif(BINARY is None, reason=f"no QEMU with the model: {qemu_build.unavailable(CACHE)}")

MAC = bytes.fromhex("525400123456")
BAR0, BAR3 = 0xE0000000, 0xE0020000
MSI_RAM = 0x10000          # vector v's message lands at MSI_RAM + 4 v
TX_RING, TX_BUF = 0x200000, 0x210000
RX_RING, RX_BUF = 0x300000, 0x310000
# registers
CTRL, STATUS, EICR, EICS, EIAC, EIMS, EIMC, EIAM, GPIE = 0x0, 0x8, 0x800, 0x808, 0x810, 0x880, 0x888, 0x890, 0x898
EEC, EERD, FWSM, AUTOC, LINKS, MSCA, MSRWD = 0x10010, 0x10014, 0x10148, 0x42A0, 0x42A4, 0x425C, 0x4260
RAL0, RAH0, VLNCTRL, FCTRL, RXCTRL, SRRCTL0 = 0x5400, 0x5404, 0x5088, 0x5080, 0x3000, 0x2100
GPRC, BPRC, GORCH, GPTC, GOTCH = 0x4074, 0x4078, 0x408C, 0x4080, 0x4094
TDBAL, TDBAH, TDLEN, TDH, TDT, TXDCTL = 0x6000, 0x6004, 0x6008, 0x6010, 0x6018, 0x6028
RDBAL, RDBAH, RDLEN, RDH, RDT, RXDCTL = 0x1000, 0x1004, 0x1008, 0x1010, 0x1018, 0x1028
LSC, ENABLE, EIAME, RST = 1 << 20, 1 << 25, 1 << 30, 1 << 26
LINKS_UP_10G = 1 << 30 | 1 << 29


def ivar(n: int) -> tuple[int, int]:
    """IVAR entry n (RX queue q: q; TX queue q: 64 + q; other causes: 97): register, shift."""
    return 0x900 + 4 * (n // 4), 8 * (n % 4)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nic:
    """The model in a qtest QEMU, BARs assigned, memory and bus mastering on; the far end of its
    netdev is `self.wire`, a UDP socket of this test."""

    def __init__(self, m: QtestMachine, wire: socket.socket, model_port: int):
        self.m, self.wire, self.model_port = m, wire, model_port
        self.devfn = m.find_device(0x8086, 0x10C7)

    def setup(self):
        m, d = self.m, self.devfn
        m.config_writel(d, 0x10, BAR0 | 0x4)  # 64-bit memory BAR0 (+ 0x14 high = 0)
        m.config_writel(d, 0x14, 0)
        m.config_writel(d, 0x1C, BAR3 | 0x4)
        m.config_writel(d, 0x20, 0)
        m.config_writew(d, 0x04, 0x6)         # memory space, bus master

    def r(self, reg: int) -> int:
        return self.m.readl(BAR0 + reg)

    def w(self, reg: int, value: int):
        self.m.writel(BAR0 + reg, value)

    def set_ivar(self, entry: int, vector: int):
        reg, shift = ivar(entry)
        self.w(reg, self.r(reg) & ~(0xFF << shift) | (0x80 | vector) << shift)

    # ---- interrupts, as messages into RAM ----

    def enable_msix(self, vectors: int = 2):
        for v in range(vectors):
            entry = BAR3 + 16 * v
            self.m.writel(entry, MSI_RAM + 4 * v)
            self.m.writel(entry + 4, 0)
            self.m.writel(entry + 8, 0xA000 + v)
            self.m.writel(entry + 12, 0)      # unmasked
        self.m.config_writew(self.devfn, 0x62, 1 << 15)
        self.clear_messages()

    def enable_msi(self):
        d = self.devfn
        self.m.config_writel(d, 0x54, MSI_RAM)
        self.m.config_writel(d, 0x58, 0)
        self.m.config_writew(d, 0x5C, 0xB0B0)
        self.m.config_writew(d, 0x52, 1)
        self.clear_messages()

    def clear_messages(self):
        self.m.write(MSI_RAM, bytes(64))

    def messages(self) -> list[int]:
        """The vectors (MSI: 0) a message has been sent for since the last call."""
        words = struct.unpack("<16I", self.m.read(MSI_RAM, 64))
        self.clear_messages()
        return [v for v, w in enumerate(words) if w in (0xA000 + v, 0xB0B0)]

    # ---- the wire ----

    def send_frame(self, frame: bytes):
        self.wire.sendto(frame, ("127.0.0.1", self.model_port))

    def sent_frames(self, wait: float = 1.0) -> list[bytes]:
        frames, deadline = [], time.monotonic() + wait
        self.wire.settimeout(0.05)
        while time.monotonic() < deadline:
            try:
                frames.append(self.wire.recv(65536))
            except TimeoutError:
                if frames:
                    break
        return frames

    def until(self, ready, what: str, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while not (value := ready()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s")
            time.sleep(0.01)
        return value


def machine(tmp_path, properties: str = "", incoming=None):
    """A qtest QEMU with the model on a UDP netdev to this test; yields (machine, Nic)."""
    wire = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wire.bind(("127.0.0.1", 0))
    model_port = free_udp_port()
    netdev = (f"dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port={model_port},"
              f"remote.type=inet,remote.host=127.0.0.1,remote.port={wire.getsockname()[1]}")
    device = ",".join(filter(None, (f"ixgbe,netdev=n0,id=nic0,mac={MAC.hex(':')}", properties)))
    assert BINARY is not None  # the module is skipped without it
    m = QtestMachine(BINARY, qemu_build.firmware_options(), ["-netdev", netdev, "-device", device], incoming)
    return m, wire, model_port


@pytest.fixture
def nic(tmp_path):
    m, wire, port = machine(tmp_path)
    with wire, m:
        n = Nic(m, wire, port)
        n.setup()
        yield n


@pytest.fixture
def nic_without_msix(tmp_path):
    m, wire, port = machine(tmp_path, "msix=off")
    with wire, m:
        n = Nic(m, wire, port)
        n.setup()
        yield n


def capabilities(n: Nic) -> dict[int, int]:
    found, at = {}, n.m.config_readl(n.devfn, 0x34) & 0xFF
    while at:
        header = n.m.config_readw(n.devfn, at)
        found[header & 0xFF] = at
        at = header >> 8
    return found


# ---------------------------------------------------------------- identity, reset, EEPROM

def test_pci_identity_and_the_capability_offsets_the_driver_reads(nic):
    m, d = nic.m, nic.devfn
    assert m.config_readl(d, 0) == 0x10C78086
    assert capabilities(nic) == {0x01: 0x40, 0x05: 0x50, 0x11: 0x60, 0x10: 0xA0}  # PM, MSI, MSI-X, PCIe
    assert (m.config_readw(d, 0x62) & 0x7FF) + 1 >= 18  # ixgbe_get_pcie_msix_count_generic reads 0x62
    msi_flags = m.config_readw(d, 0x52)
    assert msi_flags & 0x80 and not msi_flags & 0x100  # 64-bit, no per-vector mask: ends at 0x5D, before 0x60
    assert (m.config_readw(d, 0xA2) >> 4) & 0xF == 0    # a PCIe endpoint: Linux reads its link registers
    lnksta = m.config_readw(d, 0xB2)
    assert (lnksta & 0xF, lnksta >> 4 & 0x3F) == (1, 8)  # 2.5 GT/s x8: the 16 GT/s 3.14's probe checks for
    m.config_writel(d, 0x10, 0xFFFFFFFF)
    assert (~(m.config_readl(d, 0x10) & ~0xF) & 0xFFFFFFFF) + 1 == 0x20000  # BAR0 is 128 KiB
    nic.setup()


def test_reset_values_the_probe_depends_on(nic):
    assert nic.r(EEC) & (1 << 8) and (nic.r(EEC) >> 11) & 0xF == 2  # PRES; 1 << (2 + 6) = 256 words
    assert nic.r(FWSM) & (1 << 15)                                   # FW_VAL: 6.1 warns without it
    assert nic.r(AUTOC) == 0x2000                                    # LMS 10G, no autonegotiation
    assert (nic.r(0x3C00), nic.r(0xCC00)) == (0x10000, 0xA000)       # RXPBSIZE(0), TXPBSIZE(0)
    assert nic.r(VLNCTRL) == 0x8100
    assert nic.r(STATUS) != 0xFFFFFFFF and nic.r(STATUS) & 0xC == 0  # never "removed"; LAN ID 0
    assert (nic.r(RAL0), nic.r(RAH0)) == (struct.unpack("<I", MAC[:4])[0], 1 << 31 | struct.unpack("<H", MAC[4:])[0])
    assert nic.r(LINKS) & LINKS_UP_10G == LINKS_UP_10G


def eeprom_word(nic: Nic, word: int) -> int:
    nic.w(EERD, word << 2 | 1)
    value = nic.r(EERD)
    assert value & 2, f"EERD.DONE not set for word {word:#x}"
    assert (value >> 2) & 0x3FFF == word
    return value >> 16


def test_eeprom_reads_and_its_checksum_holds_by_the_drivers_rule(nic):
    words = [eeprom_word(nic, i) for i in range(256)]
    assert bytes(b for w in words[:3] for b in struct.pack("<H", w)) == MAC
    total = sum(words[:0x3F])
    for pointer in range(0x03, 0x0F):  # ixgbe_calc_eeprom_checksum_generic: 0x0F (FW) is skipped
        ptr = words[pointer]
        if ptr not in (0, 0xFFFF) and ptr < 256:
            total += sum(words[ptr + 1:ptr + 1 + words[ptr]])
    assert (0xBABA - total) & 0xFFFF == words[0x3F]
    assert words[0x15] != 0xFAFA  # a legacy PBA number


def test_ctrl_rst_self_clears_and_restores_the_defaults(nic):
    nic.w(EIMS, LSC | 1)
    nic.w(RAL0 + 8, 0x1234)
    nic.w(TXDCTL, ENABLE)
    nic.w(RAL0, 0)
    nic.w(CTRL, RST)
    assert nic.r(CTRL) & RST == 0  # the driver polls 10 x 1 us, else "HW Init failed"
    assert (nic.r(EIMS), nic.r(RAL0 + 8), nic.r(TXDCTL)) == (0, 0, 0)
    assert nic.r(RAL0) == struct.unpack("<I", MAC[:4])[0]
    nic.w(CTRL, 1 << 2)
    assert nic.r(CTRL) == 1 << 2  # GIO_DIS reads back: 6.1 polls for it


def test_mdio_cycles_complete_at_once_and_find_no_phy(nic):
    for opcode in (0, 3):  # an address cycle, then a read, as ixgbe_read_phy_reg_mdi does
        nic.w(MSCA, 1 << 30 | opcode << 26 | 1 << 16 | 2)
        assert nic.r(MSCA) & (1 << 30) == 0
    assert nic.r(MSRWD) >> 16 == 0xFFFF  # no DEVPRST, not a valid PHY id


# ---------------------------------------------------------------- interrupt causes and masks

def test_cause_and_mask_registers(nic):
    nic.w(EICS, 0x10001)
    assert nic.r(EICS) == 0x10001 and nic.r(EICS) == 0x10001  # reading EICS clears nothing
    assert nic.r(EICR) == 0x10001 and nic.r(EICR) == 0          # reading EICR clears it
    nic.w(EICS, 0x3)
    nic.w(EICR, 0x1)                                            # write 1 to clear
    assert nic.r(EICS) == 0x2
    nic.w(EIMS, 0x5)
    nic.w(EIMS, 0x2)
    assert nic.r(EIMS) == 0x7
    nic.w(EIMC, 0x4)
    assert nic.r(EIMS) == 0x3 and nic.r(EIMC) == 0


def msix_as_the_driver_sets_it(nic: Nic):
    """ixgbe_configure_msix + ixgbe_setup_gpie for one queue vector (0) and the other causes (1)."""
    nic.enable_msix()
    nic.set_ivar(0, 0)    # RX queue 0
    nic.set_ivar(64, 0)   # TX queue 0
    nic.set_ivar(97, 1)   # other causes
    nic.w(GPIE, EIAME | 1 << 4)
    nic.w(EIAM, 0xFFFF)
    nic.w(EIAC, 0xFFFF | 1 << 30)


def test_msix_a_queue_cause_is_sent_on_its_vector_then_auto_cleared_and_auto_masked(nic):
    msix_as_the_driver_sets_it(nic)
    nic.w(EIMS, 1 | LSC)
    nic.w(EICS, 1)
    assert nic.messages() == [0]
    assert nic.r(EICS) & 1 == 0    # EIAC: cleared as the message went
    assert nic.r(EIMS) & 1 == 0    # GPIE.EIAME + EIAM: masked as the message went
    nic.w(EIMS, 1)
    assert nic.messages() == []    # nothing pending: unmasking sends nothing
    nic.w(EIMC, 1)
    nic.w(EICS, 1)
    assert nic.messages() == []    # masked: pending
    nic.w(EIMS, 1)
    assert nic.messages() == [0]   # the pending cause fires on unmask
    nic.w(EIAC, 0)
    nic.w(EIMS, 1)
    nic.w(EICS, 1)
    assert nic.messages() == [0] and nic.r(EICS) & 1  # no auto-clear: it stays in EICR


def test_lsc_from_set_link_goes_to_the_other_causes_vector(nic):
    msix_as_the_driver_sets_it(nic)
    nic.w(EIMS, LSC)
    nic.m.monitor.set_link("nic0", False)
    assert nic.r(LINKS) & LINKS_UP_10G == 0
    assert nic.r(EICS) & LSC and nic.messages() == [1]
    nic.w(EICR, LSC)
    nic.m.monitor.set_link("nic0", False)  # no change: no LSC
    assert nic.r(EICS) & LSC == 0 and nic.messages() == []
    nic.m.monitor.set_link("nic0", True)
    assert nic.r(LINKS) & LINKS_UP_10G == LINKS_UP_10G
    assert nic.r(EICS) & LSC and nic.messages() == [1]
    nic.w(EICR, LSC)
    nic.w(EIMC, LSC)                       # ixgbe_check_lsc masks it until the link update is done
    nic.m.monitor.set_link("nic0", False)
    assert nic.r(EICS) & LSC and nic.messages() == []
    nic.w(EIMS, LSC)
    assert nic.messages() == [1]           # raised while masked, fires on unmask


def test_msi_one_message_per_new_cause_and_eiam_on_an_eicr_read(nic_without_msix):
    nic = nic_without_msix
    assert 0x11 not in capabilities(nic)   # a board without MSI-X: the driver falls back to MSI
    nic.enable_msi()
    nic.set_ivar(0, 0)
    nic.w(EIAM, 0xFFFF)
    nic.w(EIMS, 1 | LSC)
    nic.w(EICS, 1)
    assert nic.messages() == [0]
    nic.w(EICS, 1)                         # already pending: nothing new
    assert nic.messages() == []
    assert nic.r(EICR) == 1 and nic.r(EIMS) & 1 == 0  # the read clears, and EIAM masks the queue cause
    nic.w(EICS, 1)
    assert nic.messages() == []
    nic.w(EIMS, 1)
    assert nic.messages() == [0]
    nic.m.monitor.set_link("nic0", False)
    assert nic.messages() == [0]


def test_intx_follows_causes_and_masks(nic):
    nic.m.command("irq_intercept_in ioapic")
    nic.w(EIMS, LSC)
    nic.m.monitor.set_link("nic0", False)
    raised = nic.m.pending_irqs()
    assert len(raised) == 1 and raised[0][0] == "raise", raised
    line = raised[0][1]
    assert nic.r(EICR) & LSC
    assert nic.m.pending_irqs() == [("lower", line)]
    nic.w(EIMC, LSC)
    nic.w(EICS, LSC)
    assert nic.m.pending_irqs() == []      # masked: the line stays low
    nic.w(EIMS, LSC)
    assert nic.m.pending_irqs() == [("raise", line)]
    nic.w(EIMC, LSC)
    assert nic.m.pending_irqs() == [("lower", line)]


# ---------------------------------------------------------------- TX

def frame(dest: bytes, length: int = 60, ethertype: int = 0x88B5, fill: int = 0) -> bytes:
    head = dest + MAC + struct.pack(">H", ethertype)
    return head + bytes((fill + i) & 0xFF for i in range(length - len(head)))


def tx_ring(nic: Nic, count: int = 8):
    nic.w(TDBAL, TX_RING)
    nic.w(TDBAH, 0)
    nic.w(TDLEN, count * 16)
    nic.w(TDH, 0)
    nic.w(TDT, 0)
    nic.w(TXDCTL, ENABLE | 1 << 16)


def tx_descriptor(nic: Nic, index: int, buffer: int, data: bytes, eop: bool = True):
    nic.m.write(buffer, data)
    cmd = len(data) | 0x3 << 20 | 1 << 29 | 1 << 25 | 1 << 27 | (1 << 24 if eop else 0)  # data, DEXT, IFCS, RS
    nic.m.write(TX_RING + 16 * index, struct.pack("<QII", buffer, cmd, len(data) << 14))


def test_tx_a_descriptor_is_sent_written_back_and_counted(nic):
    msix_as_the_driver_sets_it(nic)
    nic.w(EIMS, 1)
    tx_ring(nic)
    sent = frame(bytes.fromhex("020000000001"))
    tx_descriptor(nic, 0, TX_BUF, sent)
    nic.w(TDT, 1)
    assert nic.m.readl(TX_RING + 12) & 1    # DD
    assert nic.r(TDH) == 1                  # TDH == TDT: 3.14's hang check reads both
    assert nic.messages() == [0]            # the TX cause, routed by IVAR entry 64
    assert nic.sent_frames() == [sent]
    assert nic.r(GPTC) == 1 and nic.r(GPTC) == 0  # counted, and clear on read
    assert nic.r(GOTCH) == len(sent) + 4          # 82598: the octets in the high register, with the FCS


def test_tx_a_packet_is_taken_only_once_its_eop_is_before_tdt(nic):
    tx_ring(nic)
    first, second = frame(bytes.fromhex("020000000001"), 60, fill=1), frame(b"", 40, fill=2)[12:]
    tx_descriptor(nic, 0, TX_BUF, first, eop=False)
    tx_descriptor(nic, 1, TX_BUF + 0x800, second)
    nic.w(TDT, 1)                           # only the first half is the device's
    assert nic.r(TDH) == 0 and nic.m.readl(TX_RING + 12) & 1 == 0
    assert nic.sent_frames(wait=0.3) == []
    nic.w(TDT, 2)
    assert nic.r(TDH) == 2 and nic.m.readl(TX_RING + 16 + 12) & 1
    assert nic.sent_frames() == [first + second]


# ---------------------------------------------------------------- RX

def rx_ring(nic: Nic, count: int = 8):
    for i in range(count):
        nic.m.write(RX_RING + 16 * i, struct.pack("<QQ", RX_BUF + 0x800 * i, 0))
    nic.w(RDBAL, RX_RING)
    nic.w(RDBAH, 0)
    nic.w(RDLEN, count * 16)
    nic.w(RDH, 0)
    nic.w(SRRCTL0, 2 | 1 << 25)             # 2 KiB buffers, advanced one-buffer descriptors
    nic.w(RXDCTL, ENABLE)
    nic.w(FCTRL, 1 << 10)                   # BAM: broadcasts in
    nic.w(RXCTRL, 1)
    nic.w(RDT, count - 1)


def test_rx_a_frame_is_written_with_its_descriptor_and_counted(nic):
    msix_as_the_driver_sets_it(nic)
    nic.w(EIMS, 1)
    rx_ring(nic)
    got = frame(b"\xff" * 6, 100)
    nic.send_frame(got)
    nic.until(lambda: nic.r(RDH) == 1, "RDH advances")
    assert nic.m.read(RX_BUF, len(got)) == got
    lower, upper = struct.unpack("<QQ", nic.m.read(RX_RING, 16))
    # One stq writes status and length together (3.14 polls DD, 6.1 the length); qtest cannot see
    # store granularity, only that the whole upper qword is there and no buffer address is left.
    assert upper & 0x3 == 0x3 and (upper >> 32) & 0xFFFF == len(got)  # DD|EOP, length
    assert lower == 0
    assert nic.messages() == [0]            # the RX cause, routed by IVAR entry 0
    assert (nic.r(GPRC), nic.r(BPRC), nic.r(GORCH)) == (1, 1, len(got) + 4)


def test_rx_filters_take_our_unicast_and_drop_anothers(nic):
    rx_ring(nic)
    nic.send_frame(frame(bytes.fromhex("020000000099")))  # not ours, no promiscuous mode
    nic.send_frame(frame(MAC))                            # RAR0
    nic.until(lambda: nic.r(RDH) == 1, "our unicast arrives")
    time.sleep(0.2)
    assert nic.r(RDH) == 1 and nic.m.read(RX_BUF, 6) == MAC
    assert nic.r(GPRC) == 1


def test_rx_vlan_strip_puts_the_tag_in_the_descriptor(nic):
    rx_ring(nic)
    nic.w(VLNCTRL, nic.r(VLNCTRL) | 1 << 31)
    untagged = frame(b"\xff" * 6, 80)
    tagged = untagged[:12] + struct.pack(">HH", 0x8100, 0x0123) + untagged[12:]
    nic.send_frame(tagged)
    nic.until(lambda: nic.r(RDH) == 1, "the tagged frame arrives")
    assert nic.m.read(RX_BUF, len(untagged)) == untagged
    upper = struct.unpack("<Q", nic.m.read(RX_RING + 8, 8))[0]
    assert upper & (1 << 3) and upper >> 48 == 0x123 and (upper >> 32) & 0xFFFF == len(untagged)


# ---------------------------------------------------------------- migration

def save(nic: Nic, state):
    """Stop the machine and migrate it to the file `state`."""
    nic.m.monitor.command("stop")
    nic.m.monitor.command("migrate", uri=f"file:{state}")
    nic.until(lambda: nic.m.monitor.command("query-migrate").get("status") == "completed", "the migration")


@contextlib.contextmanager
def restored(tmp_path, state):
    """A new machine restored from `state` (paused, as it was saved)."""
    m, wire, port = machine(tmp_path, incoming=state)
    with wire, m:
        nic = Nic(m, wire, port)
        nic.until(lambda: m.monitor.command("query-status")["status"] != "inmigrate", "the restore")
        yield nic


def test_vmstate_round_trip_keeps_registers_and_the_link_state(tmp_path):
    state = tmp_path / "state.bin"
    m, wire, port = machine(tmp_path)
    with wire, m:
        nic = Nic(m, wire, port)
        nic.setup()
        nic.w(RAL0 + 8, 0xCAFE)
        nic.w(TDBAL, TX_RING)
        nic.set_ivar(97, 1)
        nic.w(EIMS, 1)
        m.monitor.set_link("nic0", False)   # LSC pending, masked
        save(nic, state)
    with restored(tmp_path, state) as nic:
        m = nic.m
        assert (nic.r(RAL0 + 8), nic.r(TDBAL), nic.r(EIMS)) == (0xCAFE, TX_RING, 1)
        assert nic.r(0x900 + 4 * 24) >> 8 & 0xFF == 0x81
        assert nic.r(EICS) & LSC and nic.r(LINKS) & LINKS_UP_10G == 0
        # A chip reset reads the cable afresh (LINKS from QEMU's link_down): still down only if
        # the restore gave the netdev the saved link state.
        nic.w(CTRL, RST)
        assert nic.r(LINKS) & LINKS_UP_10G == 0
        m.monitor.set_link("nic0", True)
        assert nic.r(LINKS) & LINKS_UP_10G == LINKS_UP_10G
