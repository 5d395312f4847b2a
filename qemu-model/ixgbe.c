/*
 * Intel 82598AF 10 Gigabit Ethernet controller (8086:10C7, single port,
 * XF SR optics), modelled as far as the Linux ixgbe driver of 3.14 to 6.12
 * uses it.  Written for the netlink testbed; built into its own QEMU 10.0.2.
 *
 * The 82598AF has no PHY the driver can see: link state is LINKS and nothing
 * else, and a change of it raises the LSC interrupt.  That is the path this
 * model exists for: QMP set_link -> LINKS + EICR.LSC -> ixgbe_msix_other /
 * ixgbe_intr -> ixgbe_service_task -> netif_carrier_on/off.
 *
 * Implemented: the EEPROM (EERD) with a valid checksum, MAC in RAL0/RAH0,
 * software reset (CTRL.RST, synchronous), an MDIO bus with no PHY on it, the
 * interrupt engine (EICR/EICS/EIMS/EIMC/EIAC/EIAM, IVAR routing) over MSI-X,
 * MSI and INTx, TX with advanced descriptors (TSO, IP/L4 checksums, VLAN
 * insertion, done through net_tx_pkt), RX on queue 0 with advanced one-buffer
 * descriptors (unicast/multicast/broadcast filters, VLAN strip, frames over
 * several buffers), clear-on-read statistics, and migration.
 * Not implemented: RSS (every frame goes to queue 0), interrupt throttling
 * (EITR is stored only), flow control frames, DCB, the VLAN filter table,
 * RX checksum validation (IPCS/L4CS stay clear, so the stack checks), header
 * split, loopback, Wake-on-LAN, the flash BAR.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "qemu/iov.h"
#include "qemu/range.h"
#include "net/net.h"
#include "net/eth.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/pcie.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "qapi/error.h"
#include "qom/object.h"
#include "system/system.h"
#include "net_tx_pkt.h"

#define TYPE_IXGBE "ixgbe"
OBJECT_DECLARE_SIMPLE_TYPE(IxgbeState, IXGBE)

#define IXGBE_DEVICE_ID     0x10C7      /* 82598AF single port */
#define MMIO_SIZE           (128 * KiB)
#define MSIX_BAR_SIZE       (16 * KiB)
#define MSIX_BAR            3
#define MSIX_PBA_OFFSET     0x2000
#define MSIX_VECTORS        20          /* the datasheet's table size 0x013, + 1 */
#define REG_COUNT           (MMIO_SIZE / 4)
#define TX_QUEUES           32
#define RX_QUEUES           64
#define TX_CONTEXTS         2           /* per queue, chosen by the IDX field */
#define MAX_TX_FRAGS        64
#define EEPROM_WORDS        256
#define DESC_SIZE           16

/* Fixed PCI config offsets: the driver reads the MSI-X table size at 0x62 */
#define PM_CAP_OFFSET       0x40
#define MSI_CAP_OFFSET      0x50
#define MSIX_CAP_OFFSET     0x60
#define PCIE_CAP_OFFSET     0xA0

/* Registers (byte offsets in BAR0) */
#define CTRL        0x00000
#define STATUS      0x00008
#define EICR        0x00800
#define EICS        0x00808
#define EIAC        0x00810
#define EIMS        0x00880
#define EIMC        0x00888
#define EIAM        0x00890
#define GPIE        0x00898
#define IVAR0       0x00900     /* 25 registers, 4 one-byte entries each */
#define RXQ_BASE    0x01000     /* 0x40 per RX queue, 64 queues */
#define SRRCTL0     0x02100     /* queues 0..15; 16.. are inside their block */
#define RXCTRL      0x03000
#define RXPBSIZE0   0x03C00
#define HLREG0      0x04240
#define MSCA        0x0425C
#define MSRWD       0x04260
#define AUTOC       0x042A0
#define LINKS       0x042A4
#define FCTRL       0x05080
#define VLNCTRL     0x05088
#define MCSTCTRL    0x05090
#define MTA0        0x05200
#define RAL0        0x05400
#define RAH0        0x05404
#define TXQ_BASE    0x06000     /* 0x40 per TX queue, 32 queues */
#define TXPBSIZE0   0x0CC00
#define EEC         0x10010
#define EERD        0x10014
#define FWSM        0x10148

/* Offsets inside a queue's 0x40-byte block */
#define Q_BAL       0x00
#define Q_BAH       0x04
#define Q_LEN       0x08
#define Q_H         0x10
#define Q_T         0x18
#define Q_DCTL      0x28
#define QUEUE_BLOCK 0x40

/* Statistics, counted as the wire sees frames: with their 4-byte FCS */
#define MPRC        0x0407C
#define GPRC        0x04074
#define BPRC        0x04078
#define GORCH       0x0408C     /* 82598: a 32-bit count in the high half */
#define GPTC        0x04080
#define GOTCH       0x04094
#define TORH        0x040C4
#define TPR         0x040D0
#define TPT         0x040D4
#define PRC64       0x0405C     /* PRC64..PRC1522: six size bins */
#define PTC64       0x040D8     /* PTC64..PTC1522 */
#define MPTC        0x040F0
#define BPTC        0x040F4
#define QPRC0       0x01030     /* + 0x40 per queue, queues 0..15 */
#define QBRC0       0x01034
#define QPTC0       0x06030
#define QBTC0       0x06034
#define QSTAT_QUEUES 16
#define FCS_LEN     4

