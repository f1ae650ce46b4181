"""The order state machine: every legal and illegal transition, fills, and venue events."""

from __future__ import annotations

import pytest

from xdpgw.orders.model import Order, Side, State
from xdpgw.orders.state import TRANSITIONS, Blotter, IllegalTransition, UnknownOrder
from xdpgw.orders.venue import (
    Accepted,
    Cancelled,
    CancelRejected,
    Expired,
    Filled,
    Rejected,
    Replaced,
    SessionEvent,
    TradeBroken,
)

S = State
LEGAL = [(a, b) for a, bs in TRANSITIONS.items() for b in bs]
ILLEGAL = [(a, b) for a in State for b in State if b not in TRANSITIONS[a]]


def order(i="O1", qty=300, price=100_0000, side=Side.BUY) -> Order:
    return Order(i, "AAPL", side, qty, price)


def at(state: State) -> tuple[Blotter, object]:
    b = Blotter()
    rec = b.add(order())
    rec.state = state  # put it there directly: the table is what is under test
    return b, rec


def test_table_covers_every_state_and_finals_are_terminal():
    assert set(TRANSITIONS) == set(State)
    for s in State:
        assert (TRANSITIONS[s] == frozenset()) == s.final
    assert len(LEGAL) + len(ILLEGAL) == len(State) ** 2


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_legal_transition(src, dst):
    b, rec = at(src)
    b.move(rec, dst)
    assert rec.state is dst
    assert not b.illegal


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_illegal_transition_raises_and_is_counted(src, dst):
    b, rec = at(src)
    with pytest.raises(IllegalTransition, match=f"illegal transition {src} -> {dst}"):
        b.move(rec, dst)
    assert rec.state is src
    assert b.illegal[f"{src}->{dst}"] == 1


def sent(b: Blotter, o: Order | None = None):
    o = o or order()
    b.add(o)
    return b.sent(o.cl_ord_id, 10)


def test_fills_accumulate_cum_avg_leaves():
    b = Blotter()
    rec = sent(b)
    b.apply(Accepted("O1", "X1", 300, 100_0000, 20))
    assert (rec.state, rec.ack_ns, rec.venue_order_id) == (S.ACKNOWLEDGED, 20, "X1")
    b.apply(Filled("O1", 100, 100_0000, "m1", "A", 30))
    assert (rec.state, rec.cum_qty, rec.leaves_qty) == (S.PARTIALLY_FILLED, 100, 200)
    b.apply(Filled("O1", 100, 101_0000, "m2", "R", 31))
    assert rec.avg_price == pytest.approx(100_5000)
    b.apply(Filled("O1", 100, 102_0000, "m3", "R", 32))
    assert (rec.state, rec.cum_qty, rec.leaves_qty, rec.fill_ns) == (S.FILLED, 300, 0, 30)
    assert rec.avg_price == pytest.approx(101_0000)


def test_replayed_events_are_duplicates_not_double_counted():
    b = Blotter()
    rec = sent(b)
    ack, fill = Accepted("O1", "X1", 300, 100_0000, 20), Filled("O1", 100, 100_0000, "m1", "A", 30)
    for ev in (ack, fill, ack, fill):
        b.apply(ev)
    assert (rec.cum_qty, b.duplicates) == (100, 2)


def test_second_ack_with_another_venue_id_is_illegal():
    b = Blotter()
    sent(b)
    b.apply(Accepted("O1", "X1", 300, 1, 20))
    with pytest.raises(IllegalTransition):
        b.apply(Accepted("O1", "X2", 300, 1, 21))


def test_fill_before_ack_then_late_ack():
    b = Blotter()
    rec = sent(b)
    b.apply(Filled("O1", 300, 100_0000, "m1", "A", 30))
    assert rec.state is S.FILLED
    b.apply(Accepted("O1", "X1", 300, 100_0000, 31))
    assert (rec.state, rec.ack_ns) == (S.FILLED, 31)


def test_reject_and_ack_after_reject():
    b = Blotter()
    rec = sent(b)
    b.apply(Rejected("O1", "0x06 fat finger", 20))
    assert (rec.state, rec.reason, rec.leaves_qty) == (S.REJECTED, "0x06 fat finger", 0)
    with pytest.raises(IllegalTransition):
        b.apply(Accepted("O1", "X1", 300, 1, 21))


