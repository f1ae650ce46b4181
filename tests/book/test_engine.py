"""Book semantics on hand-made messages: FIFO levels, replaces, trades, faults, stale books, sessions."""

from __future__ import annotations

import numpy as np
import pytest

from tests.book.conftest import run_stream
from xdpgw.batch import Batch
from xdpgw.book.engine import Books
from xdpgw.book.live import BookFeed
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.protocol import encode_message as m
from xdpgw.protocol.moldudp64 import encode_packet


def stream(*msgs: bytes) -> np.ndarray:
    return np.frombuffer(b"".join(len(x).to_bytes(2, "big") + x for x in msgs), np.uint8)


def directory(*symbols: str) -> list[bytes]:
    return [m("R", locate=i + 1, stock=s) for i, s in enumerate(symbols)]


def add(ref: int, side: bytes, shares: int, px: int, loc: int = 1, stock: str = "AAPL") -> bytes:
    return m("A", locate=loc, order_ref=ref, side=side, shares=shares, stock=stock, price=px)


def test_levels_fifo_replace_joins_the_back():
    books, bbo, _ = run_stream(stream(*directory("AAPL"), add(1, b"B", 100, 10_0000), add(2, b"B", 200, 10_0000),
                                      add(3, b"S", 50, 10_0100),
                                      m("U", locate=1, original_order_ref=1, new_order_ref=4, shares=300, price=10_0000)))
    o = books.orders("AAPL")
    assert o["ref"].tolist() == [2, 4, 3] and o["shares"].tolist() == [200, 300, 50]
    d = books.depth("AAPL", 5)
    assert d["bids"].tolist() == [(500, 10_0000, 2)] and d["asks"].tolist() == [(50, 10_0100, 1)]
    # one BBO record per change: add, add, ask, replace (size 300 -> 500)
    assert bbo["bid_size"].tolist() == [100, 300, 300, 500] and bbo["seq"].tolist() == [2, 3, 4, 5]
    assert bbo["symbol"].tolist() == [b"AAPL    "] * 4
    b = books.bbo("AAPL")
    assert (str(b["bid_price"]), b["bid_size"], b["bid_count"], str(b["ask_price"]), b["ask_size"]) == (
        "10.0000", 500, 2, "10.0100", 50)


def test_trades_execute_at_resting_price_printable_only():
    books, _, trades = run_stream(stream(
        *directory("AAPL"), add(1, b"S", 100, 10_0100),
        m("E", locate=1, order_ref=1, executed_shares=10, match_number=7),
        m("C", locate=1, order_ref=1, executed_shares=10, match_number=8, printable=b"N", execution_price=10_0200),
        m("C", locate=1, order_ref=1, executed_shares=10, match_number=9, printable=b"Y", execution_price=10_0300),
        m("P", locate=1, order_ref=0, side=b"B", shares=5, stock="AAPL", price=10_0050, match_number=10),
        m("Q", locate=1, shares=1000, stock="AAPL", cross_price=10_0000, match_number=11, cross_type=b"O"),
        m("X", locate=1, order_ref=1, cancelled_shares=20)))
    assert trades["kind"].tolist() == [b"E", b"C", b"P", b"Q"]
    assert trades["price"].tolist() == [10_0100, 10_0300, 10_0050, 10_0000]
    assert trades["shares"].tolist() == [10, 10, 5, 1000]
    assert trades["side"].tolist()[:2] == [b"S", b"S"]
    assert books.orders("AAPL")["shares"].tolist() == [50]


def test_faults_are_counted_and_flagged_never_fatal():
    books, bbo, _ = run_stream(stream(
        *directory("AAPL", "MSFT"), add(1, b"B", 100, 10_0000),
        m("E", locate=1, order_ref=99, executed_shares=1, match_number=1),  # unknown order
        m("D", locate=2, order_ref=98),  # unknown order, other book
        m("E", locate=1, order_ref=1, executed_shares=500, match_number=2),  # larger than the order
        add(2, b"B", 100, 10_0000), add(2, b"B", 70, 10_0000),  # a live reference again: replaces it
        add(3, b"S", 0, 10_0000),  # zero shares: rejected
        add(4, b"S", 10, 9_0000),  # an ask below the bid: crossed
        m("X", locate=1, order_ref=4, cancelled_shares=11)))  # larger than the order
    assert books.errors() == {"unknown_order": 2, "oversized_execution": 1, "duplicate_order": 1,
                              "rejected_order": 1, "crossed_book": 1, "oversized_cancel": 1}
    s = books.summary()["symbols"]
    assert set(s["AAPL"]["flags"]) == {"unknown_order", "oversized_execution", "duplicate_order", "rejected_order",
                                       "oversized_cancel"}  # crossed no more: the cancel uncrossed it
    assert s["MSFT"]["flags"] == ["unknown_order"]
    assert books.orders("AAPL")["shares"].tolist() == [70]
    assert bbo["flags"][bbo["ask_price"] == 9_0000][0] & 8  # the crossed flag rides on the record