/* Bits */
#define CTRL_LNK_RST        BIT(3)
#define CTRL_RST            BIT(26)
#define EICR_RTX_QUEUE      0x0000FFFFu
#define EICR_LSC            BIT(20)
#define EICR_OTHER_CAUSES   0xFFFF0000u
#define GPIE_EIAME          BIT(30)
#define IVAR_VALID          0x80
#define IVAR_OTHER_ENTRY    97
#define IVAR_TX_ENTRY(q)    (64 + (q))
#define RXCTRL_RXEN         BIT(0)
#define DCTL_ENABLE         BIT(25)
#define DCTL_SWFLSH         BIT(26)
#define SRRCTL_BSIZEPKT     0x7Fu       /* in KiB */
#define AUTOC_AN_RESTART    BIT(12)
#define AUTOC_LMS_10G_NO_AN (1u << 13)
#define LINKS_UP            BIT(30)
#define LINKS_SPEED_10G     BIT(29)
#define MSCA_MDI_COMMAND    BIT(30)
#define EERD_START          BIT(0)
#define EERD_DONE           BIT(1)
#define EERD_ADDR_SHIFT     2
#define EERD_DATA_SHIFT     16
#define EEC_PRES            BIT(8)
#define EEC_ARD             BIT(9)
#define EEC_SIZE_256_WORDS  (2u << 11)  /* word_size = 1 << (SIZE + 6) */
#define FWSM_FW_VAL         BIT(15)
#define FCTRL_MPE           BIT(8)
#define FCTRL_UPE           BIT(9)
#define FCTRL_BAM           BIT(10)
#define VLNCTRL_VET         0xFFFFu
#define VLNCTRL_VME         BIT(31)
#define MCSTCTRL_MO         0x3u
#define MCSTCTRL_MFE        BIT(2)
#define RAH_AV              BIT(31)
#define HLREG0_TXCRCEN      BIT(0)
#define HLREG0_RXCRCSTRP    BIT(1)

/* Advanced TX descriptors (dword 2 and 3 of the 16 bytes) */
#define TXD_DTYP(d2)        (((d2) >> 20) & 0xF)
#define TXD_DTYP_CTXT       0x2
#define TXD_LEN             0xFFFFu
#define TXD_CMD_EOP         BIT(24)
#define TXD_CMD_RS          BIT(27)
#define TXD_CMD_DEXT        BIT(29)
#define TXD_CMD_VLE         BIT(30)
#define TXD_CMD_TSE         BIT(31)
#define TXD_STAT_DD         BIT(0)
#define TXD_POPTS_IXSM      BIT(8)
#define TXD_POPTS_TXSM      BIT(9)
#define TXD_PAYLEN_SHIFT    14
#define TCP_FLAG_FIN        0x01
#define TCP_FLAG_PSH        0x08
#define TXD_IDX(d3)         (((d3) >> 4) & (TX_CONTEXTS - 1))
#define TXCTX_L4T_SCTP      BIT(12)
#define TXCTX_MSS(d3)       ((d3) >> 16)
#define TXCTX_VLAN(d0)      ((d0) >> 16)

/* Advanced RX write-back (status_error in the upper qword's low half) */
#define RXD_STAT_DD         BIT(0)
#define RXD_STAT_EOP        BIT(1)
#define RXD_STAT_VP         BIT(3)

/* The 82598 EEPROM: words summed 0x00..0x3E, checked against word 0x3F */
#define EEPROM_CHECKSUM_WORD 0x3F
#define EEPROM_SUM          0xBABA
#define EEPROM_PBA0         0x15        /* "082598-000": not 0xFAFA, so legacy digits */
#define EEPROM_PBA1         0x16
#define EEPROM_DEVICE_CAPS  0x2C
#define EEPROM_ETRACK_LO    0x2D
#define EEPROM_ETRACK_HI    0x2E

struct IxgbeState {
    PCIDevice parent_obj;

    NICState *nic;
    NICConf conf;
    MemoryRegion mmio;
    MemoryRegion msix;
    struct NetTxPkt *tx_pkt;

    uint32_t regs[REG_COUNT];
    uint16_t eeprom[EEPROM_WORDS];
    /* the last context descriptor per queue and index: dwords 0..3 */
    uint32_t tx_ctx[TX_QUEUES * TX_CONTEXTS * 4];
    /* EICR & EIMS as of the last interrupt evaluation: a message is sent
     * for the causes that became active since (an edge, as the chip does) */
    uint32_t irq_seen;
    bool msix_capable;      /* property "msix": off models a board without MSI-X */
};

#define R(s, addr)  ((s)->regs[(addr) >> 2])

static uint32_t rxq_reg(int q, int off)
{
    return RXQ_BASE + QUEUE_BLOCK * q + off;
}

static uint32_t txq_reg(int q, int off)
{
    return TXQ_BASE + QUEUE_BLOCK * q + off;
}

static uint32_t srrctl_reg(int q)
{
    return q < 16 ? SRRCTL0 + 4 * q : RXQ_BASE + QUEUE_BLOCK * q + 0x14;
}

static bool is_statistic(hwaddr addr)
{
    if ((addr >= 0x03F00 && addr < 0x04000) || (addr >= 0x04000 && addr < 0x04100) ||
        (addr >= 0x0CF00 && addr < 0x0CFA0)) {
        return true;
    }
    if (addr >= RXQ_BASE && addr < RXQ_BASE + QUEUE_BLOCK * QSTAT_QUEUES) {
        return (addr & 0x3F) == 0x30 || (addr & 0x3F) == 0x34;
    }
    if (addr >= TXQ_BASE && addr < TXQ_BASE + QUEUE_BLOCK * QSTAT_QUEUES) {
        return (addr & 0x3F) == 0x30 || (addr & 0x3F) == 0x34;
    }
    return false;
}

