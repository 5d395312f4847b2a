"""Decoding what a guest kernel sends: names, not numbers; truncation reported, never dropped."""
from pyroute2.netlink import nlmsg, nlmsgerr
from pyroute2.netlink.rtnl import RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from harness.netlink import NLMSG_DONE, NLMSG_ERROR, decode, getlink_request, iff_names, proc_net_netlink


def newlink(flags=0x11043, operstate="UP", carrier=1):
    m = ifinfmsg()
    m["header"]["type"] = RTM_NEWLINK
    m["index"], m["flags"], m["change"] = 2, flags, 1
    m["attrs"] = [("IFLA_IFNAME", "eth0"), ("IFLA_OPERSTATE", operstate), ("IFLA_CARRIER", carrier)]
    m.encode()
    return bytes(m.data)


def test_rtm_newlink_is_decoded_with_names():
    [m] = decode(newlink())
    assert (m.type_name, m.ifname, m.operstate, m.carrier) == ("RTM_NEWLINK", "eth0", "UP", 1)
    assert m.has("UP", "LOWER_UP", "RUNNING")
    assert str(m) == "RTM_NEWLINK eth0 flags=UP|BROADCAST|RUNNING|MULTICAST|LOWER_UP change=0x1 operstate=UP carrier=1"


def test_error_ack_and_done():
    e = nlmsgerr()
    e["header"]["type"], e["error"] = NLMSG_ERROR, -1
    e.encode()
    d = nlmsg()
    d["header"]["type"] = NLMSG_DONE
    d.encode()
    err, done = decode(bytes(e.data) + bytes(d.data))
    assert str(err).startswith("NLMSG_ERROR EPERM")
    assert done.type_name == "NLMSG_DONE"


def test_several_messages_in_one_datagram_and_truncation():
    data = newlink() + newlink(flags=0x1003, operstate="DOWN", carrier=0)
    first, second = decode(data)
    assert second.operstate == "DOWN" and not second.has("LOWER_UP")
    *_, cut = decode(data[:-10])
    assert cut.problem and "truncated" in cut.problem


def test_unknown_flag_bits_are_shown_not_lost():
    assert iff_names(0x1 | 0x80000000) == "UP|0x80000000"


def test_getlink_request_is_a_dump():
    [m] = decode(getlink_request(seq=5))
    assert m.type_name == "RTM_GETLINK" and m.seq == 5 and m.flags & 0x300


def test_proc_net_netlink_both_layouts():
    v61 = ("sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"
           "00000000ab 0   1234       00000001 4608     0        0     2        2        15098\n")
    # 3.14 prints Dump as a pointer (%pK)
    v314 = ("sk       Eth Pid    Groups   Rmem     Wmem     Dump     Locks     Drops     Inode\n"
            "ffff8800 0   77     00000001 2304     0        (null)   2         5         999\n")
    assert proc_net_netlink(v61)[15098]["Drops"] == 2
    assert proc_net_netlink(v61)[15098]["Groups"] == 1
    assert (proc_net_netlink(v314)[999]["Rmem"], proc_net_netlink(v314)[999]["Drops"]) == (2304, 5)


def encoded(cls, mtype: int, attrs: list, **fields) -> bytes:
    m = cls()
    m["header"]["type"] = mtype
    for name, value in fields.items():
        m[name] = value
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data)


def test_every_attribute_by_name_nested_ones_too_and_unknown_ones_by_number():
    import struct
    raw = encoded(ifinfmsg, RTM_NEWLINK, [("IFLA_IFNAME", "d0"), ("IFLA_MTU", 1400), ("IFLA_TXQLEN", 500),
                                         ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "dummy")]})], index=7)
    unknown = struct.pack("=HH", 4 + 6, 250) + b"abcdef" + b"\0\0"  # type 250: nobody knows it
    raw = struct.pack("=I", len(raw) + len(unknown)) + raw[4:] + unknown
    [m] = decode(raw)
    assert m.attrs["IFLA_MTU"] == 1400 and m.attrs["IFLA_TXQLEN"] == 500 and m.mtu == 1400
    assert m.attrs["IFLA_LINKINFO"] == {"IFLA_INFO_KIND": "dummy"}
    assert m.attrs["attr 250"] == "6 bytes"  # shown by number and length, not dropped
    assert m.body["index"] == 7 and m.key == ("link", "7")
    assert m.as_dict()["attrs"]["IFLA_TXQLEN"] == 500  # JSON carries them all


