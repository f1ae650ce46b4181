"""`merge_summaries`: the summary of several queues' workers, from real Gateway summaries (fake receivers,
a real feed decoder with books), so every field a worker reports is merged as it really comes."""

from __future__ import annotations

from tests import builders
from tests.pipeline.fakes import FakeReceiver
from xdpgw.book.live import BookFeed
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.pipeline.gateway import Gateway
from xdpgw.pipeline.summary import FEED_FIELDS, accounted
from xdpgw.pipeline.workers import merge_summaries


def pkt(seq: int, n: int = 1, session: str = "S1") -> bytes:
    return builders.pkt(seq, n, session, kinds="AAD")  # adds and deletes on locate 1 and 2: books have tops


def queue_summary(bursts: list[list[bytes]]) -> dict:
    """One worker's summary: its Gateway over its queue's packets, decoded, sequenced and booked."""
    rx = FakeReceiver(bursts)
    feed = BookFeed(FeedHandler(lines=1, clock=lambda: 100.0))  # time stands still: holes stay held
    gw = Gateway([rx], [], feed=feed, status=None)
    return dict(gw.run(count=sum(map(len, bursts)), duration=60))


def test_merged_summary_sums_the_feed_accounts_key_by_key_and_keeps_each_queue():
    # queue 0: 1-3 delivered, 6 held behind the hole at 4-5, a malformed packet of a foreign session
    # rejected, a foreign session's packet held until it proves itself
    q0 = queue_summary([[pkt(1, 2), pkt(3)], [pkt(1, 3, session="ZZ")[:-5], pkt(6), pkt(8, session="YY")]])
    # queue 1 (its own feed): 1-4 delivered, 7-8 held behind a hole, a second foreign malformed packet
    q1 = queue_summary([[pkt(1, 2), pkt(3, 2)], [pkt(7, 2), pkt(2, 2, session="XX")[:-3]]])
    for q in (q0, q1):
        assert accounted(q) == q["received"] and q["held"] and q["rejected"], q  # both maps have something

    out = merge_summaries({0: q0, 1: q1}, 2.0)
    for key in ("packets", "bytes", "received", "messages", "gaps", "missing", "duplicates", "filtered"):
        assert out[key] == q0[key] + q1[key], key
    for key in ("held", "rejected", "decode_errors", "messages_by_type", "receiver"):  # maps: key by key
        keys = set(q0[key]) | set(q1[key])
        assert out[key] == {k: q0[key].get(k, 0) + q1[key].get(k, 0) for k in keys}, key
    assert accounted(out) == out["received"]  # the accounting identity survives the merge
    assert set(FEED_FIELDS) - {"lines"} <= set(out)
    assert out["queue"] == [0, 1] and out["pps"] == round(out["packets"] / 2.0, 1)
    assert out["queues"] == {"0": q0, "1": q1}  # each worker's own, untouched

    books = out["books"]  # tops of book are never added: a symbol on both queues is listed once per queue
    names = set(q0["books"]["symbols"]) | set(q1["books"]["symbols"])
    both = set(q0["books"]["symbols"]) & set(q1["books"]["symbols"])
    assert both and set(books["symbols"]) == (names - both) | {f"{n}@q{q}" for n in both for q in (0, 1)}
    for n in both:
        assert books["symbols"][f"{n}@q1"] == q1["books"]["symbols"][n]
    assert books["count"] == len(books["symbols"])
    for key in ("bbo", "trades", "live_orders", "gaps"):
        assert books[key] == q0["books"][key] + q1["books"][key], key
