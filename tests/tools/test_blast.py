"""`xdpgw blast`: the frame template, and 100k live frames over a veth into an XdpReceiver, gap-free."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np
import pytest

from xdpgw.errors import GatewayError
from xdpgw.protocol.decode import decode_payloads
from xdpgw.tools.blast import blast_frame, ipv4_checksum
from xdpgw.tools.lab import in_netns
from xdpgw.transport.xdp.tx import Route

PORT = 9321
ROUTE = Route("veth0", 1, 1500, "02:00:00:00:00:01", "02:00:00:00:00:02", "10.77.0.1", "10.77.0.2", "10.77.0.2")


def test_template_is_a_valid_ipv4_udp_moldudp64_frame():
    frame = blast_frame(ROUTE, 40000, PORT, 5, "BLASTX")
    assert frame[12:14] == b"\x08\x00" and ipv4_checksum(frame[14:34]) == 0  # header sums to 0xffff
    assert int.from_bytes(frame[16:18], "big") == len(frame) - 14
    assert int.from_bytes(frame[38:40], "big") == len(frame) - 34 and frame[40:42] == b"\0\0"  # UDP csum 0
    dec = decode_payloads([frame[42:]])
    assert not dec.errors and len(dec) == 5 and bytes(dec.pkt_session[0]).rstrip() == b"BLASTX"


def test_template_limits_say_what_to_do():
    with pytest.raises(GatewayError, match="msgs-per-packet"):
        blast_frame(ROUTE, 40000, PORT, 65, "B")
    small = dataclasses.replace(ROUTE, mtu=200)
    with pytest.raises(GatewayError, match="exceeds the MTU") as e:
        blast_frame(small, 40000, PORT, 40, "B")
    assert "--msgs-per-packet" in e.value.fix
    v6 = Route("veth0", 1, 1500, ROUTE.src_mac, ROUTE.dst_mac, "fd77::1", "fd77::2", "fd77::2")
    with pytest.raises(GatewayError, match="IPv4 only"):
        blast_frame(v6, 40000, PORT, 1, "B")


@pytest.mark.xdp
def test_blast_100k_frames_gap_free_into_xdp_receiver(make_lab):
    from xdpgw.tools.blast import Blaster
    from xdpgw.transport.xdp.rx import XdpReceiver

    lab = make_lab(1, prefix="xb")
    n, m = 100_000, 3
    cpus = sorted(os.sched_getaffinity(0))
    with in_netns(lab.rx_ns):
        # The ring holds the whole blast: the test checks the stream, not how fast this thread drains it.
        rx = XdpReceiver(lab.rx_if, 0, [PORT], mode="drv", frames=262144, rx_size=131072)
    with rx:
        seqs: list[np.ndarray] = []
        stamps: list[np.ndarray] = []
        stop = threading.Event()

        def consume() -> None:
            if len(cpus) > 1:
                os.sched_setaffinity(0, {cpus[0]})  # this thread only: the blaster has the other core
            while not stop.is_set():
                b = rx.recv_batch(256, timeout=0.01)
                if b.count:
                    o = b.offsets[: b.count]
                    seqs.append(b.buf[(o + 10)[:, None] + np.arange(8)].view(">u8").ravel().copy())
                    stamps.append(b.buf[(o + 27)[:, None] + np.arange(6)].copy())  # 1st message's ITCH time

        th = threading.Thread(target=consume)
        th.start()
        try:
            with in_netns(lab.tx_ns), Blaster(lab.tx_if, lab.rx_ip, PORT, msgs_per_packet=m) as bl:
                report = bl.run(n, chunk=25_000, cpu=cpus[-1] if len(cpus) > 1 else None)
            deadline = time.monotonic() + 5
            while sum(map(len, seqs)) < n and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            th.join()
        st = rx.stats()
    assert report["packets"] == n and report["first_seq"] == 1 and report["next_seq"] == 1 + n * m
    assert report["pps"] > 0 and report["bad_template"] == 0
    seq = np.concatenate(seqs)
    assert len(seq) == n, f"received {len(seq)} of {n}; receiver stats {st}"
    assert seq[0] == 1 and np.all(np.diff(seq.astype(np.int64)) == m), "sequence numbers not gap-free/increasing"
    ts = np.concatenate(stamps)
    ts = (np.pad(ts, ((0, 0), (2, 0))).view(">u8").ravel()).astype(np.int64)
    day = 86_400_000_000_000
    off = (time.time_ns() % day - ts + day // 2) % day - day // 2  # wrap-safe distance from now
    assert np.all(np.abs(off) < 60e9), "ITCH stamps are not CLOCK_REALTIME ns since midnight"


def _lo_xdp_prog(ns: str) -> int:
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname="lo")[0])[0]
    x = link.get_attr("IFLA_XDP")
    return (x.get_attr("IFLA_XDP_PROG_ID") or 0) if x is not None else 0


@pytest.mark.xdp
def test_paced_blast_is_gap_free_and_its_anchor_leaves_loopback_working_and_clean(make_lab):
    """Paced runs of a few frames (the bench's latency and burst phases) keep the stream exact (a slow one
    sleeps between frames instead of spinning); the
    dispatcher anchor sits on the tx namespace's loopback only while the blaster lives, passing lo traffic."""
    import socket

    from xdpgw.tools.blast import Blaster
    from xdpgw.transport.xdp.rx import XdpReceiver

    lab = make_lab(1, prefix="xp")
    cpus = sorted(os.sched_getaffinity(0))
    with in_netns(lab.rx_ns):
        rx = XdpReceiver(lab.rx_if, 0, [PORT], mode="drv", frames=32768, rx_size=16384)
    with rx, in_netns(lab.tx_ns), Blaster(lab.tx_if, lab.rx_ip, PORT, msgs_per_packet=2) as bl:
        assert bl.anchor() and _lo_xdp_prog(lab.tx_ns) != 0
        with Blaster(lab.tx_if, lab.rx_ip, PORT) as other:  # loopback takes one program: one anchor at a time
            assert not other.anchor()
            bl.release_anchor()
            assert other.anchor() and not bl.anchor()
            other.release_anchor()
        assert bl.anchor()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET,
                                                                                    socket.SOCK_DGRAM) as b:
            b.bind(("127.0.0.1", 0))
            b.settimeout(2)
            a.sendto(b"lo still works", b.getsockname())
            assert b.recv(100) == b"lo still works"  # the anchored program passes loopback traffic
        cpu0 = time.thread_time()
        slow = bl.run_paced(2_000, 0.2, cpu=cpus[-1])  # 500 µs apart: it sleeps in between, the CPU is free
        slow_cpu = time.thread_time() - cpu0
        reports = [slow, bl.run_paced(20_000, 0.2, cpu=cpus[-1]), bl.run_paced(200_000, 0.05, cpu=cpus[-1])]
        seqs = []
        deadline = time.monotonic() + 5
        want = sum(r["packets"] for r in reports)
        while sum(map(len, seqs)) < want and time.monotonic() < deadline:
            b_ = rx.recv_batch(256, timeout=0.01)
            o = b_.offsets[: b_.count]
            seqs.append(b_.buf[(o + 10)[:, None] + np.arange(8)].view(">u8").ravel().copy())
    assert _lo_xdp_prog(lab.tx_ns) == 0, "the anchor outlived the blaster"
    assert [r["packets"] for r in reports] == [400, 4000, 10000]
    assert slow_cpu < 0.5 * slow["seconds"], "a paced run at 2k frames/s kept its CPU busy"
    assert all(r["target_pps"] and r["pps"] > 0 and r["anchored"] for r in reports)
    seq = np.concatenate(seqs)
    assert len(seq) == want and seq[0] == 1 and np.all(np.diff(seq.astype(np.int64)) == 2)
