"""xdpgw.ops.doctor against this machine's real state (and a veth inside a namespace the test creates)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, as_nobody, require, wait_for
from xdpgw.ops import doctor
from xdpgw.ops.doctor import Check, checks_to_json, exit_status, format_checks, run_checks
from xdpgw.pipeline.assembly import open_receivers
from xdpgw.pipeline.options import DEFAULTS
from xdpgw.tools.lab import in_netns

STATUSES = {"ok", "warn", "fail", "info"}
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bpf, AF_XDP, namespaces)")


def physical_iface() -> str | None:
    for name in sorted(os.listdir("/sys/class/net")):
        if os.path.islink(f"/sys/class/net/{name}/device/driver"):
            return name
    return None


def test_machine_checks_are_well_formed() -> None:
    checks = run_checks(None)
    names = [c.name for c in checks]
    for want in ("kernel", "bpf", "af_xdp", "btf", "bpffs", "kernel headers", "net.core.rmem_max",
                 "net.core.wmem_max", "hugepages", "thp", "cpu governor", "memlock", "busy poll"):
        assert want in names
    for c in checks:
        assert c.status in STATUSES
        assert c.detail
        if c.status in ("warn", "fail"):
            assert c.fix, f"{c.name} must say how to fix it"
        if c.status == "ok":
            assert c.fix == ""
    assert "driver" not in names  # no interface given
    assert next(c for c in checks if c.name == "kernel").detail.startswith(os.uname().release)


@root_only
def test_bpf_and_af_xdp_probes_work_as_root() -> None:
    by = {c.name: c for c in run_checks(None)}
    assert by["bpf"].status == "ok" and by["af_xdp"].status == "ok"
    assert by["memlock"].status == "ok" and "CAP_IPC_LOCK" in by["memlock"].detail


def test_values_match_proc() -> None:
    by = {c.name: c for c in run_checks(None)}
    rmem = int(Path("/proc/sys/net/core/rmem_max").read_text())
    assert by["net.core.rmem_max"].detail.startswith(str(rmem))
    assert by["net.core.rmem_max"].status == ("ok" if rmem >= 64 << 20 else "warn")
    if by["net.core.rmem_max"].status == "warn":
        assert by["net.core.rmem_max"].fix.startswith("sysctl -w net.core.rmem_max=67108864")
    total = re.search(r"HugePages_Total:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)
    assert by["hugepages"].detail.startswith(f"{total} x ")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists():
        mode = re.search(r"\[(\w+)\]", thp.read_text()).group(1)
        assert mode in by["thp"].detail
    has_cpufreq = any(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor"))
    assert (by["cpu governor"].status == "info") == (not has_cpufreq)


def test_missing_iface_fails_with_fix() -> None:
    checks = run_checks("nosuch9")
    bad = next(c for c in checks if c.name == "iface")
    assert bad.status == "fail" and bad.fix == "ip -br link"
    assert "driver" not in [c.name for c in checks]
    assert exit_status(checks) == 1


@pytest.mark.ci_may_skip("a CI container may have no NIC with a device driver (veths are covered below)")
def test_real_nic_driver_and_queues() -> None:
    iface = physical_iface()
    require(iface is not None, "no interface with a device driver here")
    by = {c.name: c for c in run_checks(iface, port=26400)}
    drv = os.path.basename(os.readlink(f"/sys/class/net/{iface}/device/driver"))
    # sysfs names the bus driver (virtio_net binds as virtio_net; PCI NICs as e.g. mlx5_core)
    if drv in doctor.DRIVERS:
        assert f"{iface}: {drv} (known-driver table)" in by["driver"].detail, by["driver"]
    else:
        assert f"driver {drv!r} not in xdpgw's known-driver table" in by["driver"].detail, by["driver"]
    nq = len(list(Path(f"/sys/class/net/{iface}/queues").glob("rx-*")))
    assert re.search(rf"\b{nq} rx (channel|queue)", by["queues"].detail)
    assert "flow steering" in by and "irq affinity" in by
    if nq > 1 and by["flow steering"].status == "warn":
        assert "ethtool" in by["flow steering"].fix


@pytest.mark.xdp
def test_veth_in_private_namespace(lab) -> None:
    """The doctor run inside the lab's rx namespace, on its veth, with the peer taken down."""
    subprocess.run(["ip", "-n", lab.tx_ns, "link", "set", lab.tx_if, "down"], check=True)
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from xdpgw.ops import doctor; "
            f"checks = doctor.run_checks({lab.rx_if!r}, port=26400); "
            "print(json.dumps({c.name: [c.status, c.detail, c.fix] for c in checks}))")
    p = subprocess.run(["ip", "netns", "exec", lab.rx_ns, sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    by = json.loads(p.stdout)
    assert by["driver"][0] == "ok"
    assert "veth (known-driver table): native XDP yes, zero-copy no" in by["driver"][1]
    assert "XDP attached: none" in by["driver"][1]
    assert by["mtu"][0] == "ok" and "MTU 1500" in by["mtu"][1]
    assert by["irq affinity"][0] == "info" and "no IRQs" in by["irq affinity"][1]
    # the rx end is up but its peer is down: no carrier, operstate DOWN; the doctor warns and says what to do
    assert by["iface"][0] == "warn" and by["iface"][1].endswith("state DOWN"), by["iface"]
    assert by["iface"][2] == f"ip link set dev {lab.rx_if} up"


@root_only
def test_memlock_unprivileged_user_fails_with_fix() -> None:
    code = (f"import sys, json, resource; sys.path.insert(0, {str(ROOT)!r}); from xdpgw.ops import doctor; "
            "resource.setrlimit(resource.RLIMIT_MEMLOCK, (8 << 20, 8 << 20)); "
            "c = doctor.check_memlock(16 << 20); print(json.dumps([c.status, c.detail, c.fix]))")
    p = subprocess.run(as_nobody([sys.executable, "-c", code]), capture_output=True, text=True, timeout=20, cwd="/")
    assert p.returncode == 0, p.stderr
    status, detail, fix = json.loads(p.stdout)
    assert status == "fail" and "8192 KiB < UMEM 16 MiB" in detail and "ENOBUFS" in detail
    assert fix.startswith("ulimit -l unlimited")


def test_format_and_json() -> None:
    checks = [Check("kernel", "ok", "6.1"), Check("net.core.rmem_max", "warn", "4 MiB", "sysctl -w x=1")]
    lines = format_checks(checks).splitlines()
    assert lines == ["[ok  ] kernel             6.1",
                     "[warn] net.core.rmem_max  4 MiB  -> fix: sysctl -w x=1"]
    assert json.loads(checks_to_json(checks))[1] == {"name": "net.core.rmem_max", "status": "warn",
                                                     "detail": "4 MiB", "fix": "sysctl -w x=1"}
    assert exit_status(checks) == 0


def test_crashing_check_becomes_a_warning() -> None:
    def boom() -> Check:
        raise RuntimeError("no /proc")

    (c,) = doctor._guard("thing", boom)
    assert c.status == "warn" and "RuntimeError: no /proc" in c.detail and c.fix


@pytest.mark.xdp
def test_the_mtu_check_is_the_room_the_receivers_frames_really_have(lab):
    """With MTU 3000 on the lab, a frame of ``max_frame`` bytes reaches the AF_XDP socket `xdpgw attach`
    opens and one byte more is dropped by the kernel (XDP_STATISTICS rx_dropped); the doctor warns."""
    room = DEFAULTS.receiver.max_frame
    for ns, ifc in ((lab.tx_ns, lab.tx_if), (lab.rx_ns, lab.rx_if)):
        subprocess.run(["ip", "-n", ns, "link", "set", ifc, "mtu", "3000"], check=True)
    with in_netns(lab.rx_ns):
        mtu = doctor.check_mtu(lab.rx_if)
        (rx,) = open_receivers(DEFAULTS.with_(receiver={"iface": lab.rx_if}))
    assert mtu.status == "warn" and f"MTU 3000 too big: frames up to {room} bytes" in mtu.detail, mtu
    with in_netns(lab.tx_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got: list[int] = []

    def both_seen() -> bool:
        batch = rx.recv_batch(16)
        got.extend(batch.lengths[: batch.count].tolist())
        return bool(got) and rx.stats()["xdp_rx_dropped"] >= 1

    with rx, tx:
        for frame in (room, room + 1):  # Ethernet 14 + IPv4 20 + UDP 8 bytes of headers
            tx.sendto(b"x" * (frame - 42), (lab.rx_ip, 9001))
        wait_for(both_seen, what=lambda: f"one frame received and one dropped (got {got}, {rx.stats()})")
        assert got == [room - 42] and rx.stats()["xdp_rx_dropped"] == 1