static void count(IxgbeState *s, hwaddr reg, uint32_t n)
{
    uint32_t *r = &R(s, reg);
    *r = *r + n < *r ? UINT32_MAX : *r + n;     /* counters saturate */
}

static int size_bin(size_t wire_len)
{
    static const size_t top[] = { 64, 127, 255, 511, 1023 };
    int i;

    for (i = 0; i < ARRAY_SIZE(top) && wire_len > top[i]; i++) {
    }
    return i;                                   /* 5: 1024 and more */
}

static bool txd_is_context(uint32_t d2)
{
    return (d2 & TXD_CMD_DEXT) && TXD_DTYP(d2) == TXD_DTYP_CTXT;
}

static bool txd_is_eop(uint32_t d2)
{
    return !txd_is_context(d2) && (d2 & TXD_CMD_EOP);
}

/* ---------------------------------------------------------------- EEPROM */

static void eeprom_build(IxgbeState *s)
{
    const uint8_t *mac = s->conf.macaddr.a;
    uint16_t sum = 0;
    int i;

    for (i = 0; i < EEPROM_WORDS; i++) {
        s->eeprom[i] = 0xFFFF;      /* no sections: every pointer word is absent */
    }
    for (i = 0; i < 3; i++) {
        s->eeprom[i] = mac[2 * i] | mac[2 * i + 1] << 8;
    }
    s->eeprom[EEPROM_PBA0] = 0x0825;
    s->eeprom[EEPROM_PBA1] = 0x9800;
    s->eeprom[EEPROM_DEVICE_CAPS] = 0;
    s->eeprom[EEPROM_ETRACK_LO] = 0x0001;
    s->eeprom[EEPROM_ETRACK_HI] = 0x0000;
    for (i = 0; i < EEPROM_CHECKSUM_WORD; i++) {
        sum += s->eeprom[i];
    }
    s->eeprom[EEPROM_CHECKSUM_WORD] = EEPROM_SUM - sum;
}

/* ------------------------------------------------------------ interrupts */

static uint8_t ivar_entry(IxgbeState *s, int n)
{
    return R(s, IVAR0 + 4 * (n / 4)) >> (8 * (n % 4));
}

/* The EICR queue bit an RX (entry q) or TX (64 + q) queue event sets */
static uint32_t queue_cause(IxgbeState *s, int entry)
{
    uint8_t e = ivar_entry(s, entry);

    return (e & IVAR_VALID) && (e & 0x1F) < 16 ? BIT(e & 0x1F) : 0;
}

/* The EICR bits MSI-X vector v signals */
static uint32_t vector_causes(IxgbeState *s, int v)
{
    uint8_t other = ivar_entry(s, IVAR_OTHER_ENTRY);
    uint32_t causes = v < 16 ? BIT(v) : 0;

    if ((other & IVAR_VALID) && (other & 0x1F) == v) {    /* unrouted: no vector, as for queues */
        causes |= EICR_OTHER_CAUSES;
    }
    return causes;
}

static void update_irq(IxgbeState *s)
{
    PCIDevice *d = PCI_DEVICE(s);
    uint32_t active = R(s, EICR) & R(s, EIMS);

    if (msix_enabled(d)) {
        uint32_t fresh = active & ~s->irq_seen;
        int v;

        pci_irq_deassert(d);
        for (v = 0; fresh && v < MSIX_VECTORS; v++) {
            uint32_t causes = vector_causes(s, v);
            uint32_t sent = R(s, EICR) & R(s, EIMS) & causes;

            if (!(fresh & causes)) {
                continue;
            }
            msix_notify(d, v);
            R(s, EICR) &= ~(sent & R(s, EIAC));
            if (R(s, GPIE) & GPIE_EIAME) {
                R(s, EIMS) &= ~(sent & R(s, EIAM));
            }
            fresh &= ~causes;
        }
        s->irq_seen = R(s, EICR) & R(s, EIMS);
    } else if (msi_enabled(d)) {
        pci_irq_deassert(d);
        if (active & ~s->irq_seen) {
            msi_notify(d, 0);
        }
        s->irq_seen = active;
    } else {
        pci_set_irq(d, active != 0);
        s->irq_seen = active;
    }
}

static void raise_cause(IxgbeState *s, uint32_t causes)
{
    R(s, EICR) |= causes;
    update_irq(s);
}

/* ------------------------------------------------------------------ link */

static uint32_t links_value(IxgbeState *s)
{
    return qemu_get_queue(s->nic)->link_down ? 0 : LINKS_UP | LINKS_SPEED_10G;
}

static void set_link_status(NetClientState *nc)
{
    IxgbeState *s = qemu_get_nic_opaque(nc);
    uint32_t old = R(s, LINKS);

    R(s, LINKS) = links_value(s);
    if (R(s, LINKS) != old) {
        raise_cause(s, EICR_LSC);
    }
    if (!nc->link_down) {
        qemu_flush_queued_packets(nc);
    }
}

/* ----------------------------------------------------------------- reset */

static void reset_registers(IxgbeState *s)
{
    const uint8_t *mac = s->conf.macaddr.a;
    int i;

    memset(s->regs, 0, sizeof(s->regs));
    memset(s->tx_ctx, 0, sizeof(s->tx_ctx));
    s->irq_seen = 0;
    R(s, EEC) = EEC_PRES | EEC_ARD | EEC_SIZE_256_WORDS;
    R(s, FWSM) = FWSM_FW_VAL;
    R(s, AUTOC) = AUTOC_LMS_10G_NO_AN;
    R(s, HLREG0) = HLREG0_TXCRCEN | HLREG0_RXCRCSTRP;
    R(s, VLNCTRL) = ETH_P_VLAN;
    for (i = 0; i < 8; i++) {
        R(s, RXPBSIZE0 + 4 * i) = 0x10000;  /* 64 KiB each */
        R(s, TXPBSIZE0 + 4 * i) = 0xA000;   /* 40 KiB each */
    }
    R(s, RAL0) = mac[0] | mac[1] << 8 | mac[2] << 16 | (uint32_t)mac[3] << 24;
    R(s, RAH0) = mac[4] | mac[5] << 8 | RAH_AV;
    R(s, LINKS) = links_value(s);
    pci_irq_deassert(PCI_DEVICE(s));
}

