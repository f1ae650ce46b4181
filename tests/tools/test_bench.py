"""`xdpgw bench`: the table/ratio logic, and a very short real run (socket and XDP drv) on a veth lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import require_xdp, run_xdpgw
from xdpgw.tools.bench import Plan, add_ratios, format_table, frame_msgs
from xdpgw.tools.lab import Lab

LAT = {"p50": 2000, "p90": 3000, "p99": 10000, "p999": 20000, "max": 50000, "count": 10}


def _row(transport: str, size: str, pps: int, p99: int) -> dict:
    return {"transport": transport, "size": size, "frame_bytes": 83, "offered_pps": pps * 2, "received_pps": pps,
            "loss_pct": 50.0, "ns_per_packet": 400.0, "msgs_per_s": pps, "latency_ns": {**LAT, "p99": p99},
            "send_latency_ns": LAT}


def test_ratios_are_against_the_socket_row_of_the_same_size():
    rows = [_row("socket", "small", 100, 40000), _row("xdp-drv", "small", 400, 10000),
            _row("socket", "1KB", 50, 8000), _row("xdp-drv", "1KB", 100, 0)]
    add_ratios(rows)
    assert [r["ratio_vs_socket"] for r in rows] == [1.0, 4.0, 1.0, 2.0]
    assert [r["p99_ratio_socket_over_this"] for r in rows] == [1.0, 4.0, 1.0, None]
    res = {"rows": rows, "burst": [], "plan": Plan().__dict__, "cpus": {"consumer": 0, "generator": 1},
           "kernel": "6.x"}
    text = format_table(res)
    assert "xdp-drv" in text and "4.0x" in text


def test_the_1kb_row_uses_frames_of_about_1kb():
    from xdpgw.tools.blast import blast_frame
    from xdpgw.transport.xdp.tx import Route

    route = Route("x", 1, 9000, "02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2", "10.0.0.2")
    assert 900 <= len(blast_frame(route, 1, 9001, frame_msgs(1024), "B")) <= 1150


@pytest.mark.xdp
def test_the_bench_command_fills_every_field_writes_its_files_and_leaves_no_lab(tmp_path):
    """`xdpgw bench --quick` (the one bench run of the suite), socket and XDP drv rows."""
    out = tmp_path / "b"
    p = run_xdpgw(None, "bench", "--quick", "--transports", "socket,xdp-drv", "--latency-pps", "20000",
                  "--out", str(out), "--json", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert res["lab"].startswith("xgb") and not Lab(res["lab"]).exists(), "the bench left its lab behind"
    assert res == json.loads((tmp_path / "b.json").read_text())
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = res["rows"]
    assert [(r["transport"], r["size"]) for r in rows] == [
        ("socket", "small"), ("socket", "1KB"), ("xdp-drv", "small"), ("xdp-drv", "1KB")]
    for r in rows:
        assert r["offered_pps"] > 0 and r["received_pps"] > 0 and 0 <= r["loss_pct"] <= 100
        assert r["ns_per_packet"] > 0 and r["msgs_per_s"] > 0 and r["ratio_vs_socket"] > 0
        assert r["latency_ns"]["count"] > 0 and r["latency_ns"]["p50"] <= r["latency_ns"]["p99"] <= r["latency_ns"]["max"]
        assert r["send_latency_ns"]["count"] > 0
        assert set(r["latency_ns"]) >= {"p50", "p99", "p999", "max"}
    assert rows[2]["mode"] == "drv" and rows[0]["ratio_vs_socket"] == 1.0
    plan = res["plan"]
    offered = plan["burst_base_pps"] * plan["calm_s"] * 2 + plan["burst_base_pps"] * plan["burst_factor"] * plan["burst_s"]
    assert [b["transport"] for b in res["burst"]] == ["socket", "xdp-drv"]
    assert all(b["offered"] == pytest.approx(offered) for b in res["burst"]), (res["burst"], offered)


@pytest.mark.xdp
def test_a_short_latency_bench_has_every_row_and_ratios_to_the_bare_loop(tmp_path):
    require_xdp()
    from xdpgw.tools.bench import (
        format_latency_table,
        format_startup_cost,
        pipeline_cost,
        plot_latency,
        run_latency_bench,
        startup_cost,
    )

    rows = (("bare C loop", "xdp-drv"), ("decoding", "xdp-drv"), ("decoding", "socket"))
    res = run_latency_bench(0.1, rows=rows, rates=(10_000.0,))
    assert res["lab"].startswith("xgl") and not Lab(res["lab"]).exists()
    got = res["latency_rows"]
    assert [(r["pipeline"], r["transport"], r["size"]) for r in got] == [
        (p, t, s) for p, t in rows for s in ("1", "25")]
    for r in got:
        assert r["received"] > 0 and r["latency_ns"]["count"] > 0 and r["p50_x_ref"] > 0
        assert r["pipeline"] == "bare C loop" or r["delivered"] > 0
        assert (r["fast_path_packets"] > 0) == (r["pipeline"] == "decoding")  # in-order bursts: the C path
        assert r["generator_anchored"]  # paced, not in 24 ms bursts (each frame size holds the anchor in turn)
        if r["pipeline"] == "decoding":  # the flight recorder: each tail over 100 µs has one cause
            t = r["tails"]
            assert t["bursts"] > 0 and t["over_100us"] == t["off_cpu"] + t["kernel"] + t["ours"]
    assert all(r["p50_x_ref"] == 1.0 for r in got if r["pipeline"] == "bare C loop")
    assert "bare C loop" in format_latency_table(res) and len(res["load_1min"]) == 2
    assert Path(plot_latency(res, str(tmp_path / "l.png"))).read_bytes()[:4] == b"\x89PNG"
    cost = pipeline_cost(calls=200)
    assert {(c["path"], c["msgs"]) for c in cost} == {(p, m) for p in ("C fast path", "general path") for m in (1, 25)}
    start = startup_cost(sessions=2)  # a session's first two bursts, C proving it vs the general path
    assert [(c["path"], c["msgs"]) for c in start] == [(p, m) for m in (1, 25) for p in ("C fast path", "general path")]
    assert all(0 < c["burst1_p50_us"] <= c["burst1_max_us"] and c["burst2_p50_us"] > 0 for c in start)
    assert "session's start" in format_startup_cost(start)
