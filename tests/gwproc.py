"""A real `xdpgw attach|listen` process in a lab, watched through its /metrics endpoint (helpers for the
session-change, held and metrics-scrape tests)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import run_xdpgw, xdpgw_cmd
from xdpgw.lab import Lab, in_netns

METRICS_PORT = 9464  # inside the lab's own network namespace: always free
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def gateway_args(lab: Lab, transport: str, *args: str) -> list[str]:
    """`listen` for the socket transport, `attach --mode drv|skb` for XDP; ``args`` are added."""
    if transport == "socket":
        return ["listen", "--port", "9001", *args]
    return ["attach", lab.rx_if, "--mode", transport, *args]


def scrape(lab: Lab, port: int = METRICS_PORT) -> Samples:
    with in_netns(lab.rx_ns):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def start(lab: Lab, transport: str, *args: str, timeout: float = 30) -> subprocess.Popen:
    """Start the gateway with --metrics-port and --json; returns once /metrics answers (the receivers are
    open by then)."""
    cmd = xdpgw_cmd(lab.rx_ns, *gateway_args(lab, transport, "--quiet", "--json", "--duration", "120",
                                             "--metrics-port", str(METRICS_PORT), *args))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            scrape(lab)
            return proc
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    proc.kill()
    _, err = proc.communicate()
    if transport != "socket":
        run_xdpgw(lab.rx_ns, "detach", lab.rx_if)
    pytest.fail(f"xdpgw {transport} did not come up: {err}")


def wait_for(lab: Lab, cond: Callable[[Samples], bool], timeout: float = 20) -> Samples:
    """Scrape until ``cond(samples)`` holds (the gateway publishes once a second)."""
    deadline = time.monotonic() + timeout
    got: Samples = {}
    while time.monotonic() < deadline:
        got = scrape(lab)
        if cond(got):
            return got
        time.sleep(0.2)
    pytest.fail(f"condition not met within {timeout} s; last scrape: {got}")


def stop(proc: subprocess.Popen) -> tuple[dict, str]:
    """Ctrl-C the gateway; its --json summary and its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return json.loads(out), err


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