static void ixgbe_reset_hold(Object *obj, ResetType type)
{
    reset_registers(IXGBE(obj));
}

/* ------------------------------------------------------------------- TX */

static uint32_t *tx_context(IxgbeState *s, int q, int idx)
{
    return &s->tx_ctx[(q * TX_CONTEXTS + idx) * 4];
}

static void count_tx(IxgbeState *s, int q, const struct iovec *iov, int iov_cnt)
{
    size_t wire = iov_size(iov, iov_cnt) + FCS_LEN;
    uint8_t dest[ETH_ALEN] = { 0 };

    iov_to_buf(iov, iov_cnt, 0, dest, sizeof(dest));
    count(s, GPTC, 1);
    count(s, TPT, 1);
    count(s, GOTCH, wire);
    count(s, PTC64 + 4 * size_bin(wire), 1);
    if (is_broadcast_ether_addr(dest)) {
        count(s, BPTC, 1);
    } else if (is_multicast_ether_addr(dest)) {
        count(s, MPTC, 1);
    }
    if (q < QSTAT_QUEUES) {
        count(s, QPTC0 + QUEUE_BLOCK * q, 1);
        count(s, QBTC0 + QUEUE_BLOCK * q, wire);
    }
}

/* The offloads the first data descriptor asks for, done by net_tx_pkt */
static bool tx_offloads(IxgbeState *s, const uint32_t *ctx, uint32_t cmd, uint32_t olinfo)
{
    if (cmd & TXD_CMD_VLE) {
        net_tx_pkt_setup_vlan_header_ex(s->tx_pkt, TXCTX_VLAN(ctx[0]),
                                        R(s, VLNCTRL) & VLNCTRL_VET);
    }
    if (cmd & TXD_CMD_TSE) {
        if (!net_tx_pkt_build_vheader(s->tx_pkt, true, true, TXCTX_MSS(ctx[3]))) {
            return false;
        }
        net_tx_pkt_update_ip_checksums(s->tx_pkt);
        return true;
    }
    if (olinfo & TXD_POPTS_TXSM) {
        bool ok = ctx[2] & TXCTX_L4T_SCTP ?
            net_tx_pkt_update_sctp_checksum(s->tx_pkt) :
            net_tx_pkt_build_vheader(s->tx_pkt, false, true, 0);
        if (!ok) {
            return false;
        }
    }
    if (olinfo & TXD_POPTS_IXSM) {
        net_tx_pkt_update_ip_hdr_checksum(s->tx_pkt);
    }
    return true;
}

typedef struct TxQueueRef {
    IxgbeState *s;
    int q;
    uint8_t fin_psh;        /* TSO: the TCP flags only the last segment keeps */
    size_t payload_left;    /* TSO: payload bytes not yet sent in a segment */
} TxQueueRef;

/* The one's-complement sum a 16-bit header word's change makes to a checksum (RFC 1624) */
static uint16_t csum_replace(uint16_t check, uint16_t old, uint16_t new)
{
    uint32_t sum = (uint16_t)~check + (uint16_t)~old + new;

    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    return ~sum;
}

/*
 * QEMU's software TSO (net_tx_pkt_tcp_fragment_init) clears FIN and PSH in every segment; the
 * chip keeps them on the last one, where Linux's tcp_send_fin may have merged a FIN.  iov is
 * L2, L3, the TCP header, then the payload.
 */
static void tx_tso_last_flags(TxQueueRef *ref, const struct iovec *iov, int iov_cnt)
{
    uint8_t *th;
    size_t payload;
    uint16_t old;

    if (!ref->fin_psh || iov_cnt < 3 || iov[2].iov_len < 20) {
        return;
    }
    payload = iov_size(iov, iov_cnt) - iov[0].iov_len - iov[1].iov_len - iov[2].iov_len;
    ref->payload_left -= MIN(payload, ref->payload_left);
    if (ref->payload_left) {
        return;
    }
    th = iov[2].iov_base;
    old = lduw_be_p(th + 12);
    th[13] |= ref->fin_psh;
    stw_be_p(th + 16, csum_replace(lduw_be_p(th + 16), old, lduw_be_p(th + 12)));
}

/* One frame on the wire: after segmentation, so TSO counts every segment */
static void tx_frame(void *opaque, const struct iovec *iov, int iov_cnt,
                     const struct iovec *virt_iov, int virt_iov_cnt)
{
    TxQueueRef *ref = opaque;
    NetClientState *nc = qemu_get_queue(ref->s->nic);

    tx_tso_last_flags(ref, iov, iov_cnt);
    if (qemu_get_vnet_hdr_len(nc->peer)) {
        qemu_sendv_packet(nc, virt_iov, virt_iov_cnt);
    } else {
        qemu_sendv_packet(nc, iov, iov_cnt);
    }
    count_tx(ref->s, ref->q, iov, iov_cnt);
}

