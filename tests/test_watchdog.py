"""`--watchdog-us`: a consumer that hangs without dying (SIGSTOP: no death notice, its socket stays open)
stops stamping its heartbeat, and the XDP program passes its queue's feed to the kernel; once it runs
again the feed is bypassed again. Real program, real veth, real packets, a real `xdpgw attach`."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from tests import gwproc
from tests.helpers import feed_frames, kernel_udp_socket, send_frames

pytestmark = pytest.mark.xdp


def test_a_hung_consumer_gives_the_feed_back_to_the_kernel_and_takes_it_again(lab):
    sock = kernel_udp_socket(lab, 9001)
    sock.settimeout(0.05)
    proc = gwproc.start(lab, "drv", "--watchdog-us", "100000")
    got: list[bytes] = []
    sent = [0]

    def send_one() -> None:
        sent[0] += 1
        send_frames(lab, feed_frames(lab, [b"wd-%06d" % sent[0]]))

    def bpf(m: gwproc.Samples, counter: str) -> float:
        return gwproc.value(m, "xdpgw_bpf_packets_total", counter=counter)

    try:
        os.kill(proc.pid, signal.SIGSTOP)  # hung, not dying: no death notice, the socket stays open
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            send_one()
            with contextlib.suppress(TimeoutError):
                got.append(sock.recv(2048))
        assert got and got[0].startswith(b"wd-"), "the feed did not reach the kernel after the consumer hung"
        os.kill(proc.pid, signal.SIGCONT)
        before = bpf(gwproc.wait_for(lab, lambda m: bpf(m, "stale") >= 1), "redirected")
        send_one()
        gwproc.wait_for(lab, lambda m: bpf(m, "redirected") > before)  # bypassed again
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        summary, _ = gwproc.stop(proc)
        sock.close()
    assert summary["drops_bpf"]["stale"] >= 1 and summary["packets"] >= 1