def test_garbage_is_counted_never_fatal():
    rng = np.random.default_rng(3)
    books, _, _ = run_stream(rng.integers(0, 256, 200_000, dtype=np.uint8))
    assert books.stats()["bad_frames"] > 0


def test_gap_marks_all_stale_until_an_unknown_reference_pinpoints_one():
    books = Books()
    run_stream(stream(*directory("AAPL", "MSFT"), add(1, b"B", 100, 10_0000), add(2, b"B", 100, 20_0000, 2, "MSFT")),
               books)
    books.gap()
    s = books.summary()
    assert s["stale_all"] and sorted(s["stale"]) == ["AAPL", "MSFT"]
    _, bbo, _ = run_stream(stream(add(3, b"S", 5, 10_0100)), books)
    assert bbo["flags"].tolist() == [1]  # the stream says so
    run_stream(stream(m("D", locate=2, order_ref=77)), books)  # MSFT lost an add
    s = books.summary()
    assert not s["stale_all"] and s["stale"] == ["MSFT"] and books.stats()["stale_books"] == 1


def test_book_feed_marks_stale_on_a_given_up_gap_and_restarts_on_a_new_session():
    now = [0.0]
    feed = BookFeed(FeedHandler(clock=lambda: now[0]), clock=lambda: now[0])
    msgs = directory("AAPL") + [add(i, b"B", 100, 10_0000 + i) for i in range(1, 30)]
    pk = [encode_packet("S1", 1 + 5 * k, msgs[5 * k : 5 * k + 5]) for k in range(6)]
    out = feed.on_batch(Batch.from_payloads(pk[:2]))
    assert out is not None and len(out.bbo) == 9 and not feed.books.summary()["stale_all"]
    feed.on_batch(Batch.from_payloads(pk[3:5]))  # packet 2 is lost ...
    now[0] += 10
    out = feed.poll()  # ... and given up
    assert out is not None and (out.bbo["flags"] & 1).all()
    st = feed.stats()
    assert st["missing"] == 5 and st["books"]["stale_all"] and st["books"]["gaps"] == 1
    pk2 = [encode_packet("S2", 1 + 5 * k, msgs[5 * k : 5 * k + 5]) for k in range(2)]
    feed.on_batch(Batch.from_payloads(pk2))
    assert feed.books.summary()["count"] == 1 and feed.books.stats()["live_orders"] == 9


def test_unknown_symbol_query_says_why():
    with pytest.raises(KeyError, match="Stock Directory"):
        Books().bbo("NOPE")


def test_any_decoded_layout_gives_the_same_books():
    """A decoder burst (grouped records), a slice (packed records) and a take (regrouped) apply alike."""
    from xdpgw.protocol.decode import decode_payloads
    from xdpgw.tools.flow import order_flow, packets

    dec = decode_payloads(packets(order_flow(4_000, n_symbols=20, seed=3)))
    whole = Books().apply(dec).bbo.copy()
    b = Books()
    k = len(dec) // 3
    parts = [b.apply(dec.slice(0, k)).bbo.copy(), b.apply(dec.take(np.arange(k, len(dec)))).bbo.copy()]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert len(b.apply(dec.slice(0, 0))) == 0  # nothing applied, nothing reported


def test_books_of_several_queues_merge_counters_and_never_add_prices():
    from xdpgw.pipeline.workers import merge_summaries

    def part(symbols: dict, stale: list[str], **counts) -> dict:
        books = {"symbols": symbols, "errors": counts.pop("errors", {}), "stale": stale, "stale_all": False,
                 "count": len(symbols), "bbo": 1, "trades": 2, "live_orders": 3, "gaps": 0}
        return {"packets": 1, "books": books}

    top = {"bid_price": 10.5, "bid_size": 100, "ask_price": 10.6, "ask_size": 200, "orders": 2}
    other = {"bid_price": 20.0, "bid_size": 5, "ask_price": None, "ask_size": None, "orders": 1}
    out = merge_summaries({0: part({"AAPL": top, "MSFT": top}, ["MSFT"], errors={"unknown_order": 1}),
                           1: part({"AAPL": other}, [], errors={"unknown_order": 2})}, 1.0)
    books = out["books"]
    assert books["symbols"] == {"AAPL@q0": top, "MSFT": top, "AAPL@q1": other}
    assert books["count"] == 3 and books["stale"] == ["MSFT"] and not books["stale_all"]
    assert books["errors"] == {"unknown_order": 3} and (books["bbo"], books["trades"], books["live_orders"]) == (2, 4, 6)
    assert out["queues"]["1"]["books"]["symbols"] == {"AAPL": other}  # each queue's own, untouched
