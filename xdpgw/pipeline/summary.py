"""The gateway summary: one typed definition read by the CLI, workers, metrics and status.

Every field has exactly one producer (named in its comment): ``Gateway.summary`` for the traffic
fields, ``FeedHandler.stats`` for the feed fields (present with ``--protocol``), ``merge_summaries`` for
the multi-queue fields. Counts are cumulative since start. Readers take fields from here by name, so a
field that changes shape changes here, and the type checker and ``tests/ops/test_metrics_scrape.py`` see it.

Feed accounting: every message taken in (``received``) is, at any moment, exactly one of::

    received == messages + filtered + duplicates + sum(rejected.values()) + sum(held.values())

``missing`` counts sequence numbers given up (never received), so it is not part of that sum.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class FeedStats(TypedDict):
    """Producer: ``xdpgw.pipeline.feed.FeedHandler.stats``."""

    received: int  # messages taken in (decoded blocks, valid or not, from every line and retransmission)
    messages: int  # delivered to the handlers
    messages_by_type: dict[str, int]  # the same by ITCH type letter
    filtered: int  # delivered by the sequencer, not subscribed (--symbols)
    gaps: int  # sequence gaps seen (events)
    missing: int  # sequence numbers given up (never received)
    duplicates: int  # copies of messages already delivered or given up
    recovered: int  # messages that filled a gap (other line, retransmission, reordering)
    decode_errors: dict[str, int]  # what did not decode, by kind (packets or blocks, see moldudp64.ERROR_NAMES)
    rejected: dict[str, int]  # messages never to be delivered, by cause (sequencer.REJECT_CAUSES), non-zero only
    held: dict[str, int]  # messages still waiting, by reason (sequencer.HELD_REASONS), non-zero only
    lines: NotRequired[list[dict[str, float]]]  # A/B: per-line counters (Arbiter.stats)
    books: NotRequired[dict[str, Any]]  # --book: xdpgw.book.live.BookFeed.stats (Books.summary + bbo_per_s)


class Summary(FeedStats, total=False):
    """Producer: ``xdpgw.pipeline.gateway.Gateway.summary`` (one consumer) or ``xdpgw.pipeline.workers.merge_summaries``
    (several). The feed fields (``FeedStats``) are there only with a feed decoder."""

    transport: str  # "xdp" | "socket"
    mode: str | None  # XDP attach mode ("drv" | "skb"), None for sockets
    iface: str | None
    queue: int | list[int] | None
    port: int | None
    packets: int
    bytes: int
    drops: int  # the receiver's own drops (XDP: rx_dropped + rx_ring_full; sockets: SO_MEMINFO)
    duration_s: float
    pps: float
    drops_kernel: dict[str, int]  # XDP_STATISTICS (xdp_*) and truncated datagrams, by counter
    drops_bpf: dict[str, int]  # our BPF program's counters (bpf.COUNTERS), by name
    receiver: dict[str, int]  # the receiver's other counters
    handler_errors: int
    ns_per_packet: float | None
    fast_path_packets: int  # packets the feed's C in-order fast path took (xdpgw.protocol.fastpath)
    flight_recorder: dict[str, Any]  # --trace-latency: xdpgw.pipeline.flight.explain of the recorded bursts
    orders: dict[str, Any]  # --strategy: the router's summary (xdpgw.orders.router.Router.summary)
    latency_ns: dict[str, float]  # percentiles (LatencyHistogram.percentiles), only once something was stamped
    last_handler_error: str
    queues: dict[str, Summary]  # merge_summaries: each queue's own summary
    pid: int  # merge_summaries: a queue's worker process


#: Feed fields whose values are counters by a key (summed over queues key by key).
FEED_FIELDS = tuple(FeedStats.__annotations__)
#: BPF counters that are not drops (everything else in ``drops_bpf`` is a packet not bypassed or lost).
BPF_NOT_DROPS = ("seen", "redirected", "passed", "no_meta")


#: What releases messages held for each reason (the exit report says it).
RELEASED_BY = {
    "behind_hole": "the hole before them being filled (other line, retransmission) or given up",
    "parked_far_ahead": "another packet of the session continuing them, or the feed reaching them",
    "unconfirmed_session": "their session proving itself (two chained packets) after ours ends or goes silent",
}


def held_note(s: FeedStats) -> str | None:
    """One line on what is still held (None when nothing is): how many, why, what would release it."""
    held = {k: v for k, v in (s.get("held") or {}).items() if v}
    if not held:
        return None
    why = "; ".join(f"{v} {k.replace('_', ' ')} (released by {RELEASED_BY.get(k, '?')})" for k, v in held.items())
    return (f"{sum(held.values())} received message(s) were still held at exit, not delivered: {why}; "
            "run longer, or see `held` in --json")


def accounted(s: FeedStats) -> int:
    """``messages + filtered + duplicates + rejected + held``: equals ``received`` (see the module doc)."""
    return (s["messages"] + s["filtered"] + s["duplicates"] + sum(s["rejected"].values())
            + sum(s["held"].values()))
