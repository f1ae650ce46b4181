"""The other `xdpgw` commands as users run them: status without an interface, detach --any, lab up/down,
doctor, blast; the pinned maps; the queue workers' start-up timeout; a short bounded soak."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest
from pyroute2 import netns

from tests.helpers import (
    ROOT,
    attached,
    collect,
    open_receiver,
    run_xdpgw,
    wait_gone,
)
from xdpgw.errors import GatewayError
from xdpgw.tools.lab import Lab, in_netns


def foreign_program(lab: Lab):
    """A minimal XDP program that is not ours, attached in skb mode to the lab's rx veth."""
    from bcc import BPF

    with in_netns(lab.rx_ns):
        other = BPF(text=b"int someone_else(struct xdp_md *ctx) { return XDP_PASS; }")
        BPF.attach_xdp(lab.rx_if.encode(), other.load_func(b"someone_else", BPF.XDP), 1 << 1)
    return other


@pytest.mark.xdp
def test_status_without_an_interface_lists_every_attached_one_and_detach_any_removes_a_foreign_one(lab):
    none = run_xdpgw(lab.rx_ns, "status")
    assert none.returncode == 0 and none.stdout.strip() == "no XDP programs attached in this network namespace"
    assert json.loads(run_xdpgw(lab.rx_ns, "status", "--json").stdout) == []
    other = foreign_program(lab)
    try:
        text = run_xdpgw(lab.rx_ns, "status")
        assert text.stdout.startswith(f"{lab.rx_if}: FOREIGN (someone_else) program id "), text.stdout
        rows = json.loads(run_xdpgw(lab.rx_ns, "status", "--json").stdout)
        assert [(r["iface"], r["attached"], r["ours"], r["prog_name"]) for r in rows] == [
            (lab.rx_if, True, False, "someone_else")]
        res = run_xdpgw(lab.rx_ns, "detach", lab.rx_if, "--any")
        assert res.returncode == 0 and f"{lab.rx_if}: detached xdpgw program id" in res.stdout, res
        assert attached(lab) is None
    finally:
        if attached(lab) is not None:
            with in_netns(lab.rx_ns):
                other.remove_xdp(lab.rx_if.encode(), 1 << 1)
        other.cleanup()
    assert run_xdpgw(lab.rx_ns, "status").stdout.strip() == "no XDP programs attached in this network namespace"


@pytest.mark.xdp
def test_status_without_an_interface_shows_a_running_gateway(lab):
    from xdpgw.transport.xdp.rx import XdpReceiver

    with in_netns(lab.rx_ns):
        rx = XdpReceiver(lab.rx_if, 0, [9001], mode="skb")
    with rx:
        rows = json.loads(run_xdpgw(lab.rx_ns, "status", "--json").stdout)
        assert [(r["iface"], r["ours"], r["mode"]) for r in rows] == [(lab.rx_if, True, "skb")]
        assert f"{lab.rx_if}: xdpgw program id" in run_xdpgw(lab.rx_ns, "status").stdout


