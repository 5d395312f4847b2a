"""More of the 82598 model (qemu-model/ixgbe.c) through qtest: what tests/test_ixgbe_model.py does
not reach.  Queue causes routed to vectors of their own (so a model that ignored IVAR would
fail), the q35 INTx line and CTRL.RST lowering it, MSI-X switched off with a cause pending, a
QMP system_reset, TX while the cable is out, across the ring's end and with the offloads both
kernels rely on (TSO, TCP/UDP/IP checksums, VLAN insertion), RX write-back over a stale upper
qword, frames over several buffers, a full ring that holds a frame until RDT moves, the
broadcast/multicast filters and VLAN without stripping, and the interrupt state across a
migration.  The machine, the UDP wire and the helpers are test_ixgbe_model.py's."""
import struct
import time

import pytest

from tests.test_ixgbe_model import (BAR3, BINARY, CTRL, EIAC, EICR, EICS, EIMS, ENABLE, FCTRL, GPTC, GPRC,
                                    LINKS, LINKS_UP_10G, LSC, MAC, RDH, RDT, RST, RX_BUF, RX_RING, RXCTRL, SRRCTL0,
                                    TDH, TDT, TX_BUF, TX_RING, VLNCTRL, Nic, frame, machine, nic, restored,  # noqa: F401
                                    rx_ring, save, tx_descriptor, tx_ring)
from harness.provision import qemu as qemu_build
from harness.config import default_cache

CACHE = default_cache()
pytestmark = pytest.mark.skipif(BINARY is None, reason=f"no QEMU with the model: {qemu_build.unavailable(CACHE)}")

TXDCTL, AUTOC, RAL0, RAL1 = 0x6028, 0x42A0, 0x5400, 0x5408
MCSTCTRL, MTA0, MPRC, BPRC, BPTC = 0x5090, 0x5200, 0x407C, 0x4078, 0x40F4
PTC64, PTC1023 = 0x40D8, 0x40E8
DEST = bytes.fromhex("020000000001")
# advanced TX descriptor command bits (dword 2)
DATA, CONTEXT = 0x3 << 20 | 1 << 29, 0x2 << 20 | 1 << 29
EOP, IFCS, RS, VLE, TSE = 1 << 24, 1 << 25, 1 << 27, 1 << 30, 1 << 31
IXSM, TXSM = 1 << 8, 1 << 9


def eicr_now(nic: Nic) -> int:
    return nic.r(EICS)  # EICR without clearing it


def wait_rdh(nic: Nic, value: int, what: str):
    nic.until(lambda: nic.r(RDH) == value, what)


def quiet(nic: Nic, check, seconds: float = 0.3) -> bool:
    """`check()` still holds after `seconds` (for frames that must not arrive)."""
    time.sleep(seconds)
    return check()


# ---------------------------------------------------------------- interrupt routing and lines

def test_queue_causes_follow_ivar_to_vectors_of_their_own(nic):
    """RX queue 0 -> vector 3, TX queue 0 -> vector 5, other causes -> vector 7: each event sets
    its vector's EICR bit and sends that vector's message, and nothing else."""
    nic.enable_msix(vectors=8)
    nic.set_ivar(0, 3)
    nic.set_ivar(64, 5)
    nic.set_ivar(97, 7)
    nic.w(EIAC, 0)  # no auto-clear: the cause bits stay visible
    nic.w(EIMS, 1 << 3 | 1 << 5 | LSC)
    rx_ring(nic)
    nic.send_frame(frame(MAC))
    wait_rdh(nic, 1, "the frame arrives")
    assert eicr_now(nic) == 1 << 3 and nic.messages() == [3]
    nic.w(EICR, ~0)
    tx_ring(nic)
    tx_descriptor(nic, 0, TX_BUF, frame(DEST))
    nic.w(TDT, 1)
    assert eicr_now(nic) == 1 << 5 and nic.messages() == [5]
    nic.w(EICR, ~0)
    nic.m.monitor.set_link("nic0", False)
    assert eicr_now(nic) == LSC and nic.messages() == [7]


def test_an_ivar_entry_without_its_valid_bit_raises_no_queue_cause(nic):
    nic.enable_msix(vectors=8)
    reg = 0x900  # entry 0 (RX queue 0): vector 3, valid bit clear
    nic.w(reg, 3)
    nic.w(EIMS, 0xFFFF)
    rx_ring(nic)
    nic.send_frame(frame(MAC))
    wait_rdh(nic, 1, "the frame arrives")
    assert eicr_now(nic) & 0xFFFF == 0 and nic.messages() == []