def test_cancel_flow_partial_cancel_and_cancel_reject():
    b = Blotter()
    rec = sent(b)
    b.apply(Accepted("O1", "X1", 300, 1, 20))
    b.cancel_requested("O1")
    assert rec.state is S.CANCEL_PENDING
    b.apply(CancelRejected("O1", "too late", 21))
    assert rec.state is S.ACKNOWLEDGED
    b.apply(Cancelled("O1", 100, "U", 22))  # a reduce: 200 left
    assert (rec.state, rec.leaves_qty) == (S.ACKNOWLEDGED, 200)
    b.cancel_requested("O1")
    b.apply(Filled("O1", 50, 1, "m1", "A", 23))  # a fill while the cancel is pending
    assert (rec.state, rec.cum_qty) == (S.CANCEL_PENDING, 50)
    b.apply(Cancelled("O1", 150, "U", 24))
    assert (rec.state, rec.leaves_qty, rec.reason) == (S.CANCELLED, 0, "U")
    b.apply(Cancelled("O1", 150, "U", 24))
    assert b.duplicates == 1


def test_cancel_before_ack_then_cancel_reject_goes_back_to_sent():
    b = Blotter()
    rec = sent(b)
    b.cancel_requested("O1")
    b.apply(CancelRejected("O1", "unknown order", 21))
    assert rec.state is S.SENT


def test_pending_new_cancel_is_immediate():
    b = Blotter()
    rec = b.add(order())
    b.cancel_requested("O1")
    assert rec.state is S.CANCELLED


def test_replace_flow():
    b = Blotter()
    rec = sent(b)
    b.apply(Accepted("O1", "X1", 300, 1, 20))
    new = b.replace_requested("O1", order("O2", qty=500, price=2), 25)
    assert (rec.state, new.state) == (S.REPLACE_PENDING, S.SENT)
    got = b.apply(Replaced("O1", "O2", "X2", 500, 2, 30))
    assert got is new
    assert (rec.state, rec.replaced_by, new.state, new.leaves_qty, new.venue_order_id) == \
        (S.REPLACED, "O2", S.ACKNOWLEDGED, 500, "X2")


def test_replace_refused_original_lives_on():
    b = Blotter()
    rec = sent(b)
    b.apply(Accepted("O1", "X1", 300, 1, 20))
    b.apply(Filled("O1", 100, 1, "m1", "A", 21))
    new = b.replace_requested("O1", order("O2"), 25)
    b.apply(Rejected("O2", "bad price", 26))
    assert (rec.state, new.state) == (S.PARTIALLY_FILLED, S.REJECTED)
    new2 = b.replace_requested("O1", order("O3"), 27)
    b.apply(CancelRejected("O1", "too late", 28))
    assert (rec.state, new2.state) == (S.PARTIALLY_FILLED, S.REJECTED)


def test_expired_broken_unknown_session():
    b = Blotter()
    rec = sent(b)
    b.apply(Accepted("O1", "X1", 300, 1, 20))
    b.apply(Filled("O1", 100, 5, "m1", "A", 21))
    b.apply(TradeBroken("O1", "m1", "E", 22))
    assert (rec.cum_qty, rec.notional, b.broken) == (0, 0, 1)
    b.apply(Expired("O1", 23))
    assert rec.state is S.EXPIRED
    assert b.apply(Filled("nope", 1, 1, "z", "A", 1)) is None
    assert b.unknown == 1
    assert b.apply(SessionEvent("connected", "", 1)) is None
    with pytest.raises(UnknownOrder):
        b["nope"]


def test_fill_on_dead_order_is_counted_not_resurrected():
    b = Blotter()
    rec = sent(b)
    b.apply(Cancelled("O1", 300, "U", 20))
    b.apply(Filled("O1", 100, 5, "m1", "A", 21))
    assert (rec.state, rec.cum_qty, b.overfills) == (S.CANCELLED, 100, 1)
    assert b.illegal["cancelled->fill"] == 1
