"""Issue 9, item 2: /metrics scraped over HTTP from a real running gateway (socket and XDP, with and
without --protocol, one queue and --queue 0-1), parsed with prometheus_client's text parser, and checked
against the same process's --json summary."""

from __future__ import annotations

import pytest

from tests.helpers import Samples, Xdpgw, feed_frames, send_frames, send_to_queue, serve, value
from xdpgw.ops.metrics import drops_by_cause
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import encode_packet
from xdpgw.protocol.sequencer import HELD_REASONS

pytestmark = pytest.mark.xdp
N = 12


def payloads(protocol: bool) -> list[bytes]:
    if not protocol:
        return [b"raw-%03d" % i for i in range(N)]
    msgs = [itch.encode_message("A", order_ref=k, side="B", shares=1, stock="AAPL", price=1) for k in range(3)]
    return [encode_packet("SCRAPE", 1 + 3 * k, msgs) for k in range(N - 1)] + [b"short"]


def settled(gw: Xdpgw, packets: int) -> Samples:
    """The scrape once every packet is counted and a further publish changed nothing."""
    last = gw.wait_metrics(lambda m: value(m, "xdpgw_packets_total") == packets, f"{packets} packets counted")
    while True:
        got = gw.scrape()
        if {k: v for k, v in got.items() if k[0] != "xdpgw_stat"} == \
                {k: v for k, v in last.items() if k[0] != "xdpgw_stat"}:
            return got
        last = got


def check(got: Samples, summary: dict) -> None:
    """Every figure the scrape shows is the one --json reports."""
    v = value
    assert v(got, "xdpgw_packets_total") == summary["packets"]
    assert v(got, "xdpgw_bytes_total") == summary["bytes"]
    for (source, cause), n in drops_by_cause(summary).items():
        assert v(got, "xdpgw_drops_total", source=source, cause=cause) == n, (source, cause)
    for counter, n in (summary.get("drops_bpf") or {}).items():
        assert v(got, "xdpgw_bpf_packets_total", counter=counter) == n, counter
    assert v(got, "xdpgw_handler_errors_total") == summary["handler_errors"]
    for q, part in (summary.get("queues") or {}).items():
        assert v(got, "xdpgw_queue_packets_total", queue=q) == part["packets"]
    if "received" not in summary:
        assert not any(name.startswith("xdpgw_received") for name, _ in got)
        return
    for key, name in (("received", "received_messages"), ("missing", "missing_messages"),
                      ("duplicates", "duplicate_messages"), ("gaps", "gaps"), ("filtered", "filtered_messages")):
        assert v(got, f"xdpgw_{name}_total") == summary[key], key
    for t, n in summary["messages_by_type"].items():
        assert v(got, "xdpgw_messages_total", type=t) == n
    for kind, n in summary["decode_errors"].items():
        assert v(got, "xdpgw_decode_errors_total", kind=kind) == n
    for cause, n in summary["rejected"].items():
        assert v(got, "xdpgw_rejected_messages_total", cause=cause) == n
    for reason in HELD_REASONS:
        assert v(got, "xdpgw_held_messages", reason=reason) == summary["held"].get(reason, 0)


@pytest.mark.parametrize("protocol", [False, True], ids=["raw", "moldudp64"])
@pytest.mark.parametrize("transport", ["socket", "skb"])
def test_scrape_matches_json(lab, transport, protocol):
    with serve(lab, transport, *(["--protocol", "moldudp64"] if protocol else [])) as gw:
        send_frames(lab, feed_frames(lab, payloads(protocol)))
        got = settled(gw, N)
        summary, _ = gw.stop()
    assert summary["packets"] == N
    if protocol:
        assert summary["messages"] == 3 * (N - 1) and summary["decode_errors"] == {"short_packet": 1}
    check(got, summary)


def test_scrape_matches_json_with_two_queues(lab2):
    with serve(lab2, "drv", "--queue", "0-1", "--protocol", "moldudp64") as gw:
        send_to_queue(lab2, 0, payloads(True))
        send_to_queue(lab2, 1, payloads(True))
        got = settled(gw, 2 * N)
        summary, _ = gw.stop()
    assert summary["packets"] == 2 * N and {q: p["packets"] for q, p in summary["queues"].items()} == {"0": N, "1": N}
    assert summary["messages"] == 2 * 3 * (N - 1) and summary["decode_errors"] == {"short_packet": 2}
    check(got, summary)
