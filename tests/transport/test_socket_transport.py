"""SocketReceiver / SocketSender on loopback, plus multicast inside a throwaway network namespace."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest

from xdpgw.batch import Batch
from xdpgw.errors import GatewayError
from xdpgw.transport.base import Receiver, Sender
from xdpgw.transport.socket import SocketReceiver, SocketSender, _raise_buffer

CLONE_NEWNET = 0x40000000


def make_payloads(n: int, seed: int = 1) -> list[bytes]:
    """Varied sizes 0..1472 (both ends included), each tagged with its sequence number when it fits."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 1473, n)
    sizes[:4] = [0, 1472, 1, 4]
    out = []
    for i, size in enumerate(sizes):
        body = rng.integers(0, 256, int(size), dtype=np.uint8).tobytes()
        tag = i.to_bytes(4, "little")
        out.append((tag + body[4:]) if size >= 4 else body)
    return out


def drain(rx: SocketReceiver, want: int, timeout: float = 2.0) -> list[Batch]:
    got, deadline = [], time.monotonic() + timeout
    while sum(b.count for b in got) < want and time.monotonic() < deadline:
        b = rx.recv_batch(256, timeout=0.2)
        if b.count:
            got.append(b.copy())
    return got


def roundtrip(rx: SocketReceiver, tx: SocketSender, payloads: list[bytes], chunk: int = 500) -> list[Batch]:
    got = []
    for i in range(0, len(payloads), chunk):
        part = payloads[i : i + chunk]
        assert tx.send_batch(Batch.from_payloads(part)) == len(part)
        got += drain(rx, len(part))
    return got


@pytest.fixture
def pair() -> Iterator[tuple[SocketReceiver, SocketSender]]:
    with SocketReceiver(0, "127.0.0.1") as rx, SocketSender("127.0.0.1", rx.port) as tx:
        yield rx, tx


def test_protocols_and_describe(pair: tuple[SocketReceiver, SocketSender]) -> None:
    rx, tx = pair
    assert isinstance(rx, Receiver) and isinstance(tx, Sender)
    d = rx.describe()
    assert d["transport"] == "socket" and d["mode"] == "kernel" and d["queue"] is None
    assert d["port"] == rx.port > 0 and d["group"] is None and d["iface"] == ""
    assert d["rcvbuf"] >= 1 << 16 and isinstance(d["busy_poll"], bool)


def test_ten_thousand_varied_datagrams_arrive_identical_in_order_once(
    pair: tuple[SocketReceiver, SocketSender],
) -> None:
    rx, tx = pair
    payloads = make_payloads(10_000)
    got = roundtrip(rx, tx, payloads)
    received = [p for b in got for p in b.payloads()]
    assert received == payloads
    assert rx.recv_batch(256, timeout=0.02).count == 0  # nothing extra
    st = rx.stats()
    total = sum(map(len, payloads))
    assert st["packets"] == 10_000 and st["bytes"] == total
    assert st["drops"] == 0 and st["truncated"] == 0 and 0 < st["bursts"] <= 10_000
    assert tx.stats() == {"packets": 10_000, "bytes": total, "errors": 0, "refused": 0, "short": 0}


def test_kernel_drops_are_counted_when_the_buffer_overflows() -> None:
    with SocketReceiver(0, "127.0.0.1", rcvbuf=4096) as rx, SocketSender("127.0.0.1", rx.port) as tx:
        assert tx.send_batch(Batch.from_payloads([b"z" * 1000] * 1000)) == 1000  # nobody reads meanwhile
        received = sum(b.count for b in drain(rx, 1000, timeout=0.3))
        st = rx.stats()
        assert 0 < received < 1000 and st["drops"] > 0
        assert received + st["drops"] == 1000  # loopback: every datagram is either queued or dropped


