"""MetricsServer scraped over real HTTP on loopback; the text is parsed with prometheus_client's parser."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from xdpgw.errors import GatewayError
from xdpgw.metrics import MetricsServer, StatsCollector, _quantile

STATS = {
    "packets": 10, "bytes": 1000, "gaps": 4, "gap_events": 1,
    "drops": {"seq_dup": 1}, "rx_ring_full": 3, "rx_dropped": 2,
    "decode_errors": {"short_message": 2, "unknown_type": 1},
    "messages": {"A": 5, "E": 2},
    "queues": {0: {"packets": 6, "bytes": 600, "rx_dropped": 2}, 1: {"packets": 4, "bytes": 400}},
    "latency_ns": {"p50": 1500, "p99": 20000, "p99.9": 50000, "max": 90000, "count": 10, "sum": 100000},
    "uptime_s": 3.5, "transport": "xdp", "zerocopy": True,
}


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scrape_every_family() -> None:
    with MetricsServer(free_port()) as m:
        m.update(STATS)
        got = scrape(m.url)
    assert got[("xdpgw_packets_total", ())] == 10
    assert got[("xdpgw_bytes_total", ())] == 1000
    assert got[("xdpgw_drops_total", (("cause", "seq_dup"),))] == 1
    assert got[("xdpgw_drops_total", (("cause", "rx_ring_full"),))] == 3
    assert got[("xdpgw_drops_total", (("cause", "rx_dropped"),))] == 2
    assert got[("xdpgw_gap_messages_total", ())] == 4
    assert got[("xdpgw_gap_events_total", ())] == 1
    assert got[("xdpgw_decode_errors_total", (("kind", "unknown_type"),))] == 1
    assert got[("xdpgw_messages_total", (("type", "A"),))] == 5
    assert got[("xdpgw_queue_packets_total", (("queue", "1"),))] == 4
    assert got[("xdpgw_queue_bytes_total", (("queue", "0"),))] == 600
    assert got[("xdpgw_queue_drops_total", (("cause", "rx_dropped"), ("queue", "0")))] == 2
    assert got[("xdpgw_latency_seconds", (("quantile", "0.999"),))] == pytest.approx(50e-6)
    assert got[("xdpgw_latency_seconds", (("quantile", "1"),))] == pytest.approx(90e-6)
    assert got[("xdpgw_latency_seconds_count", ())] == 10
    assert got[("xdpgw_latency_seconds_sum", ())] == pytest.approx(100e-6)
    assert got[("xdpgw_stat", (("name", "uptime_s"),))] == 3.5
    assert not any(lab == (("name", "transport"),) or lab == (("name", "zerocopy"),) for _, lab in got)


def test_update_replaces_snapshot_and_histogram_buckets() -> None:
    with MetricsServer(0) as m:  # port 0: any free port
        assert m.port > 0
        m.update({"packets": 1})
        assert scrape(m.url)[("xdpgw_packets_total", ())] == 1
        m.update({"packets": 7, "latency_ns": {"buckets": {10000: 5, 1000: 3, "+Inf": 2}, "sum": 50000}})
        got = scrape(m.url)
    assert got[("xdpgw_packets_total", ())] == 7
    assert got[("xdpgw_latency_seconds_bucket", (("le", "1e-06"),))] == 3
    assert got[("xdpgw_latency_seconds_bucket", (("le", "1e-05"),))] == 8  # per-bucket counts summed
    assert got[("xdpgw_latency_seconds_bucket", (("le", "+Inf"),))] == 10
    assert got[("xdpgw_latency_seconds_count", ())] == 10


def test_dedicated_registry_two_servers() -> None:
    with MetricsServer(0) as a, MetricsServer(0) as b:
        a.update({"packets": 1})
        b.update({"packets": 2})
        assert scrape(a.url)[("xdpgw_packets_total", ())] == 1
        assert scrape(b.url)[("xdpgw_packets_total", ())] == 2


def test_port_in_use_says_what_to_do() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(GatewayError, match=f"ss -ltnp 'sport = :{port}'"):
            MetricsServer(port)


def test_empty_stats_render() -> None:
    fams = {f.name for f in StatsCollector().collect()}
    assert {"xdpgw_packets", "xdpgw_drops", "xdpgw_messages"} <= fams


def test_quantile_names() -> None:
    assert [_quantile(k) for k in ("p50", "p99.9", "max", "0.25", "bogus", "2")] == \
        ["0.5", "0.999", "1", "0.25", None, None]


def test_gateway_summaries_with_per_queue_rows() -> None:
    """What a multi-queue `xdpgw attach` publishes: its merged summary (drops is one number) plus each
    worker's summary under ``queues``."""
    row = {"transport": "xdp", "drops_kernel": {"xdp_rx_ring_full": 2}, "handler_errors": 0}
    summary = {**row, "packets": 7, "bytes": 70, "drops": 2, "pps": 3.5,
               "queues": {"0": {**row, "packets": 3, "bytes": 30, "drops": 0},
                          "1": {**row, "packets": 4, "bytes": 40, "drops": 2}}}
    with MetricsServer(0) as m:
        m.update(summary)
        got = scrape(m.url)
    assert got[("xdpgw_packets_total", ())] == 7
    assert got[("xdpgw_drops_total", (("cause", "receiver"),))] == 2
    assert got[("xdpgw_queue_packets_total", (("queue", "1"),))] == 4
    assert got[("xdpgw_queue_bytes_total", (("queue", "0"),))] == 30
    assert got[("xdpgw_queue_drops_total", (("cause", "receiver"), ("queue", "1")))] == 2
    assert got[("xdpgw_stat", (("name", "pps"),))] == 3.5
