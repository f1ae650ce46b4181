"""MetricsServer scraped over real HTTP on loopback; the text is parsed with prometheus_client's parser."""

from __future__ import annotations

import socket

import pytest

from tests.helpers import scrape
from xdpgw.errors import GatewayError
from xdpgw.ops.metrics import MetricsServer, StatsCollector, _quantile


def real_summary() -> dict:
    """A summary as the gateway makes it: a socket Gateway over loopback with the MoldUDP64 feed decoder
    (the metrics once read a hand-made dict the gateway never produced, and the scrape failed with HTTP 500)."""
    from xdpgw.pipeline.feed import FeedHandler
    from xdpgw.pipeline.gateway import Gateway
    from xdpgw.protocol import itch
    from xdpgw.protocol.moldudp64 import encode_end_of_session, encode_packet
    from xdpgw.transport.socket import SocketReceiver

    def pkt(seq: int, session: str = "METRICS") -> bytes:
        return encode_packet(session, seq, [itch.encode_message("A", order_ref=seq, side="B", shares=1, stock="AAPL",
                                                                price=1), itch.encode_message("D", order_ref=seq)])

    payloads = [pkt(1 + 2 * k) for k in range(5)] + [encode_end_of_session("OTHER", 3), pkt(1, "OTHER"), b"junk"]
    with SocketReceiver(0, bind_addr="127.0.0.1") as rx, FeedHandler(lines=1) as feed, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for p in payloads:
            tx.sendto(p, ("127.0.0.1", rx.port))
        return Gateway([rx], feed=feed, status=None).run(count=len(payloads), duration=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scrape_a_real_gateway_summary() -> None:
    summary = real_summary()
    assert summary["packets"] == 8 and summary["messages"] == 10 and summary["held"] == {"unconfirmed_session": 2}
    with MetricsServer(free_port()) as m:
        m.update(summary)
        got = scrape(m.url)
    assert got[("xdpgw_packets_total", ())] == 8
    assert got[("xdpgw_bytes_total", ())] == summary["bytes"]
    assert got[("xdpgw_drops_total", (("cause", "drops"), ("source", "receiver")))] == 0
    assert got[("xdpgw_drops_total", (("cause", "truncated"), ("source", "kernel")))] == 0
    assert got[("xdpgw_messages_total", (("type", "A"),))] == 5
    assert got[("xdpgw_messages_total", (("type", "D"),))] == 5
    assert got[("xdpgw_received_messages_total", ())] == summary["received"] == 12
    assert got[("xdpgw_decode_errors_total", (("kind", "short_packet"),))] == 1
    assert got[("xdpgw_held_messages", (("reason", "unconfirmed_session"),))] == 2
    assert got[("xdpgw_held_messages", (("reason", "behind_hole"),))] == 0
    assert got[("xdpgw_stat", (("name", "pps"),))] == summary["pps"]
    assert not any(lab == (("name", "transport"),) for _, lab in got)


def test_per_cause_drop_counters_are_exported() -> None:
    summary = {"packets": 5, "bytes": 50, "drops": 3,
               "drops_kernel": {"xdp_rx_dropped": 1, "xdp_rx_ring_full": 2},
               "drops_bpf": {"seen": 9, "redirected": 5, "passed": 4, "rate_limited": 2, "denied": 1, "no_socket": 0,
                             "consumer_gone": 1}}
    with MetricsServer(0) as m:
        m.update(summary)
        got = scrape(m.url)
    for (source, cause), v in [(("receiver", "drops"), 3), (("kernel", "xdp_rx_ring_full"), 2),
                               (("bpf", "rate_limited"), 2), (("bpf", "denied"), 1), (("bpf", "consumer_gone"), 1)]:
        assert got[("xdpgw_drops_total", (("cause", cause), ("source", source)))] == v
    assert ("xdpgw_drops_total", (("cause", "redirected"), ("source", "bpf"))) not in got  # not a drop
    assert got[("xdpgw_bpf_packets_total", (("counter", "redirected"),))] == 5


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
    assert {"xdpgw_packets", "xdpgw_drops"} <= fams


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
    assert got[("xdpgw_drops_total", (("cause", "drops"), ("source", "receiver")))] == 2
    assert got[("xdpgw_queue_packets_total", (("queue", "1"),))] == 4
    assert got[("xdpgw_queue_bytes_total", (("queue", "0"),))] == 30
    assert got[("xdpgw_queue_drops_total", (("cause", "drops"), ("queue", "1"), ("source", "receiver")))] == 2
    assert got[("xdpgw_queue_drops_total", (("cause", "xdp_rx_ring_full"), ("queue", "1"), ("source", "kernel")))] == 2
    assert got[("xdpgw_stat", (("name", "pps"),))] == 3.5