static void tx_send(IxgbeState *s, int q, uint8_t fin_psh, size_t payload)
{
    TxQueueRef ref = { s, q, fin_psh, payload };

    if (qemu_get_queue(s->nic)->link_down) {
        return;             /* the cable is out: the frame is lost, as on the wire */
    }
    /* offload=false: segmentation and checksums in software, per frame */
    net_tx_pkt_send_custom(s->tx_pkt, false, tx_frame, &ref);
}

/* A TSO packet's FIN and PSH flags, read from its headers in the first buffer */
static uint8_t tx_tso_fin_psh(IxgbeState *s, const uint32_t *ctx, uint32_t cmd, uint64_t buf, uint32_t len)
{
    uint32_t at = ((ctx[0] >> 9) & 0x7F) + (ctx[0] & 0x1FF) + 13;   /* MACLEN + IPLEN + 13 */
    uint8_t flags = 0;

    if ((cmd & TXD_CMD_TSE) && at < len) {
        pci_dma_read(PCI_DEVICE(s), buf + at, &flags, 1);
    }
    return flags & (TCP_FLAG_FIN | TCP_FLAG_PSH);
}

/*
 * Consume every complete packet between TDH and TDT, synchronously.  Only
 * whole packets are taken (the EOP descriptor must be before TDT), so no
 * half-assembled packet is ever device state.
 */
static void tx_process(IxgbeState *s, int q)
{
    PCIDevice *d = PCI_DEVICE(s);
    uint64_t base = (uint64_t)R(s, txq_reg(q, Q_BAH)) << 32 | (R(s, txq_reg(q, Q_BAL)) & ~0x7Fu);
    uint32_t n = (R(s, txq_reg(q, Q_LEN)) & 0xFFF80) / DESC_SIZE;
    uint32_t head = R(s, txq_reg(q, Q_H)), tail = R(s, txq_reg(q, Q_T));
    bool done = false;

    if (!(R(s, txq_reg(q, Q_DCTL)) & DCTL_ENABLE) || !n || head >= n || tail >= n) {
        return;
    }
    while (head != tail) {
        uint32_t i = head, first_cmd = 0, first_olinfo = 0, first_len = 0, frags = 0;
        uint64_t first_buf = 0;
        bool eop = false, ok = true;
        uint8_t desc[DESC_SIZE];
        const uint32_t *ctx;

        /* look ahead for this packet's EOP */
        for (i = head; i != tail && !eop; i = (i + 1) % n) {
            uint32_t d2;
            pci_dma_read(d, base + i * DESC_SIZE, desc, sizeof(desc));
            d2 = ldl_le_p(desc + 8);
            eop = txd_is_eop(d2);
        }
        if (!eop) {
            break;          /* the rest of this packet is not written yet */
        }
        for (i = head; i != tail; ) {
            hwaddr at = base + i * DESC_SIZE;
            uint64_t d0;
            uint32_t d2, d3;

            pci_dma_read(d, at, desc, sizeof(desc));
            d0 = ldq_le_p(desc);
            d2 = ldl_le_p(desc + 8);
            d3 = ldl_le_p(desc + 12);
            if (txd_is_context(d2)) {
                uint32_t *slot = tx_context(s, q, TXD_IDX(d3));
                slot[0] = d0;
                slot[1] = d0 >> 32;
                slot[2] = d2;
                slot[3] = d3;
            } else {
                if (!frags++) {
                    first_cmd = d2;
                    first_olinfo = d3;
                    first_buf = d0;
                    first_len = d2 & TXD_LEN;
                }
                if (ok && (d2 & TXD_LEN)) {
                    ok = net_tx_pkt_add_raw_fragment_pci(s->tx_pkt, d, d0, d2 & TXD_LEN);
                }
            }
            if (d2 & TXD_CMD_RS) {
                stl_le_pci_dma(d, at + 12, d3 | TXD_STAT_DD, MEMTXATTRS_UNSPECIFIED);
            }
            i = (i + 1) % n;
            if (txd_is_eop(d2)) {
                break;
            }
        }
        head = i;
        ctx = tx_context(s, q, TXD_IDX(first_olinfo));
        if (ok && net_tx_pkt_parse(s->tx_pkt) && tx_offloads(s, ctx, first_cmd, first_olinfo)) {
            tx_send(s, q, tx_tso_fin_psh(s, ctx, first_cmd, first_buf, first_len), first_olinfo >> TXD_PAYLEN_SHIFT);
        } else {
            qemu_log_mask(LOG_GUEST_ERROR, "ixgbe: TX queue %d: a malformed packet, dropped\n", q);
        }
        net_tx_pkt_reset(s->tx_pkt, net_tx_pkt_unmap_frag_pci, d);
        R(s, txq_reg(q, Q_H)) = head;
        done = true;
    }
    if (done) {
        raise_cause(s, queue_cause(s, IVAR_TX_ENTRY(q)));
    }
}

/* ------------------------------------------------------------------- RX */

static bool rx_enabled(IxgbeState *s)
{
    return (R(s, RXCTRL) & RXCTRL_RXEN) && (R(s, rxq_reg(0, Q_DCTL)) & DCTL_ENABLE) &&
           (R(s, rxq_reg(0, Q_LEN)) & 0xFFF80);
}

static uint32_t rx_ring_size(IxgbeState *s)
{
    return (R(s, rxq_reg(0, Q_LEN)) & 0xFFF80) / DESC_SIZE;
}

/* Descriptors the driver has given the device on queue 0 */
static uint32_t rx_free_descriptors(IxgbeState *s)
{
    uint32_t n = rx_ring_size(s), head = R(s, rxq_reg(0, Q_H)), tail = R(s, rxq_reg(0, Q_T));

    if (!n || head >= n || tail >= n) {
        return 0;
    }
    return (tail + n - head) % n;
}