def test_lab_up_and_down_commands():
    from xdpgw.kernel.netdev import interface

    name = "xl" + secrets.token_hex(3)
    lab = Lab(name, queues=3)
    try:
        up = run_xdpgw(None, "lab", "up", "--name", name, "--queues", "3")
        assert up.returncode == 0, up.stderr
        assert f"{lab.tx_ns}/{lab.tx_if} 10.77.0.1 <-> {lab.rx_ns}/{lab.rx_if} 10.77.0.2 (3 queues)" in up.stdout
        assert lab.exists()
        with in_netns(lab.rx_ns):
            assert interface(lab.rx_if).rx_queues == 3
        ping = subprocess.run(["ip", "netns", "exec", lab.tx_ns, "ping", "-c", "1", "-W", "5", lab.rx_ip],
                              capture_output=True, text=True, timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        again = run_xdpgw(None, "lab", "up", "--name", name, "--queues", "3")  # idempotent: its maker is gone
        assert again.returncode == 0, again.stderr
        down = run_xdpgw(None, "lab", "down", "--name", name)
        assert down.returncode == 0 and down.stdout.strip() == "lab down"
        assert not {lab.tx_ns, lab.rx_ns} & set(netns.listnetns())
    finally:
        lab.down()


def test_a_lab_in_use_by_a_running_process_is_not_torn_down_by_another():
    """Two programs that happen to pick one name: the second gets a clear error, the first keeps its lab."""
    lab = Lab("xl" + secrets.token_hex(3), queues=1)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom xdpgw.tools.lab import Lab\n"
                               f"Lab({lab.name!r}, queues=1).up()\nprint('up', flush=True)\ntime.sleep(120)"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline() == "up\n"
        with pytest.raises(GatewayError, match=f"in use by pid {holder.pid}") as e:
            Lab(lab.name, queues=1).up()
        assert f"xdpgw lab down --name {lab.name}" in e.value.fix
        assert lab.exists()
        res = run_xdpgw(None, "lab", "up", "--name", lab.name)
        assert res.returncode == 2 and f"in use by pid {holder.pid}" in res.stderr
        assert lab.exists()
    finally:
        holder.kill()
        holder.wait(10)
        lab.down()
    assert not lab.exists()


def test_lab_unique_names_differ_and_fit():
    names = {Lab.unique("xgb").name for _ in range(20)}
    assert len(names) == 20 and all(len(Lab(n).tx_if) <= 15 for n in names)


def test_doctor_command_reports_every_check_with_its_fix_and_the_exit_status():
    from xdpgw.ops.doctor import Check, exit_status

    p = run_xdpgw(None, "doctor", "--json")
    checks = json.loads(p.stdout)
    assert p.returncode == exit_status([Check(**c) for c in checks]), (p.returncode, checks)
    assert {"kernel", "bpf", "af_xdp", "btf", "bpffs", "memlock"} <= {c["name"] for c in checks}
    assert all(c["fix"] for c in checks if c["status"] in ("warn", "fail"))
    text = run_xdpgw(None, "doctor")
    assert text.returncode == p.returncode and all(line.startswith("[") for line in text.stdout.splitlines())
    bad = run_xdpgw(None, "doctor", "nosuch9")
    assert bad.returncode == 1 and "no interface 'nosuch9'" in bad.stdout and "-> fix: ip -br link" in bad.stdout


@pytest.mark.xdp
def test_doctor_command_on_a_lab_veth(lab):
    p = run_xdpgw(lab.rx_ns, "doctor", lab.rx_if, "--port", "9001", "--json")
    by = {c["name"]: c for c in json.loads(p.stdout)}
    assert by["driver"]["status"] == "ok" and "veth (known-driver table)" in by["driver"]["detail"], by["driver"]
    assert by["iface"]["status"] == "ok" and "state UP" in by["iface"]["detail"], by["iface"]


@pytest.mark.xdp
def test_blast_command_sends_gap_free_frames_into_an_xdp_receiver(lab):
    n, m = 5000, 2
    with open_receiver("xdp-drv", lab, frames=16384, rx_size=8192) as rx:
        p = run_xdpgw(lab.tx_ns, "blast", "--iface", lab.tx_if, "--dest", f"{lab.rx_ip}:9001", "--packets", str(n),
                      "--msgs-per-packet", str(m), "--first-seq", "100", "--json")
        assert p.returncode == 0, p.stderr[-2000:]
        report = json.loads(p.stdout)
        got, _ = collect(rx, n, timeout=10)
    assert report["packets"] == n and report["first_seq"] == 100 and report["next_seq"] == 100 + n * m, report
    from xdpgw.protocol.decode import decode_payloads

    dec = decode_payloads(got)
    assert not dec.errors and len(got) == n
    assert [int(s) for s in dec.pkt_seq] == list(range(100, 100 + n * m, m))


def test_blast_command_errors_are_one_line():
    p = run_xdpgw(None, "blast", "--iface", "lo", "--dest", "10.0.0.1:9001", "--packets", "0")
    assert p.returncode == 2 and "--packets 0 is not positive" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.xdp
def test_pinned_maps_are_the_programs_own_and_go_with_it(lab):
    """Maps pinned under /sys/fs/bpf/xdpgw/<iface>: another process opening a pin reads the live counters."""
    from xdpgw._native._bpfobj import lib

    from tests.helpers import feed_frames, send_frames
    from xdpgw.kernel.maps import sum_counters
    from xdpgw.kernel.pins import PINNED_MAPS, pin_dir
    from xdpgw.transport.xdp.rx import XdpReceiver

    with in_netns(lab.rx_ns):
        rx = XdpReceiver(lab.rx_if, 0, [9001], mode="drv")
        pins = pin_dir(lab.rx_if)
    with rx:
        assert sorted(p.name for p in pins.iterdir()) == sorted(PINNED_MAPS)
        send_frames(lab, feed_frames(lab, [b"pinned"] * 7))
        assert collect(rx, 7)[0] == [b"pinned"] * 7
        fd = lib.xgw_obj_get(str(pins / "counters").encode())
        assert fd >= 0, os.strerror(-fd)
        try:
            assert sum_counters(fd, 1)[0] == rx.program.counters()[0]
            assert sum_counters(fd, 1)[0]["redirected"] == 7
        finally:
            lib.xgw_close_fd(fd)
    assert not pins.exists(), "pins outlived the program"


def test_a_queue_worker_that_never_starts_times_out_and_nothing_is_left():
    """QueueWorkers.start(): queue 0 comes up, queue 1 hangs in its set-up: one error naming it, and stop()
    ends both (the hung one by SIGKILL after stop_timeout)."""
    from xdpgw.pipeline.gateway import Gateway
    from xdpgw.pipeline.workers import QueueWorkers
    from xdpgw.transport.socket import SocketReceiver

    def consumer(queue: int, stack):
        if queue == 1:
            time.sleep(3600)
        return Gateway([stack.enter_context(SocketReceiver(0, "127.0.0.1"))], status=None)

    pool = QueueWorkers([0, 1], consumer, start_timeout=2.0, stop_timeout=1.0)
    try:
        with pytest.raises(GatewayError, match=r"the consumer of queue 1 \(pid \d+\) did not start within 2 s") as e:
            pool.start()
        assert "xdpgw doctor" in e.value.fix
        pids = pool.pids()
        assert len(pids) == 2
    finally:
        pool.stop()
    assert wait_gone(pids.values(), timeout=10) == []


@pytest.mark.xdp
def test_soak_script_short_bounded_run_loses_nothing():
    lab = Lab.unique("xs", queues=1)
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--packets", "20000", "--rate", "20000",
                        "--malformed-ratio", "0.01", "--lab", lab.name], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    try:
        assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
        assert not lab.exists(), "the soak left its lab behind"
    finally:
        lab.down()
    summary, _ = json.JSONDecoder().raw_decode(p.stdout)  # the JSON report, then a one-line verdict
    assert summary["verdict"] == "PASS: zero valid messages lost" and summary["lost_messages"] == 0, summary
    assert summary["valid_messages_delivered"] == summary["valid_messages_sent"] > 0
    assert summary["sender"]["hostile_packets"] > 0 and sum(summary["handler"]["decode_errors"].values()) > 0
