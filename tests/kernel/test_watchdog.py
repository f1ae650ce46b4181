"""`--watchdog-us`: a consumer that hangs without dying (SIGSTOP: no death notice, its socket stays open)
stops stamping its heartbeat, and the XDP program passes its queue's feed to the kernel; once it runs
again the feed is bypassed again. A healthy consumer, spinning or asleep in an idle wait, loses nothing
to the watchdog. Real program, real veth, real packets, a real `xdpgw attach`."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import pytest

from tests.helpers import (
    Samples,
    feed_frames,
    kernel_udp_socket,
    open_receiver,
    send_frames,
    serve,
    value,
    wait_for,
)

pytestmark = pytest.mark.xdp

# Long enough that a consumer merely descheduled on a loaded machine is not taken for hung (a hung one is
# still detected at once); the race this guards against does not depend on the limit.
LIMIT_US = 500_000
HEALTHY = 50  # packets to a healthy consumer, one by one: the old read race passed 15-26% of them as stale


def test_a_hung_consumer_gives_the_feed_back_to_the_kernel_and_takes_it_again(lab):
    got: list[bytes] = []
    sent = [0]

    def send(n: int) -> None:
        """``n`` packets one by one: each finds the consumer spinning (a burst would find it busy draining)."""
        for frame in feed_frames(lab, [b"wd-%06d" % (sent[0] + i + 1) for i in range(n)]):
            send_frames(lab, [frame])
        sent[0] += n

    def bpf(m: Samples, counter: str) -> float:
        return value(m, "xdpgw_bpf_packets_total", counter=counter)

    def accounted(m: Samples) -> float:
        return bpf(m, "redirected") + bpf(m, "stale")

    with contextlib.closing(kernel_udp_socket(lab, 9001)) as sock, \
            serve(lab, "drv", "--watchdog-us", str(LIMIT_US)) as gw:  # killed (even stopped) and detached on failure
        sock.settimeout(0.05)
        # healthy and spinning (it stamps its heartbeat all the time, on another CPU): every packet is bypassed
        send(HEALTHY)
        m = gw.wait_metrics(lambda m: accounted(m) >= HEALTHY, f"{HEALTHY} feed packets bypassed or passed as stale")
        assert bpf(m, "stale") == 0, f"a spinning consumer's feed went to the kernel as stale: {m}"

        gw.signal(signal.SIGSTOP)  # hung, not dying: no death notice, the socket stays open
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            send(1)
            with contextlib.suppress(TimeoutError):
                got.append(sock.recv(2048))
        assert got and got[0].startswith(b"wd-"), "the feed did not reach the kernel after the consumer hung"
        gw.signal(signal.SIGCONT)
        before = bpf(gw.wait_metrics(lambda m: bpf(m, "stale") >= 1, "a stale packet counted"), "redirected")

        def bypassed() -> Samples | None:
            # /metrics (another thread) may answer before the consumer stamps its heartbeat again: a packet
            # sent in between still goes to the kernel, so keep sending until one is redirected
            send(1)
            m = gw.scrape()
            return m if bpf(m, "redirected") > before else None

        m = wait_for(bypassed, 20, "the feed bypassed again after SIGCONT", interval=0.05)
        # taken back for good: every later packet is bypassed
        stale, total = bpf(m, "stale"), accounted(m)
        send(10)
        m = gw.wait_metrics(lambda m: accounted(m) >= total + 10, "10 more feed packets accounted for")
        assert bpf(m, "stale") == stale, f"the resumed consumer's feed still went to the kernel as stale: {m}"
        summary, _ = gw.stop()
    assert summary["drops_bpf"]["stale"] >= 1 and summary["packets"] >= HEALTHY + 11


def test_a_consumer_asleep_in_an_idle_wait_keeps_its_feed(lab):
    """recv_batch(timeout) far longer than the watchdog's limit: the wait wakes often enough to keep the
    heartbeat fresh, so packets sent while it sleeps are bypassed to it, not passed to the kernel."""
    n, gap = 3, 0.3  # each packet comes after the consumer has slept 3 times the limit (100 ms)
    frames = feed_frames(lab, [b"idle-%d" % i for i in range(n)])
    stop = threading.Event()

    def sender() -> None:
        for f in frames:
            if stop.wait(gap):  # paced traffic, not a wait for a condition
                return
            send_frames(lab, [f])

    rx = open_receiver("xdp-drv", lab)
    got: list[bytes] = []
    th = threading.Thread(target=sender, daemon=True)
    try:
        rx.program.set_watchdog(100_000)
        th.start()

        def all_accounted() -> dict | None:
            got.extend(rx.recv_batch(256, timeout=5.0).payloads())
            st = rx.stats()
            return st if st["bpf_redirected"] + st["bpf_stale"] >= n else None

        st = wait_for(all_accounted, 30, f"{n} feed packets bypassed or passed as stale", interval=0)
    finally:
        stop.set()
        th.join(10)
        rx.close()
    assert st["bpf_stale"] == 0, f"an idle consumer's feed went to the kernel as stale: {st}"
    assert got == [b"idle-%d" % i for i in range(n)]