def test_timestamps_are_monotonic_clock(pair: tuple[SocketReceiver, SocketSender]) -> None:
    rx, tx = pair
    before = time.monotonic_ns()
    tx.send_batch(Batch.from_payloads([b"x" * i for i in range(100)]))
    got = drain(rx, 100)
    after = time.monotonic_ns()
    ts = np.concatenate([b.ts_ns for b in got])
    assert len(ts) == 100 and (ts > 0).all()
    assert (ts >= before - 1_000_000).all() and (ts <= after + 1_000_000).all()
    assert abs(int(ts[-1]) - time.monotonic_ns()) < 1_000_000_000
    assert (np.diff(ts.astype(np.int64)) >= 0).all()


def test_batch_is_a_view_limited_by_max_packets(pair: tuple[SocketReceiver, SocketSender]) -> None:
    rx, tx = pair
    tx.send_batch(Batch.from_payloads([bytes([i]) * 10 for i in range(20)]))
    b = rx.recv_batch(8, timeout=1.0)
    assert b.count == 8 and b.payloads() == [bytes([i]) * 10 for i in range(8)]
    rest = drain(rx, 12)
    assert [p for x in rest for p in x.payloads()] == [bytes([i]) * 10 for i in range(8, 20)]


def test_truncated_datagrams_are_counted_and_left_out() -> None:
    with SocketReceiver(0, "127.0.0.1", slot=64, batch=16) as rx, SocketSender("127.0.0.1", rx.port) as tx:
        tx.send_batch(Batch.from_payloads([b"a" * 10, b"b" * 65, b"c" * 64, b"d" * 1000, b""]))
        got = drain(rx, 3)
        assert [p for b in got for p in b.payloads()] == [b"a" * 10, b"c" * 64, b""]
        assert rx.stats()["truncated"] == 2 and rx.stats()["packets"] == 3


def test_oversized_datagram_is_dropped_and_counted_by_sender(pair: tuple[SocketReceiver, SocketSender]) -> None:
    rx, tx = pair
    assert tx.send_batch(Batch.from_payloads([b"ok1", b"x" * 70_000, b"ok2"])) == 3
    assert tx.stats()["errors"] == 1 and tx.stats()["packets"] == 2
    assert [p for b in drain(rx, 2) for p in b.payloads()] == [b"ok1", b"ok2"]


def test_sender_rejects_batch_pointing_outside_its_buffer(pair: tuple[SocketReceiver, SocketSender]) -> None:
    _, tx = pair
    bad = Batch(np.zeros(10, np.uint8), np.array([5], np.int64), np.array([6], np.uint32), np.zeros(1, np.uint64))
    with pytest.raises(GatewayError, match="outside"):
        tx.send_batch(bad)
    assert tx.send_batch(Batch.empty()) == 0


def test_timeout_waits_then_returns_empty() -> None:
    with SocketReceiver(0, "127.0.0.1") as rx:
        assert rx.recv_batch(256, timeout=0).count == 0  # returns at once (pytest-timeout catches a hang)
        t0 = time.monotonic()
        assert rx.recv_batch(256, timeout=0.1).count == 0
        assert time.monotonic() - t0 >= 0.1  # it waited the timeout (a lower bound: load cannot break it)


def test_port_taken_says_how_to_find_the_owner() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as owner:
        owner.bind(("0.0.0.0", 0))
        port = owner.getsockname()[1]
        with pytest.raises(GatewayError) as ei:
            SocketReceiver(port)
    msg = str(ei.value)
    assert f"UDP port {port}" in msg and "already in use" in msg and f"ss -ulpn 'sport = :{port}'" in msg


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(GatewayError, match="multicast"):
        SocketReceiver(0, group="10.0.0.1")
    with pytest.raises(GatewayError, match="batch"):
        SocketReceiver(0, batch=5000)
    with pytest.raises(GatewayError, match="ip -br link"):
        SocketReceiver(0, group="239.1.2.3", iface="xgw-no-such-if")