def intx_line(nic: Nic) -> int:
    """q35: slot s, INTA -> PIRQ (s % 4) + 4 -> IOAPIC input 20 + s % 4 (hw/isa/lpc_ich9.c)."""
    slot, pin = nic.devfn >> 3, nic.m.config_readl(nic.devfn, 0x3C) >> 8 & 0xFF
    assert pin == 1, f"interrupt pin {pin}, not INTA"
    return 16 + (slot + pin - 1) % 4 + 4


def test_intx_is_the_slots_ioapic_line_and_ctrl_rst_lowers_it(nic):
    line = intx_line(nic)
    nic.m.command("irq_intercept_in ioapic")
    nic.w(EIMS, 1)
    nic.w(EICS, 1)
    assert nic.m.pending_irqs() == [("raise", line)]
    nic.w(CTRL, RST)                       # the reset clears causes and masks, and the line
    assert nic.m.pending_irqs() == [("lower", line)]
    nic.w(EIMS, 1)
    nic.w(EICS, 1)
    assert nic.m.pending_irqs() == [("raise", line)]
    assert nic.r(EICR) == 1                # the ISR's read clears the cause: the line drops
    assert nic.m.pending_irqs() == [("lower", line)]


def test_no_intx_while_msix_is_on_and_a_pending_cause_moves_to_intx_when_it_goes_off(nic):
    line = intx_line(nic)
    nic.m.command("irq_intercept_in ioapic")
    nic.enable_msix()
    nic.w(EIAC, 0)
    nic.w(EIMS, 1)
    nic.w(EICS, 1)
    assert nic.messages() == [0] and nic.m.pending_irqs() == []
    nic.m.config_writew(nic.devfn, 0x62, 0)  # MSI-X off: the driver's fallback to INTx
    assert nic.m.pending_irqs() == [("raise", line)]


def test_system_reset_restores_the_defaults(nic):
    nic.w(RAL1, 0x1234)
    nic.w(AUTOC, 0)
    nic.w(RAL0, 0)
    nic.w(EIMS, 0xFFFF)
    nic.m.monitor.set_link("nic0", False)
    nic.m.monitor.command("system_reset")
    nic.until(lambda: nic.m.config_readl(nic.devfn, 0x10) & ~0xF == 0, "the BARs are reset")
    nic.setup()                            # the reset cleared the BARs and PCI_COMMAND
    assert (nic.r(RAL1), nic.r(AUTOC), nic.r(EIMS), nic.r(EICS)) == (0, 0x2000, 0, 0)
    assert nic.r(RAL0) == struct.unpack("<I", MAC[:4])[0]
    assert nic.r(LINKS) & LINKS_UP_10G == 0  # the cable is still out


# ---------------------------------------------------------------- TX

def test_tx_with_the_link_down_consumes_and_drops(nic):
    """ixgbe_watchdog_flush_tx resets the chip if a ring does not drain with the carrier off."""
    tx_ring(nic)
    nic.m.monitor.set_link("nic0", False)
    tx_descriptor(nic, 0, TX_BUF, frame(DEST))
    nic.w(TDT, 1)
    assert nic.r(TDH) == 1 and nic.m.readl(TX_RING + 12) & 1
    assert nic.sent_frames(wait=0.3) == [] and nic.r(GPTC) == 0
    nic.m.monitor.set_link("nic0", True)
    sent = frame(DEST, fill=7)
    tx_descriptor(nic, 1, TX_BUF + 0x800, sent)
    nic.w(TDT, 2)
    assert nic.sent_frames() == [sent]


def test_tx_a_packet_across_the_end_of_the_ring(nic):
    tx_ring(nic)
    nic.w(TXDCTL, 0)
    nic.w(TDH, 7)
    nic.w(TDT, 7)
    nic.w(TXDCTL, ENABLE)
    head, tail = frame(DEST, 40), bytes(range(100, 130))
    tx_descriptor(nic, 7, TX_BUF, head, eop=False)
    tx_descriptor(nic, 0, TX_BUF + 0x800, tail)
    nic.w(TDT, 1)
    assert nic.r(TDH) == 1
    assert nic.sent_frames() == [head + tail]


def ones_complement(data: bytes) -> int:
    data += b"\0" * (len(data) & 1)
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum_ok(data: bytes) -> bool:
    return ones_complement(data) == 0xFFFF