static size_t rx_buffer_size(IxgbeState *s)
{
    uint32_t kib = R(s, srrctl_reg(0)) & SRRCTL_BSIZEPKT;

    return kib ? kib * KiB : 2 * KiB;
}

static bool rx_filter_accepts(IxgbeState *s, const uint8_t *da)
{
    uint32_t fctrl = R(s, FCTRL);
    int i;

    if (is_broadcast_ether_addr(da)) {
        return fctrl & (FCTRL_BAM | FCTRL_MPE);
    }
    if (is_multicast_ether_addr(da)) {
        uint32_t mcst = R(s, MCSTCTRL), vector;
        static const int shift[] = { 4, 3, 2, 0 };  /* by MCSTCTRL.MO */

        if (fctrl & FCTRL_MPE) {
            return true;
        }
        if (!(mcst & MCSTCTRL_MFE)) {
            return false;
        }
        vector = ((da[4] >> shift[mcst & MCSTCTRL_MO]) |
                  (da[5] << (8 - shift[mcst & MCSTCTRL_MO]))) & 0xFFF;
        return R(s, MTA0 + 4 * (vector >> 5)) & BIT(vector & 31);
    }
    if (fctrl & FCTRL_UPE) {
        return true;
    }
    for (i = 0; i < 16; i++) {
        uint32_t ral = R(s, RAL0 + 8 * i), rah = R(s, RAH0 + 8 * i);

        if ((rah & RAH_AV) && ldl_le_p(da) == ral && lduw_le_p(da + 4) == (rah & 0xFFFF)) {
            return true;
        }
    }
    return false;
}

static void count_rx(IxgbeState *s, const uint8_t *da, size_t len)
{
    size_t wire = len + FCS_LEN;

    count(s, GPRC, 1);
    count(s, TPR, 1);
    count(s, GORCH, wire);
    count(s, TORH, wire);
    count(s, PRC64 + 4 * size_bin(wire), 1);
    if (is_broadcast_ether_addr(da)) {
        count(s, BPRC, 1);
    } else if (is_multicast_ether_addr(da)) {
        count(s, MPRC, 1);
    }
    count(s, QPRC0, 1);
    count(s, QBRC0, wire);
}

static bool ixgbe_can_receive(NetClientState *nc)
{
    IxgbeState *s = qemu_get_nic_opaque(nc);

    /* a disabled receiver drops frames (receive); only a full ring holds them */
    return !rx_enabled(s) || rx_free_descriptors(s) > 0;
}

static ssize_t ixgbe_receive(NetClientState *nc, const uint8_t *buf, size_t size)
{
    IxgbeState *s = qemu_get_nic_opaque(nc);
    PCIDevice *d = PCI_DEVICE(s);
    uint8_t frame[ETH_ALEN * 2];
    const uint8_t *rest = buf;
    size_t len = size, bufsize, done = 0;
    uint32_t vlan_status = 0, n, head, needed;
    uint16_t vlan_tag = 0;
    uint64_t base;

    if (!rx_enabled(s) || size < ETH_HLEN || !rx_filter_accepts(s, buf)) {
        return size;
    }
    if ((R(s, VLNCTRL) & VLNCTRL_VME) && lduw_be_p(buf + 12) == (R(s, VLNCTRL) & VLNCTRL_VET) &&
        size >= ETH_HLEN + 4) {
        /* 82598 strips every tagged frame when VLNCTRL.VME is set */
        vlan_status = RXD_STAT_VP;
        vlan_tag = lduw_be_p(buf + 14);
        memcpy(frame, buf, sizeof(frame));
        rest = buf + sizeof(frame) + 4;
        len = size - 4;
    }
    bufsize = rx_buffer_size(s);
    needed = DIV_ROUND_UP(len, bufsize);
    if (rx_free_descriptors(s) < needed) {
        return needed < rx_ring_size(s) ? 0 : size;    /* wait for buffers, or never fits */
    }
    n = rx_ring_size(s);
    head = R(s, rxq_reg(0, Q_H));
    base = (uint64_t)R(s, rxq_reg(0, Q_BAH)) << 32 | (R(s, rxq_reg(0, Q_BAL)) & ~0x7Fu);
    while (done < len) {
        hwaddr at = base + head * DESC_SIZE;
        size_t chunk = MIN(len - done, bufsize), off = 0;
        bool last = done + chunk == len;
        uint64_t addr, upper;

        ldq_le_pci_dma(d, at, &addr, MEMTXATTRS_UNSPECIFIED);
        if (rest != buf) {              /* a stripped tag: the addresses, then the rest */
            if (done < sizeof(frame)) {
                off = MIN(sizeof(frame) - done, chunk);
                pci_dma_write(d, addr, frame + done, off);
            }
            pci_dma_write(d, addr + off, rest + done + off - sizeof(frame), chunk - off);
        } else {
            pci_dma_write(d, addr, buf + done, chunk);
        }
        /* qword 0 (packet type, RSS hash: none) first, then status and length in
         * one 8-byte store: 3.14 polls DD, 6.1 polls the length */
        stq_le_pci_dma(d, at, 0, MEMTXATTRS_UNSPECIFIED);
        upper = RXD_STAT_DD | (last ? RXD_STAT_EOP | vlan_status : 0);
        upper |= (uint64_t)chunk << 32 | (last ? (uint64_t)vlan_tag << 48 : 0);
        stq_le_pci_dma(d, at + 8, upper, MEMTXATTRS_UNSPECIFIED);
        done += chunk;
        head = (head + 1) % n;
    }
    R(s, rxq_reg(0, Q_H)) = head;
    count_rx(s, buf, size);
    raise_cause(s, queue_cause(s, 0));
    return size;
}

