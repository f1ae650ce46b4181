"""`xdpgw attach --queue 0-3`: one consumer process per RX queue, on a real 4-queue veth lab.

Traffic is put on a chosen RX queue with an AF_XDP sender bound to the same TX queue of the tx veth:
veth hands a frame to the peer's RX queue with its TX queue's index (native XDP mode, `--mode drv`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    METRICS_PORT,
    attach,
    attached,
    drain_socket,
    kernel_udp_socket,
    one_line_error,
    require,
    run_xdpgw,
    send_to_queue,
    send_to_queues,
    status_of,
    value,
    wait_gone,
)
from xdpgw.cli.main import parse_cpus, parse_ints, parse_queues
from xdpgw.errors import GatewayError
from xdpgw.pipeline.histogram import LatencyHistogram
from xdpgw.pipeline.workers import _Outbox, merge_summaries
from xdpgw.tools.lab import Lab


def worker_pids(lab: Lab) -> dict[int, int]:
    return {int(q): st["pid"] for q, st in status_of(lab)["consumer"]["stats"].items()}


# --- the real thing -------------------------------------------------------------------------------
@pytest.mark.xdp
def test_one_process_per_queue_counts_every_packet_once(lab4):
    counts = {0: 5, 2: 9, 3: 14}  # queue 1 gets nothing
    total = sum(counts.values())
    with attach(lab4, "--queue", "0-3", "--mode", "drv", "--json", "--count", str(total), "--duration", "60",
                queues=4) as gw:
        pids = worker_pids(lab4)
        text = run_xdpgw(lab4.rx_ns, "status", lab4.rx_if).stdout
        sent = send_to_queues(lab4, counts)
        rc, out, err = gw.finish()
        assert rc == 0, err
        assert wait_gone(pids.values()) == []
    for q in range(4):
        assert f"queue {q}: pid {pids[q]} running" in text, text
    summary = json.loads(out)
    per_q = summary["queues"]
    assert summary["packets"] == total and summary["queue"] == [0, 1, 2, 3]
    assert {q: per_q[str(q)]["packets"] for q in range(4)} == {0: 5, 1: 0, 2: 9, 3: 14}
    assert {q: per_q[str(q)]["bytes"] for q in counts} == {q: sum(map(len, p)) for q, p in sent.items()}
    assert summary["bytes"] == sum(len(p) for ps in sent.values() for p in ps)
    assert summary["drops_bpf"]["redirected"] == total  # each packet redirected once, counted once
    assert summary["latency_ns"]["count"] == total  # the four histograms merged
    workers = {q: per_q[str(q)]["pid"] for q in range(4)}
    assert workers == pids and len(set(workers.values())) == 4 and gw.pid not in workers.values()
    assert attached(lab4) is None


@pytest.mark.xdp
def test_sigterm_reports_detaches_and_gives_the_feed_back_to_the_kernel(lab4):
    cpus = sorted(os.sched_getaffinity(0))[:2][::-1]  # queue 0 on the second CPU, queue 1 on the first
    require(len(cpus) >= 2, f"needs two CPUs, this process may use {len(cpus)}")
    with attach(lab4, "--queue", "0-1", "--mode", "drv", "--json", "--cpu", ",".join(map(str, cpus)),
                "--metrics-port", str(METRICS_PORT), queues=2) as gw:
        pids = worker_pids(lab4)
        for q, cpu in enumerate(cpus):
            allowed = [ln for ln in Path(f"/proc/{pids[q]}/status").read_text().splitlines()
                       if ln.startswith("Cpus_allowed_list")]
            assert allowed == [f"Cpus_allowed_list:\t{cpu}"]
        send_to_queues(lab4, {0: 3, 1: 4})

        # workers send snapshots, the parent publishes them, once a second (its server starts just after them)
        got = gw.wait_metrics(lambda m: value(m, "xdpgw_packets_total") == 7, "/metrics to count 7 packets", 15)
        assert value(got, "xdpgw_queue_packets_total", queue="0") == 3, got
        assert value(got, "xdpgw_queue_packets_total", queue="1") == 4, got
        gw.signal(signal.SIGTERM)
        rc, out, err = gw.finish()
        assert rc == 128 + signal.SIGTERM, err
        assert wait_gone(pids.values()) == []
    summary = json.loads(out)  # reported on SIGTERM too
    assert summary["packets"] == 7 and {q: s["packets"] for q, s in summary["queues"].items()} == {"0": 3, "1": 4}
    assert attached(lab4) is None
    with kernel_udp_socket(lab4, 9001) as s:
        sent = send_to_queues(lab4, {q: 5 for q in range(4)}, tag=b"k")
        assert sorted(drain_socket(s, 20)) == sorted(p for ps in sent.values() for p in ps)


@pytest.mark.xdp
def test_kill_9_of_the_parent_takes_its_workers_down(lab4):
    with kernel_udp_socket(lab4, 9001) as s, attach(lab4, "--queue", "0-3", "--mode", "drv", queues=4) as gw:
        pids = worker_pids(lab4)
        gw.proc.kill()  # the parent only
        gw.proc.wait(timeout=20)
        assert wait_gone(pids.values(), timeout=5) == [], "workers outlived their parent (PR_SET_PDEATHSIG)"
        prog = attached(lab4)
        assert prog is not None and prog.name == "xdpgw_rx"  # nobody detached it ...
        sent = send_to_queues(lab4, {q: 5 for q in range(4)})
        got = drain_socket(s, 20)
        assert sorted(got) == sorted(p for ps in sent.values() for p in ps), "feed black-holed"  # ... no sockets
        assert run_xdpgw(lab4.rx_ns, "detach", lab4.rx_if).returncode == 0  # the killed parent could not
    assert attached(lab4) is None


@pytest.mark.xdp
def test_a_dead_worker_stops_everything_with_one_line(lab4):
    with attach(lab4, "--queue", "0-3", "--mode", "drv", queues=4) as gw:
        pids = worker_pids(lab4)
        os.kill(pids[2], signal.SIGKILL)
        rc, out, err = gw.finish()
        assert wait_gone(pids.values()) == []
    one_line_error(subprocess.CompletedProcess(gw.proc.args, rc, out, err),
                   "queue 2", f"pid {pids[2]}", "SIGKILL", "xdpgw attach")
    assert attached(lab4) is None


@pytest.mark.xdp
def test_a_worker_that_cannot_start_stops_everything_with_its_error(lab4):
    res = run_xdpgw(lab4.rx_ns, "attach", lab4.rx_if, "--queue", "2-4", "--mode", "drv", "--count", "1", "--duration", "20")
    one_line_error(res, "queue 4 is out of range", "consumer of queue 4", "--queue 0..3")
    assert attached(lab4) is None
    assert f"attach {lab4.rx_if}" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


@pytest.mark.xdp
def test_several_queues_decode_their_own_sessions_and_write_their_own_pcaps(lab2, tmp_path):
    """--queue 0-1 --protocol: each worker sequences its own queue's session; --pcap: PATH-qN.pcap each;
    --trace-latency: each worker's flight recorder in FILE-qN.csv (every packet of its queue in a burst)."""
    from scapy.layers.inet import UDP
    from scapy.utils import rdpcap

    from xdpgw.protocol import itch
    from xdpgw.protocol.moldudp64 import encode_packet

    n = {0: 6, 1: 9}
    payloads = {q: [encode_packet(f"QUEUE{q}SESS", s, [itch.encode_message("D", locate=1, order_ref=s)] * 2)
                    for s in range(1, 2 * n[q] + 1, 2)] for q in n}
    pcap = tmp_path / "cap.pcap"
    trace = tmp_path / "trace.csv"
    with attach(lab2, "--queue", "0-1", "--mode", "drv", "--protocol", "moldudp64", "--pcap", str(pcap), "--json",
                "--trace-latency", str(trace), "--count", str(sum(n.values())), "--duration", "60", queues=2) as gw:
        for q, pays in payloads.items():
            send_to_queue(lab2, q, pays)
        rc, out, err = gw.finish()
    assert rc == 0, err
    summary = json.loads(out)
    per_q = summary["queues"]
    assert {q: per_q[str(q)]["messages"] for q in n} == {q: 2 * k for q, k in n.items()}, per_q
    assert summary["messages"] == 2 * sum(n.values()) and summary["gaps"] == 0 and summary["missing"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap-q0.pcap", "cap-q1.pcap", "trace-q0.csv", "trace-q1.csv"]
    for q, k in n.items():
        rows = np.loadtxt(tmp_path / f"trace-q{q}.csv", np.int64, delimiter=",", skiprows=1, ndmin=2)
        assert rows[:, 6].sum() == k, rows  # the packets column: every packet of this queue, once
        assert f"queue {q}: flight recorder" in err
    for q, pays in payloads.items():
        assert [bytes(f[UDP].payload) for f in rdpcap(str(tmp_path / f"cap-q{q}.pcap"))] == pays
    assert attached(lab2) is None


@pytest.mark.xdp
def test_ctrl_c_stops_every_queue_and_reports(lab2):
    """SIGINT to the process group (a terminal's Ctrl-C): the workers ignore it, the parent detaches, stops
    them, reports and exits 0."""
    with attach(lab2, "--queue", "0-1", "--mode", "drv", "--json", "--duration", "60", queues=2) as gw:
        pids = worker_pids(lab2)
        send_to_queues(lab2, {0: 2, 1: 3})
        gw.wait_stats(lambda st: (st["0"]["packets"], st["1"]["packets"]) == (2, 3), "both queues' packets")
        gw.signal(signal.SIGINT, group=True)
        rc, out, err = gw.finish()
        assert rc == 0, err
        assert wait_gone(pids.values()) == []
    summary = json.loads(out)
    assert summary["packets"] == 5 and {q: s["packets"] for q, s in summary["queues"].items()} == {"0": 2, "1": 3}
    assert attached(lab2) is None


# --- pure logic ------------------------------------------------------------------------------------
def test_queue_and_cpu_lists():
    assert parse_ints("3,0-1", "--cpu") == [3, 0, 1]
    assert parse_queues("3,0-1,1") == [0, 1, 3]
    assert parse_cpus(None, 4) is None
    assert parse_cpus("3,2", 2) == [3, 2]
    with pytest.raises(GatewayError, match="one CPU per queue.*--cpu 0,1"):
        parse_cpus("0", 2)
    with pytest.raises(GatewayError, match="twice"):
        parse_cpus("1,1", 2)
    with pytest.raises(GatewayError, match="bad --cpu"):
        parse_cpus("x", 1)


def test_several_queue_options_that_cannot_work_fail_before_attaching():
    for args, needle in ((["--line-b", "9002", "--protocol", "moldudp64"], "--line-b"),
                         (["--cpu", "0"], "one CPU per queue")):
        res = run_xdpgw(None, "attach", "nosuch0", "--queue", "0-1", *args)  # never reaches the interface
        one_line_error(res, needle)


def test_merge_summaries_sums_counters_and_merges_latency():
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for h, values in ((a, [1000, 2000, 3000]), (b, [50_000, 60_000])):
        h.record_many(values)
        both.record_many(values)
    row = {"transport": "xdp", "mode": "drv", "iface": "x", "port": 9001, "duration_s": 9.0, "pps": 1.0}
    parts = {
        0: {**row, "queue": 0, "packets": 3, "bytes": 30, "drops": 1, "drops_bpf": {"redirected": 3, "passed": 1},
            "ns_per_packet": 100.0, "messages_by_type": {"A": 2}, "pid": 11},
        2: {**row, "queue": 2, "packets": 2, "bytes": 20, "drops": 0, "drops_bpf": {"redirected": 2, "passed": 0},
            "ns_per_packet": 400.0, "messages_by_type": {"A": 1, "E": 1}, "pid": 12,
            "last_handler_error": "ValueError: x"},
    }
    merged = LatencyHistogram.from_dict(a.to_dict()).merge(LatencyHistogram.from_dict(b.to_dict()))
    out = merge_summaries(parts, 2.0, merged)
    assert (out["transport"], out["port"], out["queue"]) == ("xdp", 9001, [0, 2])
    assert (out["packets"], out["bytes"], out["drops"]) == (5, 50, 1)
    assert out["drops_bpf"] == {"redirected": 5, "passed": 1}
    assert out["messages_by_type"] == {"A": 3, "E": 1}
    assert (out["duration_s"], out["pps"], out["ns_per_packet"]) == (2.0, 2.5, 220.0)
    assert out["latency_ns"] == both.percentiles()
    assert out["last_handler_error"] == "ValueError: x" and "pid" not in out
    assert out["queues"]["2"]["pid"] == 12 and out["queues"]["0"]["packets"] == 3
    assert list(out)[:5] == ["transport", "mode", "iface", "port", "duration_s"]  # the workers' key order


def test_a_full_pipe_skips_ticks_but_never_splits_a_message():
    r, w = os.pipe()
    reader, outbox = Connection(r, writable=False), _Outbox(Connection(w, readable=False))
    try:
        sent = 0
        for i in range(100):
            before = outbox.skipped
            outbox.send(("tick", {"i": i, "pad": bytes(4000)}), block=False)  # nobody reads yet
            sent += outbox.skipped == before
        assert 0 < sent < 100 and outbox.skipped == 100 - sent
        got = []
        while reader.poll(0):
            got.append(reader.recv())
        assert [m[1]["i"] for m in got] == list(range(sent))
        assert all(m == ("tick", {"i": m[1]["i"], "pad": bytes(4000)}) for m in got)  # each one whole
    finally:
        reader.close()
        outbox.conn.close()
