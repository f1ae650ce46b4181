"""Shared fixtures: a real veth lab per test, scapy-made frames, and the CI rule for XDP tests.

In CI (CI=true) an XDP test that cannot run fails instead of skipping: green must mean the bypass
path really ran.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdpgw.lab import Lab, in_netns

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def xdp_unavailable() -> str:
    """Why the XDP path cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "not root"
    if not Path(f"/lib/modules/{os.uname().release}/build").exists():
        return "no kernel headers for BCC (run scripts/setup.sh)"
    try:
        import bcc  # noqa: F401
        import xdpgw._xsk  # noqa: F401
    except ImportError as exc:
        return f"cannot import bcc / xdpgw._xsk ({exc}); run scripts/setup.sh"
    try:
        s = socket.socket(44, socket.SOCK_RAW)  # AF_XDP
        s.close()
    except OSError as exc:
        return f"AF_XDP sockets unavailable ({exc})"
    return ""


def as_nobody(cmd: list[str]) -> list[str]:
    """``cmd`` run as user nobody, unprivileged except for CAP_DAC_READ_SEARCH, so it can still read
    the checkout wherever it lives (a fresh clone may sit in a 0700 directory)."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search", *cmd]


def require_xdp() -> None:
    why = xdp_unavailable()
    if why:
        if IN_CI:
            pytest.fail(f"XDP test cannot run in CI: {why}")
        pytest.skip(why)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdp"):
            item.fixturenames.insert(0, "_xdp_gate")


@pytest.fixture
def _xdp_gate() -> None:
    require_xdp()


def _fresh_lab(queues: int) -> Iterator[Lab]:
    require_xdp()
    lb = Lab("xt" + secrets.token_hex(3), queues=queues)
    try:
        yield lb.up()
    finally:
        lb.down()


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh one-queue veth lab, always torn down."""
    yield from _fresh_lab(1)


@pytest.fixture
def lab2() -> Iterator[Lab]:
    """A fresh two-queue veth lab, always torn down."""
    yield from _fresh_lab(2)


def rx_mac(lab: Lab) -> str:
    return lab.macs()[1]


def feed_frames(lab: Lab, payloads: list[bytes], dport: int = 9001, sport: int = 40000, v6: bool = False,
                vlan: int | None = None) -> list[bytes]:
    """Ethernet frames built by scapy, from the lab's tx side to its rx side."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    eth = Ether(dst=rx_mac(lab))
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    ip = IPv6(src=lab.tx_ip6, dst=lab.rx_ip6) if v6 else IP(src=lab.tx_ip, dst=lab.rx_ip)
    return [bytes(eth / ip / UDP(sport=sport, dport=dport) / Raw(p)) for p in payloads]


def send_frames(lab: Lab, frames: list[bytes]) -> None:
    """Inject frames on the tx veth through a packet socket (inside the tx namespace)."""
    with in_netns(lab.tx_ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((lab.tx_if, 0))
        for f in frames:
            s.send(f)
    finally:
        s.close()


def kernel_udp_socket(lab: Lab, port: int) -> socket.socket:
    """A plain kernel UDP socket bound in the rx namespace."""
    with in_netns(lab.rx_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.5)
    return s


def drain_socket(s: socket.socket, want: int, timeout: float = 3.0) -> list[bytes]:
    import time

    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            got.append(s.recv(65536))
        except TimeoutError:
            continue
    return got


def xdpgw_cmd(lab_ns: str | None, *args: str) -> list[str]:
    base = [sys.executable, "-m", "xdpgw"] + list(args)
    return (["ip", "netns", "exec", lab_ns] + base) if lab_ns else base


def run_xdpgw(lab_ns: str | None, *args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(xdpgw_cmd(lab_ns, *args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def attached(lab: Lab) -> object:
    from xdpgw.netdev import interface

    with in_netns(lab.rx_ns):
        return interface(lab.rx_if).xdp