def ipv4(proto: int, body_len: int, total_len: int | None = None) -> bytes:
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, body_len + 20 if total_len is None else total_len, 0x1234, 0x4000,
                       64, proto, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))


def context(nic: Nic, index: int, vlan: int, maclen: int, iplen: int, tucmd: int, l4len: int = 0, mss: int = 0):
    nic.m.write(TX_RING + 16 * index, struct.pack("<IIII", vlan << 16 | maclen << 9 | iplen, 0, CONTEXT | tucmd,
                                                  mss << 16 | l4len << 8))


def test_tx_tso_segments_with_vlan_and_fixed_checksums(nic):
    """ixgbe_tso: IPv4 total length and header checksum zeroed, the TCP checksum a length-less
    pseudo-header sum; the chip cuts MSS-sized segments, fixes lengths, IP ids, sequence numbers
    and every checksum, and inserts the VLAN tag of the context (VLE)."""
    tx_ring(nic)
    payload = bytes(i * 7 & 0xFF for i in range(2500))
    pseudo = ones_complement(bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 6]))
    tcp = struct.pack(">HHIIBBHHH", 1111, 2222, 5000, 1, 5 << 4, 0x10, 65535, pseudo, 0)
    packet = DEST + MAC + b"\x08\x00" + ipv4(6, 0, total_len=0) + tcp + payload
    nic.m.write(TX_BUF, packet)
    context(nic, 0, vlan=0x2064, maclen=14, iplen=20, tucmd=1 << 10 | 1 << 11, l4len=20, mss=1000)  # IPV4, TCP
    nic.m.write(TX_RING + 16, struct.pack("<QII", TX_BUF, DATA | EOP | IFCS | RS | TSE | VLE | len(packet),
                                          len(payload) << 14 | IXSM | TXSM))
    nic.w(TDT, 2)
    assert nic.r(TDH) == 2 and nic.m.readl(TX_RING + 16 + 12) & 1
    segments = nic.sent_frames()
    assert [len(s) for s in segments] == [4 + 54 + 1000, 4 + 54 + 1000, 4 + 54 + 500]
    assert nic.r(GPTC) == 3                 # counted per frame on the wire
    for i, seg in enumerate(segments):
        assert seg[12:16] == struct.pack(">HH", 0x8100, 0x2064), "the context's VLAN tag"
        eth = seg[:12] + seg[16:]
        ip, l4 = eth[14:34], eth[34:]
        assert struct.unpack(">H", ip[2:4])[0] == 20 + len(l4) and checksum_ok(ip)
        assert struct.unpack(">I", l4[4:8])[0] == 5000 + 1000 * i
        assert checksum_ok(ip[12:20] + bytes([0, 6]) + struct.pack(">H", len(l4)) + l4)
        assert l4[20:] == payload[1000 * i:1000 * (i + 1)]


def test_tx_tso_keeps_fin_and_psh_on_the_last_segment_only(nic):
    """tcp_send_fin merges the FIN into the last unsent skb, which may be a TSO one: the chip
    clears FIN and PSH in all segments but the last, which keeps them."""
    tx_ring(nic)
    payload = bytes(2500)
    pseudo = ones_complement(bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 6]))
    tcp = struct.pack(">HHIIBBHHH", 1111, 2222, 5000, 1, 5 << 4, 0x19, 65535, pseudo, 0)  # FIN|PSH|ACK
    packet = DEST + MAC + b"\x08\x00" + ipv4(6, 0, total_len=0) + tcp + payload
    nic.m.write(TX_BUF, packet)
    context(nic, 0, vlan=0, maclen=14, iplen=20, tucmd=1 << 10 | 1 << 11, l4len=20, mss=1000)
    nic.m.write(TX_RING + 16, struct.pack("<QII", TX_BUF, DATA | EOP | IFCS | RS | TSE | len(packet),
                                          len(payload) << 14 | IXSM | TXSM))
    nic.w(TDT, 2)
    segments = nic.sent_frames()
    assert [seg[14 + 20 + 13] for seg in segments] == [0x10, 0x10, 0x19]
    for seg in segments:  # the flags changed after the checksum was made: it must still hold
        ip, l4 = seg[14:34], seg[34:]
        assert checksum_ok(ip[12:20] + bytes([0, 6]) + struct.pack(">H", len(l4)) + l4)


