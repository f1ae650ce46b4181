"""The `xdpgw` command as users run it: errors, crash safety, status/detach from another process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import (
    METRICS_PORT,
    Xdpgw,
    as_nobody,
    attach,
    attached,
    drain_socket,
    feed_frames,
    kernel_udp_socket,
    one_line_error,
    run_xdpgw,
    send_frames,
    summary_of,
    value,
)
from xdpgw.tools.lab import in_netns

pytestmark = pytest.mark.xdp


def test_attach_decodes_the_feed_and_reports_json(lab):
    from xdpgw.protocol import encode_message, encode_packet

    msgs = [encode_message("S", event_code=b"O")] + [
        encode_message("A", order_ref=i, side=b"B", shares=100, stock=b"AAPL", price=1_000_000) for i in range(9)
    ]
    packets = [encode_packet("SESSION001", 1 + 5 * k, msgs[5 * k: 5 * k + 5]) for k in range(2)]
    with attach(lab, "--protocol", "moldudp64", "--count", "3", "--duration", "60", "--json", "--mode", "skb") as gw:
        send_frames(lab, feed_frames(lab, packets + [b"\x00" * 7]))  # two good packets, one too short
        summary = summary_of(gw)
    for key in ("transport", "mode", "iface", "queue", "port", "packets", "bytes", "drops", "duration_s"):
        assert key in summary
    assert (summary["transport"], summary["mode"], summary["iface"], summary["queue"], summary["port"]) == (
        "xdp", "skb", lab.rx_if, 0, 9001)
    assert summary["packets"] == 3
    assert summary["messages"] == 10 and summary["messages_by_type"] == {"S": 1, "A": 9}
    assert summary["decode_errors"].get("short_packet") == 1
    assert summary["drops_bpf"]["redirected"] == 3
    assert "rx_dropped" in " ".join(summary["drops_kernel"])
    assert attached(lab) is None


def test_kill_9_leaves_the_feed_flowing_to_the_kernel_and_restart_reattaches(lab):
    with attach(lab) as gw:
        prog = attached(lab)
        assert prog is not None and prog.name == "xdpgw_rx"
        os.kill(gw.pid, signal.SIGKILL)
        gw.proc.wait(20)
        with kernel_udp_socket(lab, 9001) as s:
            send_frames(lab, feed_frames(lab, [b"after-crash-%d" % i for i in range(100)]))
            assert drain_socket(s, 100) == [b"after-crash-%d" % i for i in range(100)], "feed black-holed"
        st = json.loads(run_xdpgw(lab.rx_ns, "status", lab.rx_if, "--json").stdout)
        assert st["attached"] and st["ours"] and not st["consumer"]["consumer_alive"]
        assert st["bpf_counters"]["no_socket"] == 100
        # A restart replaces the stale program cleanly and bypasses again.
        with attach(lab, "--count", "5", "--duration", "60", "--json") as gw2:
            send_frames(lab, feed_frames(lab, [b"again"] * 5))
            assert summary_of(gw2)["packets"] == 5
    assert attached(lab) is None


def test_sigterm_detaches(lab):
    with attach(lab) as gw:
        gw.signal(signal.SIGTERM)
        rc, _, err = gw.finish()
        assert rc == 128 + signal.SIGTERM, err
        assert attached(lab) is None


def test_status_and_detach_from_another_process(lab):
    with attach(lab, "--port", "9001", "--port", "9005") as gw:
        send_frames(lab, feed_frames(lab, [b"x"] * 10))
        gw.wait_stats(lambda st: st["0"]["packets"] == 10, "the consumer to publish 10 packets")
        text = run_xdpgw(lab.rx_ns, "status", lab.rx_if)
        assert "xdpgw program id" in text.stdout and "running" in text.stdout, text.stdout + text.stderr
        st = json.loads(run_xdpgw(lab.rx_ns, "status", lab.rx_if, "--json").stdout)
        assert st["consumer"]["ports"] == [9001, 9005]
        assert st["consumer"]["stats"]["0"]["packets"] == 10
        assert "xdp_rx_ring_full" in st["consumer"]["stats"]["0"]
        res = run_xdpgw(lab.rx_ns, "detach", lab.rx_if)
        assert res.returncode == 0 and "detached" in res.stdout
        assert attached(lab) is None
        gw.signal(signal.SIGTERM)
        gw.finish()
    assert attached(lab) is None


def test_errors_are_one_line_and_leave_nothing_attached(lab):
    one_line_error(run_xdpgw(lab.rx_ns, "attach", "nosuch0", "--count", "1", "--duration", "20"), "not found", "ip -br link")
    one_line_error(run_xdpgw(lab.rx_ns, "attach", lab.rx_if, "--queue", "3", "--count", "1", "--duration", "20"),
                   "out of range", "--queue 0..0")
    one_line_error(run_xdpgw(lab.rx_ns, "attach", lab.rx_if, "--port", "0", "--count", "1", "--duration", "20"), "port")
    assert attached(lab) is None
    nobody = subprocess.run(as_nobody([sys.executable, "-m", "xdpgw", "attach", "lo", "--count", "1", "--duration", "20"]),
                            capture_output=True, text=True, timeout=30, cwd=os.getcwd())
    one_line_error(nobody, "root", "sudo")


def test_foreign_program_is_refused_and_left_alone(lab):
    from bcc import BPF

    with in_netns(lab.rx_ns):
        other = BPF(text=b"int someone_else(struct xdp_md *ctx) { return XDP_PASS; }")
        fn = other.load_func(b"someone_else", BPF.XDP)
        BPF.attach_xdp(lab.rx_if.encode(), fn, 1 << 1)
    try:
        res = run_xdpgw(lab.rx_ns, "attach", lab.rx_if, "--count", "1", "--duration", "20")
        one_line_error(res, "foreign", "someone_else", "--force")
        assert attached(lab).name == "someone_else"
        res = run_xdpgw(lab.rx_ns, "detach", lab.rx_if)
        one_line_error(res, "not xdpgw's")
        assert attached(lab).name == "someone_else"
    finally:
        with in_netns(lab.rx_ns):
            BPF.remove_xdp(lab.rx_if.encode(), 1 << 1)
        other.cleanup()


def test_port_taken_for_listen(lab):
    with in_netns(lab.rx_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 9001))
    try:
        one_line_error(run_xdpgw(lab.rx_ns, "listen", "--port", "9001", "--count", "1", "--duration", "20"), "9001", "ss -ulpn")
    finally:
        s.close()


def test_listen_is_the_same_pipeline(lab):
    with Xdpgw(lab, "listen", "--port", "9001", "--count", "50", "--duration", "60", "--json") as gw:
        gw.read_line("listening on UDP port(s) 9001")  # printed once the socket is bound
        send_frames(lab, feed_frames(lab, [b"k%d" % i for i in range(50)]))
        summary = summary_of(gw)
    assert summary["transport"] == "socket" and summary["packets"] == 50 and summary["drops"] == 0


def test_missing_headers_message(monkeypatch):
    import xdpgw.kernel.program as bpf
    from xdpgw.errors import GatewayError

    class FakeUname:
        release = "0.0-none"

    monkeypatch.setattr(bpf.os, "uname", lambda: FakeUname)
    with pytest.raises(GatewayError, match="scripts/setup.sh"):
        bpf._compile()


def test_pcap_of_bypassed_frames_and_metrics(lab, tmp_path):
    from scapy.utils import rdpcap

    pcap = tmp_path / "bypassed.pcap"
    frames = feed_frames(lab, [b"cap-%02d" % i + bytes(i) for i in range(21)])
    with attach(lab, "--count", "21", "--pcap", str(pcap), "--metrics-port", str(METRICS_PORT), "--duration", "60") as gw:
        send_frames(lab, frames[:20])
        # the exact count, published by the running gateway (a server never updated shows 0)
        gw.wait_metrics(lambda m: value(m, "xdpgw_packets_total") == 20, "/metrics to count 20 packets")
        send_frames(lab, frames[20:])
        rc, _, err = gw.finish()
    assert rc == 0, err
    got = rdpcap(str(pcap))
    assert [bytes(p) for p in got] == frames
    now = time.time()
    assert all(abs(float(p.time) - now) < 600 for p in got), "pcap stamps are not wall-clock time"


def test_pcap_sampling_and_rotation_keep_exactly_every_nth_frame(lab, tmp_path):
    from scapy.utils import rdpcap

    pcap = tmp_path / "s.pcap"
    frames = feed_frames(lab, [b"s-%03d" % i for i in range(60)])
    with attach(lab, "--pcap", str(pcap), "--pcap-sample", "3", "--pcap-max-mb", "0.0005", "--count", "60",
                "--duration", "60", "--json") as gw:
        send_frames(lab, frames)
        assert summary_of(gw)["packets"] == 60
    files = [tmp_path / n for n in ("s.pcap.2", "s.pcap.1", "s.pcap")]  # oldest first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
    assert all(f.stat().st_size <= 500 for f in files)  # --pcap-max-mb 0.0005: 500 bytes a file
    assert [bytes(p) for f in files for p in rdpcap(str(f))] == frames[::3]  # 1 in 3, none lost to rotation
