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
    assert "truncated" in cut.problem


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