def test_tx_udp_and_ip_checksum_offload(nic):
    tx_ring(nic)
    body = b"checksum me" * 5
    udp = struct.pack(">HHHH", 53, 5353, 8 + len(body), 0)
    pseudo = ones_complement(bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 17]) + struct.pack(">H", 8 + len(body)))
    udp = udp[:6] + struct.pack(">H", pseudo)  # as Linux leaves it for CHECKSUM_PARTIAL
    packet = DEST + MAC + b"\x08\x00" + ipv4(17, 8 + len(body)) + udp + body
    nic.m.write(TX_BUF, packet)
    context(nic, 0, vlan=0, maclen=14, iplen=20, tucmd=1 << 10)  # IPV4, L4T UDP (0)
    nic.m.write(TX_RING + 16, struct.pack("<QII", TX_BUF, DATA | EOP | IFCS | RS | len(packet),
                                          len(packet) << 14 | IXSM | TXSM))
    nic.w(TDT, 2)
    (sent,) = nic.sent_frames()
    ip, l4 = sent[14:34], sent[34:]
    assert checksum_ok(ip) and struct.unpack(">H", ip[10:12])[0] != 0
    assert checksum_ok(ip[12:20] + bytes([0, 17]) + struct.pack(">H", len(l4)) + l4)
    assert l4[8:] == body


def test_tx_broadcast_and_size_statistics(nic):
    tx_ring(nic)
    tx_descriptor(nic, 0, TX_BUF, frame(b"\xff" * 6, 60))
    tx_descriptor(nic, 1, TX_BUF + 0x800, frame(DEST, 1000))
    nic.w(TDT, 2)
    assert len(nic.sent_frames()) == 2
    assert (nic.r(BPTC), nic.r(PTC64), nic.r(PTC1023)) == (1, 1, 1)  # 64 and 1004 octets with the FCS
    nic.w(GPTC, 5)                                                   # statistics are read-only
    assert nic.r(GPTC) == 2 and nic.r(GPTC) == 0


# ---------------------------------------------------------------- RX

def test_rx_write_back_replaces_the_whole_stale_upper_qword(nic):
    """The driver leaves stale bytes in the upper qword (hdr_addr) of a read descriptor.  After
    write-back it must be exactly status|length|vlan: no stale error bits (31:20 make the driver
    drop the frame), no stale VLAN tag.  (qtest cannot see whether it was one 8-byte store.)"""
    rx_ring(nic)
    stale = 0xFFFFFFFF_FFFFFFFF
    nic.m.write(RX_RING + 8, struct.pack("<Q", stale))
    got = frame(MAC, 64)
    nic.send_frame(got)
    wait_rdh(nic, 1, "the frame arrives")
    lower, upper = struct.unpack("<QQ", nic.m.read(RX_RING, 16))
    assert upper == len(got) << 32 | 0x3, f"upper qword {upper:#018x}"  # DD|EOP, the length, tag 0
    assert lower == 0


def test_rx_a_frame_larger_than_a_buffer_spans_descriptors(nic):
    rx_ring(nic)
    nic.w(SRRCTL0, 1 | 1 << 25)                 # 1 KiB buffers
    got = frame(MAC, 1500, fill=3)
    nic.send_frame(got)
    wait_rdh(nic, 2, "two descriptors used")
    first, second = (struct.unpack("<QQ", nic.m.read(RX_RING + 16 * i, 16))[1] for i in range(2))
    assert first == 1024 << 32 | 0x1             # DD, not EOP
    assert second == (len(got) - 1024) << 32 | 0x3
    assert nic.m.read(RX_BUF, 1024) + nic.m.read(RX_BUF + 0x800, len(got) - 1024) == got
    assert nic.r(GPRC) == 1


def test_rx_a_full_ring_holds_the_frame_until_rdt_moves(nic):
    rx_ring(nic)
    nic.w(RDT, 0)                               # RDH == RDT: no descriptor is the device's
    got = frame(MAC, 60, fill=9)
    nic.send_frame(got)
    assert quiet(nic, lambda: nic.r(RDH) == 0)
    nic.w(RDT, 4)
    wait_rdh(nic, 1, "the held frame arrives once RDT moves")
    assert nic.m.read(RX_BUF, len(got)) == got


def test_rx_with_the_receiver_off_drops_the_frame(nic):
    """A disabled receiver drops frames (the chip has nowhere to put them); none is replayed later."""
    rx_ring(nic)
    nic.w(RXCTRL, 0)
    nic.send_frame(frame(MAC, 60, fill=1))
    time.sleep(0.3)
    nic.w(RXCTRL, 1)
    later = frame(MAC, 60, fill=2)
    nic.send_frame(later)
    wait_rdh(nic, 1, "the second frame arrives")
    assert quiet(nic, lambda: nic.r(RDH) == 1) and nic.m.read(RX_BUF, 60) == later


