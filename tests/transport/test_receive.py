"""The receive path on a real veth lab with real packets: one test body, every transport."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.helpers import (
    TRANSPORTS,
    attached,
    collect,
    drain_socket,
    feed_frames,
    kernel_udp_socket,
    open_receiver,
    send_frames,
)
from xdpgw.tools.lab import in_netns


def payloads(n: int, seed: int = 1) -> list[bytes]:
    """Varied sizes, 0 to 1400 bytes, each payload unique."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 1400, n)
    sizes[:3] = (0, 1, 1400)
    return [(b"%08d" % i + rng.bytes(int(s)))[: max(int(s), 0)] if s >= 8 else rng.bytes(int(s)) for i, s in
            enumerate(sizes)]


@pytest.mark.xdp
@pytest.mark.parametrize("kind", TRANSPORTS)
def test_every_feed_packet_once_identical_in_order(lab, kind):
    sent = payloads(3000)
    with open_receiver(kind, lab) as rx:
        assert rx.transport == kind.split("-")[0]
        send_frames(lab, feed_frames(lab, sent))
        got, stamps = collect(rx, len(sent))
        extra = rx.recv_batch(256, timeout=0.2)  # a duplicate would show up now
        st = rx.stats()
    assert len(got) == len(sent), f"{kind}: {len(got)} of {len(sent)} arrived; stats {st}"
    assert got == sent  # byte-identical, in order, exactly once
    assert extra.count == 0
    now = time.monotonic_ns()
    assert np.all(stamps > 0) and np.all(now - stamps.astype(np.int64) < 30e9), "kernel RX stamps missing"
    assert st["packets"] == len(sent) and st["drops"] == 0
    if kind != "socket":
        assert st["bpf_redirected"] == len(sent)
        assert attached(lab) is None, "the receiver must detach its program on close"


@pytest.mark.xdp
@pytest.mark.parametrize("kind", ["xdp-skb", "xdp-drv"])
def test_vlan_ipv6_and_several_ports(lab, kind):
    """One 802.1Q tag and IPv6 are parsed; every configured feed port is redirected."""
    with in_netns(lab.rx_ns):
        from xdpgw.transport.xdp.rx import XdpReceiver

        rx = XdpReceiver(lab.rx_if, 0, [9001, 9002], mode=kind.split("-")[1])
    sent = [b"v6-a", b"v6-b", b"p2", b"tagged"]
    with rx:
        frames = (feed_frames(lab, sent[:2], v6=True)
                  + feed_frames(lab, sent[2:3], dport=9002)
                  + feed_frames(lab, sent[3:], vlan=42))
        send_frames(lab, frames)
        got, ports, heads = [], [], []
        deadline = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < deadline:
            b = rx.recv_batch(256, timeout=0.05)
            n = b.count
            got += b.payloads()
            ports += b.dports[:n].tolist()  # the Batch says each packet's port and where its headers start
            heads += [bytes(b.buf[o - h : o]) for o, h in zip(b.offsets[:n], b.header_lengths[:n], strict=True)]
        st = rx.stats()
    # veth does no VLAN offload: the program sees the tag in both modes, parses it, and redirects the frame.
    assert got == sent
    assert st["bpf_redirected"] == 4 and st["bpf_malformed"] == 0, st
    assert ports == [9001, 9001, 9002, 9001]
    assert heads == [f[: len(f) - len(p)] for f, p in zip(frames, sent, strict=True)]  # IPv6 62, VLAN 46 bytes


@pytest.mark.xdp
@pytest.mark.parametrize("mode", ["skb", "drv"])
def test_non_feed_traffic_still_reaches_the_kernel(lab, mode):
    import subprocess

    other = kernel_udp_socket(lab, 9002)
    feed_sock = kernel_udp_socket(lab, 9001)
    try:
        with in_netns(lab.rx_ns):
            from xdpgw.transport.xdp.rx import XdpReceiver

            rx = XdpReceiver(lab.rx_if, 0, [9001], mode=mode)
        with rx:
            send_frames(lab, feed_frames(lab, [b"other-%d" % i for i in range(50)], dport=9002))
            send_frames(lab, feed_frames(lab, [b"feed-%d" % i for i in range(50)]))
            ping = subprocess.run(["ip", "netns", "exec", lab.tx_ns, "ping", "-c", "3", "-i", "0.2", "-W", "2",
                                   lab.rx_ip], capture_output=True, text=True)
            got, _ = collect(rx, 50, timeout=3)
            st = rx.stats()
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert drain_socket(other, 50) == [b"other-%d" % i for i in range(50)]
        assert got == [b"feed-%d" % i for i in range(50)]
        assert drain_socket(feed_sock, 1, timeout=0.3) == [], "bypassed feed packets must not reach the kernel"
        assert st["bpf_passed"] >= 50 + 3
    finally:
        other.close()
        feed_sock.close()


@pytest.mark.xdp
def test_after_close_the_feed_goes_back_to_the_kernel(lab):
    rx = open_receiver("xdp-drv", lab)
    with rx:
        send_frames(lab, feed_frames(lab, [b"bypass"]))
        assert collect(rx, 1, timeout=2)[0] == [b"bypass"]
    assert attached(lab) is None
    with kernel_udp_socket(lab, 9001) as s:
        send_frames(lab, feed_frames(lab, [b"kernel-%d" % i for i in range(20)]))
        assert drain_socket(s, 20) == [b"kernel-%d" % i for i in range(20)]


@pytest.mark.xdp
def test_queue_with_no_socket_falls_back_to_pass(lab2):
    """Both queues get traffic; only queue 1 has a socket: queue 0's feed packets reach the kernel."""
    with kernel_udp_socket(lab2, 9001) as s:
        with in_netns(lab2.rx_ns):
            from xdpgw.transport.xdp.rx import XdpReceiver

            rx = XdpReceiver(lab2.rx_if, 1, [9001], mode="drv")
        with rx:
            assert rx.describe()["queue"] == 1
            sent = []
            for sport in range(40000, 40064):  # the tx queue follows the flow hash: spread over both
                p = b"sport-%d" % sport
                sent.append(p)
                send_frames(lab2, feed_frames(lab2, [p], sport=sport))
            bypassed, _ = collect(rx, len(sent), timeout=1.5)
            kernel = drain_socket(s, len(sent) - len(bypassed), timeout=2)
            st = rx.stats()
            counters = rx.program.counters()
        assert sorted(bypassed + kernel) == sorted(sent), "every packet exactly once, via XDP or the kernel"
        assert len(bypassed) == counters[1]["redirected"] == st["packets"]
        assert counters[0]["no_socket"] == len(kernel)
        assert bypassed and kernel, f"expected both queues used: {counters}"
