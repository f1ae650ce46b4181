"""XdpSender: frames built in C (checked by scapy), and real sends over a veth lab to both receiver kinds."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest

from xdpgw.batch import Batch
from xdpgw.errors import GatewayError
from xdpgw.tools.lab import Lab, in_netns
from xdpgw.transport.base import Sender
from xdpgw.transport.xdp.tx import build_frames, header_template, multicast_mac

PORT = 9311


def payloads(n: int, seed: int = 3, top: int = 1472) -> list[bytes]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, top + 1, n)
    sizes[:4] = (0, 1, 3, top)
    return [rng.bytes(int(s)) for s in sizes]


# --- sans-IO: the frames themselves ----------------------------------------------------------------
@pytest.mark.parametrize("v6", [False, True])
def test_frames_have_right_lengths_and_checksums(v6):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    src, dst = ("fd77::1", "fd77::2") if v6 else ("10.77.0.1", "10.77.0.2")
    tmpl = header_template("02:00:00:00:00:01", "02:00:00:00:00:02", src, dst, 40000, PORT)
    sent = payloads(200, top=1400) + [b"x" * 1401]  # the last one is oversize
    frames = build_frames(tmpl, Batch.from_payloads(sent), max_payload=1400, ip_id=0xFFFE)
    assert frames.lengths[-1] == 0
    for i, p in enumerate(sent[:-1]):
        raw = bytes(frames.payload(i))
        pkt = Ether(raw)
        l3 = pkt[IPv6] if v6 else pkt[IP]
        udp = pkt[UDP]
        assert bytes(udp.payload) == p and udp.len == 8 + len(p) and udp.dport == PORT
        assert l3.src == src and l3.dst == dst and pkt.dst == "02:00:00:00:00:02"
        again = Ether(raw)  # let scapy recompute both checksums from scratch
        del again[UDP].chksum
        if not v6:
            del again[IP].chksum
        again = Ether(bytes(again))
        assert udp.chksum == again[UDP].chksum
        if not v6:
            assert l3.len == 28 + len(p) and l3.id == (0xFFFE + i) & 0xFFFF
            assert l3.chksum == again[IP].chksum
        else:
            assert l3.plen == 8 + len(p)


def test_checksums_match_the_kernel_rule():
    """Independent of scapy: summing the UDP segment with its pseudo header gives 0xffff."""
    tmpl = header_template("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2", 1, 2)
    for p in (b"", b"a", b"abc", bytes(range(256)) * 5):
        f = bytes(build_frames(tmpl, Batch.from_payloads([p])).payload(0))
        ip, udp = f[14:34], f[34:]
        s = _sum16(ip) + 0  # IPv4 header sums to 0xffff including its checksum
        assert _fold(s) == 0xFFFF
        pseudo = ip[12:20] + bytes([0, 17]) + len(udp).to_bytes(2, "big")
        assert _fold(_sum16(pseudo) + _sum16(udp)) == 0xFFFF


def _sum16(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    return sum(int.from_bytes(b[i : i + 2], "big") for i in range(0, len(b), 2))


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_multicast_mac():
    assert multicast_mac("239.129.1.2") == "01:00:5e:01:01:02"
    assert multicast_mac("ff02::1:ff00:2") == "33:33:ff:00:00:02"
    assert multicast_mac("10.0.0.1") is None


# --- real sends over a veth lab --------------------------------------------------------------------
@pytest.fixture
def xlab(make_lab) -> Lab:
    return make_lab(1, prefix="xs")


def _receiver(kind: str, lab: Lab):
    with in_netns(lab.rx_ns):
        if kind == "socket":
            from xdpgw.transport.socket import SocketReceiver

            return SocketReceiver(PORT)
        from xdpgw.transport.xdp.rx import XdpReceiver

        return XdpReceiver(lab.rx_if, 0, [PORT], mode="drv")


def _sender(lab: Lab, dest: str | None = None, **kw):
    from xdpgw.transport.xdp.tx import XdpSender

    with in_netns(lab.tx_ns):
        return XdpSender(lab.tx_if, dest or lab.rx_ip, PORT, **kw)


@pytest.mark.xdp
@pytest.mark.parametrize("kind", ["xdp-drv", "socket"])
def test_sent_payloads_arrive_byte_identical(xlab, kind):
    """What XdpSender sends, an XdpReceiver and a kernel socket receive identically (the kernel checks sums)."""
    sent = payloads(3000)
    got: list[bytes] = []
    with _receiver(kind, xlab) as rx, _sender(xlab) as tx:
        assert isinstance(tx, Sender) and tx.transport == "xdp"
        assert tx.route.dst_mac == xlab.macs()[1]
        for i in range(0, len(sent), 256):
            part = sent[i : i + 256]
            assert tx.send_batch(Batch.from_payloads(part)) == len(part)
            got += rx.recv_batch(256, timeout=0).payloads()
        deadline = time.monotonic() + 3
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += rx.recv_batch(256, timeout=0.05).payloads()
        st = tx.stats()
    assert got == sent
    assert st["packets"] == len(sent) and st["errors"] == 0 and st["stalls"] == 0


@pytest.mark.xdp
def test_ipv6_and_oversize(xlab):
    """IPv6 frames reach a kernel socket (UDP checksum is mandatory there); an oversize payload is counted."""
    with in_netns(xlab.rx_ns):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::", PORT))
    s.settimeout(2)
    try:
        with _sender(xlab, xlab.rx_ip6) as tx:
            assert tx.max_payload == 1452
            sent = [b"", b"six", os.urandom(1452)]
            assert tx.send_batch(Batch.from_payloads([sent[0], b"y" * 1453] + sent[1:])) == 4
            assert tx.stats()["oversize"] == 1 and tx.stats()["packets"] == 3
            got = [s.recv(2048) for _ in sent]
    finally:
        s.close()
    assert got == sent


@pytest.mark.xdp
def test_unresolvable_next_hop_says_what_to_do(xlab):
    with pytest.raises(GatewayError) as e, in_netns(xlab.tx_ns):  # after resolve_timeout (pytest-timeout: no hang)
        from xdpgw.transport.xdp.tx import XdpSender

        XdpSender(xlab.tx_if, "10.77.0.99", PORT, resolve_timeout=0.3)
    assert "10.77.0.99" in str(e.value) and "--dest-mac" in e.value.fix