def test_context_manager_closes_the_socket() -> None:
    with SocketReceiver(0, "127.0.0.1") as rx, SocketSender("127.0.0.1", rx.port) as tx:
        fds = [rx.fileno(), tx.fileno()]
        for fd in fds:
            os.fstat(fd)
    assert rx.fileno() == -1 and tx.fileno() == -1
    for fd in fds:  # nothing else opens files in between, so the numbers are not reused yet
        with pytest.raises(OSError):
            os.fstat(fd)
    with pytest.raises(GatewayError, match="closed"):
        rx.recv_batch()
    with pytest.raises(GatewayError, match="closed"):
        tx.send_batch(Batch.from_payloads([b"x"]))
    assert rx.stats()["packets"] == 0  # still readable after close
    rx.close()  # idempotent


def test_capped_buffer_warns_with_the_sysctl_to_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    class CappedSocket:  # SO_RCVBUFFORCE refused (no CAP_NET_ADMIN), SO_RCVBUF capped by rmem_max
        def setsockopt(self, level: int, opt: int, value: int) -> None:
            if opt != socket.SO_RCVBUF:
                raise PermissionError(1, "Operation not permitted")

        def getsockopt(self, level: int, opt: int) -> int:
            return 425_984

    monkeypatch.setattr("xdpgw.transport.socket._warned", set())
    with pytest.warns(RuntimeWarning, match=r"sysctl -w net.core.rmem_max=67108864"):
        assert _raise_buffer(CappedSocket(), "rcv", 64 << 20) == 425_984  # type: ignore[arg-type]


# --- multicast inside a fresh network namespace ---------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    name = f"xgwt-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up", "multicast", "on"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run this thread in netns ``name``; sockets made here stay there after we switch back."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original namespace")
    finally:
        os.close(home)
        os.close(target)


def test_multicast_on_lo_in_a_fresh_namespace(netns: str) -> None:
    group = "239.17.1.1"
    with inside(netns):
        rx = SocketReceiver(0, group=group, iface="lo")
        other = SocketReceiver(rx.port, group="239.17.1.2", iface="lo")  # same port, other group
        tx = SocketSender(group, rx.port, iface="lo", ttl=1, loopback=True)
    with rx, other, tx:
        assert rx.describe()["group"] == group and rx.describe()["iface"] == "lo"
        payloads = make_payloads(2000, seed=7)
        got = roundtrip(rx, tx, payloads)
        assert [p for b in got for p in b.payloads()] == payloads
        assert rx.recv_batch(256, timeout=0.05).count == 0  # exactly once
        assert other.recv_batch(256, timeout=0.05).count == 0  # bound to its group: sees nothing
        assert rx.stats()["drops"] == 0


def test_batches_carry_the_port_and_no_headers_from_arrays_made_once(pair: tuple[SocketReceiver, SocketSender]) -> None:
    rx, tx = pair
    got: list[Batch] = []
    for want in (3, 6):
        assert tx.send_batch(Batch.from_payloads([b"a", b"bc", b"def"])) == 3
        deadline = time.monotonic() + 2.0
        while sum(b.count for b in got) < want and time.monotonic() < deadline:
            b = rx.recv_batch(256, timeout=0.2)
            if b.count:
                assert (b.dports[: b.count] == rx.port).all() and (b.header_lengths[: b.count] == 0).all()
                got.append(b)
    assert sum(b.count for b in got) == 6 and len(got) >= 2
    assert all(b.dports is got[0].dports and b.header_lengths is got[0].header_lengths for b in got)  # no copies


def test_ipv6_receiver_and_sendto_from_its_own_port() -> None:
    """What the retransmission client relies on: a request leaves from the receiver's port, the answer
    comes back to it and arrives in a burst."""
    with SocketReceiver(0, "::1") as rx, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
        peer.bind(("::1", 0))
        peer.settimeout(2.0)
        rx.sendto(b"request", peer.getsockname())
        data, addr = peer.recvfrom(100)
        assert data == b"request" and addr[1] == rx.port
        peer.sendto(b"answer", addr)
        assert [p for b in drain(rx, 1) for p in b.payloads()] == [b"answer"]
