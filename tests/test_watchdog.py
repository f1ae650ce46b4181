"""`--watchdog-us`: a consumer that hangs without dying (SIGSTOP: no death notice, its socket stays open)
stops stamping its heartbeat, and the XDP program passes its queue's feed to the kernel; once it runs
again the feed is bypassed again. Real program, real veth, real packets, a real `xdpgw attach`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from tests.conftest import feed_frames, kernel_udp_socket, run_xdpgw, send_frames
from tests.test_cli import start_attach

pytestmark = pytest.mark.xdp


def bpf_counters(lab) -> dict:
    return json.loads(run_xdpgw(lab.rx_ns, "status", lab.rx_if, "--json").stdout)["bpf_counters"]


def until(what: str, cond, timeout: float = 20.0, every=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if every is not None:
            every()
        if cond():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout} s")


def test_a_hung_consumer_gives_the_feed_back_to_the_kernel_and_takes_it_again(lab):
    sock = kernel_udp_socket(lab, 9001)
    sock.settimeout(0.05)
    proc = start_attach(lab, "--mode", "drv", "--watchdog-us", "100000", "--json")
    got: list[bytes] = []
    n = [0]

    def send_one() -> None:
        n[0] += 1
        send_frames(lab, feed_frames(lab, [b"wd-%06d" % n[0]]))

    def kernel_got() -> bool:
        with contextlib.suppress(TimeoutError):
            got.append(sock.recv(2048))
        return bool(got)

    try:
        os.kill(proc.pid, signal.SIGSTOP)  # hung, not dying: no death notice, the socket stays open
        until("the feed did not reach the kernel after the consumer hung", kernel_got, every=send_one)
        assert got[0].startswith(b"wd-") and bpf_counters(lab)["stale"] >= 1
        os.kill(proc.pid, signal.SIGCONT)
        redirected = bpf_counters(lab)["redirected"]
        until("the feed was not bypassed again once the consumer ran",
              lambda: bpf_counters(lab)["redirected"] > redirected, every=send_one)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        sock.close()
    assert proc.returncode == 0, err
    assert json.loads(out)["packets"] >= 1