/* ------------------------------------------------------------------ MMIO */

static bool in_queue_block(hwaddr addr, hwaddr base, int queues, int off)
{
    return addr >= base && addr < base + QUEUE_BLOCK * queues && (addr & 0x3F) == off;
}

static uint64_t ixgbe_mmio_read(void *opaque, hwaddr addr, unsigned size)
{
    IxgbeState *s = opaque;
    uint32_t val;

    switch (addr) {
    case EICR:          /* read to clear; in MSI/INTx mode EIAM masks the causes read */
        val = R(s, EICR);
        R(s, EICR) = 0;
        if (!msix_enabled(PCI_DEVICE(s))) {
            R(s, EIMS) &= ~R(s, EIAM);
        }
        update_irq(s);
        return val;
    case EICS:          /* EICR, without clearing it: the MSI-X "other" handler reads this */
        return R(s, EICR);
    case EIMC:
        return 0;
    }
    val = R(s, addr);
    if (is_statistic(addr)) {
        R(s, addr) = 0;
    }
    return val;
}

static void mdio_command(IxgbeState *s, uint32_t val)
{
    /* No PHY answers on this bus: reads return all ones (no device present),
     * and every cycle completes at once so the driver's 10 us polls succeed */
    R(s, MSRWD) = 0xFFFF0000u | (R(s, MSRWD) & 0xFFFF);
    R(s, MSCA) = val & ~MSCA_MDI_COMMAND;
}

static void eeprom_read_command(IxgbeState *s, uint32_t val)
{
    uint32_t word = (val >> EERD_ADDR_SHIFT) & 0x3FFF;

    if (!(val & EERD_START)) {
        return;
    }
    R(s, EERD) = (uint32_t)(word < EEPROM_WORDS ? s->eeprom[word] : 0xFFFF) << EERD_DATA_SHIFT |
                 word << EERD_ADDR_SHIFT | EERD_DONE;
}

static void ixgbe_mmio_write(void *opaque, hwaddr addr, uint64_t value, unsigned size)
{
    IxgbeState *s = opaque;
    NetClientState *nc = qemu_get_queue(s->nic);
    uint32_t val = value;

    switch (addr) {
    case CTRL:
        if (val & CTRL_RST) {
            reset_registers(s);     /* synchronous: RST reads back clear at once */
            update_irq(s);
        } else {
            R(s, CTRL) = val & ~CTRL_LNK_RST;
        }
        return;
    case STATUS: case LINKS: case EEC: case FWSM:
        return;                     /* read-only */
    case EICR:
        R(s, EICR) &= ~val;
        update_irq(s);
        return;
    case EICS:
        raise_cause(s, val);
        return;
    case EIMS:
        R(s, EIMS) |= val;
        update_irq(s);
        return;
    case EIMC:
        R(s, EIMS) &= ~val;
        update_irq(s);
        return;
    case EERD:
        eeprom_read_command(s, val);
        return;
    case MSCA:
        mdio_command(s, val);
        return;
    case AUTOC:
        R(s, AUTOC) = val & ~AUTOC_AN_RESTART;
        return;
    case RXCTRL:
        R(s, RXCTRL) = val;
        qemu_flush_queued_packets(nc);
        return;
    }
    if (is_statistic(addr)) {
        return;
    }
    if (in_queue_block(addr, TXQ_BASE, TX_QUEUES, Q_DCTL) ||
        in_queue_block(addr, RXQ_BASE, RX_QUEUES, Q_DCTL)) {
        val &= ~DCTL_SWFLSH;
    }
    R(s, addr) = val;
    if (in_queue_block(addr, TXQ_BASE, TX_QUEUES, Q_T) ||
        in_queue_block(addr, TXQ_BASE, TX_QUEUES, Q_DCTL)) {
        tx_process(s, (addr - TXQ_BASE) / QUEUE_BLOCK);
    } else if (in_queue_block(addr, RXQ_BASE, RX_QUEUES, Q_T) ||
               in_queue_block(addr, RXQ_BASE, RX_QUEUES, Q_DCTL)) {
        qemu_flush_queued_packets(nc);
    }
}

static const MemoryRegionOps ixgbe_mmio_ops = {
    .read = ixgbe_mmio_read,
    .write = ixgbe_mmio_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .impl = {
        .min_access_size = 4,
        .max_access_size = 4,
    },
};

/* --------------------------------------------------------- the PCI device */

static void ixgbe_write_config(PCIDevice *d, uint32_t addr, uint32_t val, int len)
{
    IxgbeState *s = IXGBE(d);

    pci_default_write_config(d, addr, val, len);
    if (range_covers_byte(addr, len, PCI_COMMAND) && (d->config[PCI_COMMAND] & PCI_COMMAND_MASTER)) {
        qemu_flush_queued_packets(qemu_get_queue(s->nic));
    }
    /* a change of interrupt mode re-evaluates the pending causes in the new one */
    if (ranges_overlap(addr, len, MSIX_CAP_OFFSET, 4) || ranges_overlap(addr, len, MSI_CAP_OFFSET, 4)) {
        s->irq_seen = 0;
        update_irq(s);
    }
}

static NetClientInfo ixgbe_net_info = {
    .type = NET_CLIENT_DRIVER_NIC,
    .size = sizeof(NICState),
    .can_receive = ixgbe_can_receive,
    .receive = ixgbe_receive,
    .link_status_changed = set_link_status,
};

