"""Our books against two engines nobody here wrote, on the same generated day.

itch-book (C++ ITCH book engine): the whole BBO stream, the trades and the final books (50 levels
per side). itchcpp (C++ book engine): the final BBO of every symbol. Also the MoldUDP64 path (decode
→ sequence-ordered bursts → ``Books.apply``) against the daily-file path.
"""

from __future__ import annotations

import numpy as np
from itch_book._core import Session

from tests.book.conftest import run_stream
from xdpgw.batch import Batch
from xdpgw.book.engine import Books
from xdpgw.protocol.decode import Decoder
from xdpgw.tools.flow import packets

DEPTH = 50


def itch_book(stream: np.ndarray, tables: list[str], depth: int = 0) -> Session:
    s = Session(tables=tables, depth=depth, symbols=[])
    s.reserve(len(stream) // 10)
    s.feed(stream)
    return s


def test_every_message_type_occurs(day):
    assert len(set(day.types.tolist())) == 23
    assert len(day.symbols) == 300


def test_bbo_stream_equals_itch_book(day, ours):
    books, bbo, _ = ours
    s = itch_book(day.stream, ["bbo"])
    ref = s.take_bbo()
    assert len(bbo) > 30_000
    assert len(ref["seq"]) == len(bbo)
    np.testing.assert_array_equal(ref["seq"], bbo["seq"])  # both count messages from 1
    for mine, theirs in (("locate", "locate"), ("ts", "ts"), ("bid_price", "bid_px"), ("bid_size", "bid_sz"),
                         ("bid_count", "bid_ct"), ("ask_price", "ask_px"), ("ask_size", "ask_sz"),
                         ("ask_count", "ask_ct")):
        np.testing.assert_array_equal(bbo[mine], ref[theirs], err_msg=mine)
    st = s.stats()
    assert st["missing_ref"] == st["dup_ref"] == st["rejected"] == st["clamped"] == st["crossed_books"] == 0
    assert st["live_orders"] == books.stats()["live_orders"]
    assert books.errors() == {}


def test_trades_equal_itch_book(day, ours):
    _, _, trades = ours
    ref = itch_book(day.stream, ["trades"]).take_trades()
    keep = ref["kind"] != ord("B")  # broken trades: not in our trade stream
    ref = {k: v[keep] for k, v in ref.items()}
    assert len(trades) > 5_000 and len(ref["seq"]) == len(trades)
    np.testing.assert_array_equal(ref["seq"], trades["seq"])
    np.testing.assert_array_equal(ref["kind"], trades["kind"].view(np.uint8))
    np.testing.assert_array_equal(ref["px"], trades["price"])
    np.testing.assert_array_equal(ref["size"], trades["shares"])
    np.testing.assert_array_equal(ref["match"], trades["match"])
    ec = np.isin(trades["kind"], [b"E", b"C"])  # the resting side and order (itch-book says N for P and Q)
    np.testing.assert_array_equal(ref["side"][ec], trades["side"][ec].view(np.uint8))
    np.testing.assert_array_equal(ref["order_id"][ec], trades["order_ref"][ec])


def test_final_books_equal_itch_book(day, ours):
    books, _, _ = ours
    ref = itch_book(day.stream, [], depth=DEPTH).take_depth()
    last = {}
    for i, loc in enumerate(ref["locate"].tolist()):
        last[loc] = i
    tops = books.tops()
    assert len(tops) == 300
    compared = 0
    for t in tops:
        sym, loc = t["symbol"].decode().strip(), int(t["locate"])
        depth = books.depth(sym, DEPTH)
        i = last[loc]
        for side, name in (("bid", "bids"), ("ask", "asks")):
            mine = depth[name]
            theirs = np.array([(ref[f"{side}_px_{k:02d}"][i], ref[f"{side}_sz_{k:02d}"][i], ref[f"{side}_ct_{k:02d}"][i])
                               for k in range(DEPTH)])
            theirs = theirs[theirs[:, 0] != 0]
            assert len(mine) == len(theirs), (sym, side)
            np.testing.assert_array_equal(mine["price"], theirs[:, 0])
            np.testing.assert_array_equal(mine["shares"], theirs[:, 1])
            np.testing.assert_array_equal(mine["count"], theirs[:, 2])
            compared += len(mine)
        # L3 agrees with L2: every level is the sum of its orders, in FIFO order of the book
        orders = books.orders(sym)
        assert len(orders) == t["orders"]
        for side, name in ((b"B", "bids"), (b"S", "asks")):
            o = orders[orders["side"] == side]
            px, first = np.unique(o["price"], return_index=True)
            sums = np.add.reduceat(o["shares"].astype(np.int64), np.sort(first)) if len(o) else []
            lv = books.depth(sym, 10_000)[name]
            assert sorted(lv["price"].tolist()) == px.tolist()
            np.testing.assert_array_equal(np.sort(np.asarray(sums)), np.sort(lv["shares"].astype(np.int64)))
    assert compared > 5_000


def test_final_bbo_equals_itchcpp(day, ours):
    import itchcpp.book

    books, _, _ = ours
    m = itchcpp.book.BookManager()
    for sym in day.symbols:
        m.track_symbol(sym)
    m.process_stream(day.stream.tobytes())
    assert m.book_count() == 300
    for sym in day.symbols:
        q, mine = m.book_for_symbol(sym).bbo(), books.bbo(sym)
        assert q.has_bid == (mine["bid_price"] is not None) and q.has_ask == (mine["ask_price"] is not None), sym
        if q.has_bid:
            assert (round(q.bid_price * 10_000), q.bid_shares) == (mine["bid_price"].scaleb(4), mine["bid_size"]), sym
        if q.has_ask:
            assert (round(q.ask_price * 10_000), q.ask_shares) == (mine["ask_price"].scaleb(4), mine["ask_size"]), sym


def test_moldudp64_path_equals_file_path(day, ours):
    """Decoded bursts (per-type records in message order) give the same BBO stream as the daily file."""
    _, bbo, trades = ours
    pk = packets(day, per_packet=25)
    dec = Decoder()
    books = Books(burst=256)  # small: the output buffers grow when a burst needs more
    got, got_t = [], []
    for a in range(0, len(pk), 64):
        d = dec.decode(Batch.from_payloads(pk[a : a + 64]))
        upd = books.apply(d)
        got.append(upd.bbo.copy())
        got_t.append(upd.trades.copy())
    np.testing.assert_array_equal(np.concatenate(got), bbo)
    np.testing.assert_array_equal(np.concatenate(got_t), trades)


def test_subscription_keeps_only_those_books(day, ours):
    books, bbo, _ = ours
    few, fbbo, _ = run_stream(day.stream, Books(["AAPL", "S0123"]))
    assert sorted(few.summary()["symbols"]) == ["AAPL", "S0123"]
    mask = np.isin(bbo["symbol"], [b"AAPL    ", b"S0123   "])
    np.testing.assert_array_equal(fbbo, bbo[mask])
    assert few.bbo("AAPL") == books.bbo("AAPL")