def test_rx_broadcast_needs_bam_and_multicast_an_mta_bit(nic):
    rx_ring(nic)
    nic.w(FCTRL, 0)
    group, other = bytes.fromhex("01005e0000fb"), bytes.fromhex("01005e000001")
    vector = (group[4] >> 4 | group[5] << 4) & 0xFFF   # MO = 0: ixgbe_mta_vector
    nic.send_frame(frame(b"\xff" * 6, fill=1))          # no BAM
    nic.send_frame(frame(group, fill=2))                # MFE off
    nic.send_frame(frame(MAC, fill=3))
    wait_rdh(nic, 1, "our unicast arrives")
    assert quiet(nic, lambda: nic.r(RDH) == 1) and nic.m.read(RX_BUF + 14, 1) == b"\x03"
    nic.w(MCSTCTRL, 1 << 2)                             # MFE, MO 0
    nic.w(MTA0 + 4 * (vector >> 5), 1 << (vector & 31))
    nic.w(FCTRL, 1 << 10)
    nic.send_frame(frame(other, fill=4))                # no MTA bit
    nic.send_frame(frame(group, fill=5))
    nic.send_frame(frame(b"\xff" * 6, fill=6))
    wait_rdh(nic, 3, "the group's frame and the broadcast arrive")
    assert quiet(nic, lambda: nic.r(RDH) == 3)
    assert [nic.m.read(RX_BUF + 0x800 * i + 14, 1) for i in (1, 2)] == [b"\x05", b"\x06"]
    assert (nic.r(MPRC), nic.r(BPRC), nic.r(GPRC)) == (1, 1, 3)


def test_rx_vlan_frames_keep_their_tag_without_vme(nic):
    rx_ring(nic)
    assert nic.r(VLNCTRL) >> 31 == 0
    untagged = frame(MAC, 80)
    tagged = untagged[:12] + struct.pack(">HH", 0x8100, 0x0123) + untagged[12:]
    nic.send_frame(tagged)
    wait_rdh(nic, 1, "the tagged frame arrives")
    assert nic.m.read(RX_BUF, len(tagged)) == tagged
    upper = struct.unpack("<Q", nic.m.read(RX_RING + 8, 8))[0]
    assert upper == len(tagged) << 32 | 0x3     # no VP, no tag


# ---------------------------------------------------------------- migration

def test_vmstate_keeps_msix_and_the_pending_causes(tmp_path):
    """Saved: MSI-X on, IVAR 97 -> vector 2, an LSC pending under a masked EIMS.LSC, and a
    message pending in the PBA behind a masked vector 1.  Restored: both fire when unmasked, each
    on its own vector, at the addresses the saved table held."""
    state = tmp_path / "state.bin"
    m, wire, port = machine(tmp_path)
    with wire, m:
        nic = Nic(m, wire, port)
        nic.setup()
        nic.enable_msix(vectors=3)
        nic.set_ivar(0, 1)
        nic.set_ivar(97, 2)
        nic.w(EIAC, 0xFFFF)
        nic.w(EIMS, 1 << 1)
        m.writel(BAR3 + 16 * 1 + 12, 1)          # vector 1 masked in the table
        nic.w(EICS, 1 << 1)                      # sent into the PBA
        assert m.readl(BAR3 + 0x2000) == 1 << 1 and nic.messages() == []
        m.monitor.set_link("nic0", False)        # LSC pending, EIMS.LSC clear
        assert nic.messages() == []
        save(nic, state)
    with restored(tmp_path, state) as nic:
        m = nic.m
        assert m.monitor.command("query-status")["status"] == "paused"  # as it was saved
        m.monitor.command("cont")
        assert m.config_readw(nic.devfn, 0x62) & 1 << 15 and m.readl(BAR3 + 0x2000) == 1 << 1
        assert nic.r(EICS) == LSC and nic.r(LINKS) & LINKS_UP_10G == 0
        nic.clear_messages()
        m.writel(BAR3 + 16 * 1 + 12, 0)          # unmask vector 1: the pending message goes
        assert nic.messages() == [1]
        nic.w(EIMS, LSC)                         # unmask LSC: the other-causes vector
        assert nic.messages() == [2]
        nic.w(EICR, LSC)
        m.monitor.set_link("nic0", False)        # already down: nothing new
        assert nic.r(EICS) == 0 and nic.messages() == []