static void ixgbe_realize(PCIDevice *d, Error **errp)
{
    IxgbeState *s = IXGBE(d);
    int i;

    d->config_write = ixgbe_write_config;
    d->config[PCI_CACHE_LINE_SIZE] = 0x10;
    d->config[PCI_INTERRUPT_PIN] = 1;

    memory_region_init_io(&s->mmio, OBJECT(s), &ixgbe_mmio_ops, s, "ixgbe-mmio", MMIO_SIZE);
    pci_register_bar(d, 0, PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64, &s->mmio);

    if (pci_pm_init(d, PM_CAP_OFFSET, errp) < 0) {
        return;
    }
    /* 64-bit, one vector, no per-vector mask: 14 bytes, so it ends before MSI-X.  Where
     * MSI cannot work the driver falls back to INTx, as on a real board. */
    msi_init(d, MSI_CAP_OFFSET, 1, true, false, NULL);
    if (s->msix_capable) {
        memory_region_init(&s->msix, OBJECT(s), "ixgbe-msix", MSIX_BAR_SIZE);
        pci_register_bar(d, MSIX_BAR, PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64, &s->msix);
        if (msix_init(d, MSIX_VECTORS, &s->msix, MSIX_BAR, 0, &s->msix, MSIX_BAR, MSIX_PBA_OFFSET,
                      MSIX_CAP_OFFSET, errp)) {
            msi_uninit(d);
            return;
        }
        for (i = 0; i < MSIX_VECTORS; i++) {
            msix_vector_use(d, i);  /* else msix_notify drops the message */
        }
    }
    /*
     * An endpoint, as the chip is, even on q35's root bus (where QEMU's helper would make it
     * a root-complex-integrated one): Linux reads no link registers of those, and 3.14's
     * probe then warns "Unable to determine PCI Express bandwidth".
     */
    if (pcie_cap_init(d, PCIE_CAP_OFFSET, PCI_EXP_TYPE_ENDPOINT, 0, errp) < 0) {
        if (s->msix_capable) {
            msix_uninit(d, &s->msix, &s->msix);
        }
        msi_uninit(d);
        return;
    }
    pcie_cap_fill_link_ep_usp(d, QEMU_PCI_EXP_LNK_X8, QEMU_PCI_EXP_LNK_2_5GT);

    qemu_macaddr_default_if_unset(&s->conf.macaddr);
    s->nic = qemu_new_nic(&ixgbe_net_info, &s->conf, object_get_typename(OBJECT(s)),
                          DEVICE(d)->id, &DEVICE(d)->mem_reentrancy_guard, s);
    qemu_format_nic_info_str(qemu_get_queue(s->nic), s->conf.macaddr.a);
    net_tx_pkt_init(&s->tx_pkt, MAX_TX_FRAGS);
    eeprom_build(s);
}

static void ixgbe_exit(PCIDevice *d)
{
    IxgbeState *s = IXGBE(d);

    net_tx_pkt_uninit(s->tx_pkt);
    qemu_del_nic(s->nic);
    pcie_cap_exit(d);
    if (s->msix_capable) {
        msix_uninit(d, &s->msix, &s->msix);
    }
    msi_uninit(d);
}

static void ixgbe_instance_init(Object *obj)
{
    IxgbeState *s = IXGBE(obj);

    device_add_bootindex_property(obj, &s->conf.bootindex, "bootindex", "/ethernet-phy@0", DEVICE(obj));
}

static int ixgbe_post_load(void *opaque, int version_id)
{
    IxgbeState *s = opaque;

    /* link_down is not migrated: the register state says what the cable was */
    qemu_get_queue(s->nic)->link_down = !(R(s, LINKS) & LINKS_UP);
    return 0;
}

static const VMStateDescription ixgbe_vmstate = {
    .name = "ixgbe",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = ixgbe_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, IxgbeState),
        VMSTATE_MSIX(parent_obj, IxgbeState),   /* a no-op without MSI-X */
        VMSTATE_UINT32_ARRAY(regs, IxgbeState, REG_COUNT),
        VMSTATE_UINT16_ARRAY(eeprom, IxgbeState, EEPROM_WORDS),
        VMSTATE_UINT32_ARRAY(tx_ctx, IxgbeState, TX_QUEUES * TX_CONTEXTS * 4),
        VMSTATE_UINT32(irq_seen, IxgbeState),
        VMSTATE_END_OF_LIST()
    },
};

static const Property ixgbe_properties[] = {
    DEFINE_NIC_PROPERTIES(IxgbeState, conf),
    DEFINE_PROP_BOOL("msix", IxgbeState, msix_capable, true),
};

static void ixgbe_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);

    k->realize = ixgbe_realize;
    k->exit = ixgbe_exit;
    k->vendor_id = PCI_VENDOR_ID_INTEL;
    k->device_id = IXGBE_DEVICE_ID;
    k->revision = 1;
    k->class_id = PCI_CLASS_NETWORK_ETHERNET;
    rc->phases.hold = ixgbe_reset_hold;
    dc->desc = "Intel 82598AF 10 Gigabit Ethernet (ixgbe), netlink testbed model";
    dc->vmsd = &ixgbe_vmstate;
    device_class_set_props(dc, ixgbe_properties);
    set_bit(DEVICE_CATEGORY_NETWORK, dc->categories);
}

static const TypeInfo ixgbe_info = {
    .name = TYPE_IXGBE,
    .parent = TYPE_PCI_DEVICE,
    .instance_size = sizeof(IxgbeState),
    .class_init = ixgbe_class_init,
    .instance_init = ixgbe_instance_init,
    .interfaces = (InterfaceInfo[]) {
        { INTERFACE_PCIE_DEVICE },
        { }
    },
};

static void ixgbe_register_types(void)
{
    type_register_static(&ixgbe_info);
}

type_init(ixgbe_register_types)