def test_the_other_rtnetlink_families_and_generic_netlink_are_decoded():
    from pyroute2.netlink import GENL_ID_CTRL, NETLINK_GENERIC, ctrlmsg
    from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWNEIGH, RTM_NEWQDISC, RTM_NEWROUTE, RTM_NEWRULE
    from pyroute2.netlink.rtnl.fibmsg import fibmsg
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ndmsg import ndmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg
    from pyroute2.netlink.rtnl.tcmsg import tcmsg
    cases: list[tuple[type, int, list, dict, str]] = [
             (ifaddrmsg, RTM_NEWADDR, [("IFA_ADDRESS", "10.0.2.15"), ("IFA_LABEL", "eth0")],
              dict(family=2, index=2, prefixlen=24),
              "RTM_NEWADDR index=2 prefixlen=24 IFA_ADDRESS=10.0.2.15 IFA_LABEL=eth0"),
             (rtmsg, RTM_NEWROUTE, [("RTA_DST", "10.0.2.0"), ("RTA_OIF", 2)], dict(family=2, dst_len=24, table=254),
              "RTM_NEWROUTE table=254 dst_len=24 RTA_DST=10.0.2.0 RTA_OIF=2"),
             (ndmsg, RTM_NEWNEIGH, [("NDA_DST", "10.0.2.2")], dict(family=2, ifindex=2, state=2),
              "RTM_NEWNEIGH ifindex=2 state=2 NDA_DST=10.0.2.2"),
             (fibmsg, RTM_NEWRULE, [("FRA_PRIORITY", 32766)], dict(family=2, table=254),
              "RTM_NEWRULE table=254 FRA_PRIORITY=32766"),
             (tcmsg, RTM_NEWQDISC, [("TCA_KIND", "pfifo_fast")], dict(index=2, handle=0, parent=0xFFFFFFFF),
              "RTM_NEWQDISC index=2 handle=0 parent=4294967295 TCA_KIND=pfifo_fast")]
    for cls, mtype, attrs, fields, line in cases:
        [m] = decode(encoded(cls, mtype, attrs, **fields))
        assert m.problem is None and str(m) == line, (m, m.problem)
    [g] = decode(encoded(ctrlmsg, GENL_ID_CTRL, [("CTRL_ATTR_FAMILY_NAME", "nlctrl")], cmd=1, version=2),
                 NETLINK_GENERIC)
    assert (g.type_name, g.body["cmd"], g.attrs["CTRL_ATTR_FAMILY_NAME"]) == ("GENL_ID_CTRL", 1, "nlctrl")


def test_what_changed_since_the_previous_message_about_the_same_object():
    [before] = decode(encoded(ifinfmsg, RTM_NEWLINK, [("IFLA_IFNAME", "d0"), ("IFLA_MTU", 1500),
                                                     ("IFLA_STATS", {"rx_packets": 1})], index=3))
    [after] = decode(encoded(ifinfmsg, RTM_NEWLINK, [("IFLA_IFNAME", "d0"), ("IFLA_MTU", 1400),
                                                    ("IFLA_STATS", {"rx_packets": 9}), ("IFLA_TXQLEN", 5)], index=3))
    assert before.key == after.key
    assert after.changed_since(before.attrs) == {"IFLA_MTU": 1400, "IFLA_TXQLEN": 5}  # counters left out
    assert before.changed_since(after.attrs) == {"IFLA_MTU": 1500, "IFLA_TXQLEN": None}  # removed: None
