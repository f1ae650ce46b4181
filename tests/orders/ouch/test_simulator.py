"""The simulator's matching engine, sans-IO: OUCH messages in, each account's sequenced stream out."""

from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch import simulator as sim


def enter(ref, side, qty, price, symbol="MSFT", tif="0", cid=None):
    return m.encode(m.EnterOrder(ref, side, qty, symbol, price, tif, "Y", "A", "N", "N", cid or f"C{ref}"))


class Venue:
    def __init__(self, **kw) -> None:
        self.ex = sim.Exchange(clock=lambda: 1, **kw)
        self.seen: dict[str, int] = {}

    def send(self, user, raw) -> list:
        """Handle one message; return the messages ``user`` got since the last call."""
        self.ex.handle(user, raw)
        return self.news(user)

    def news(self, user) -> list:
        stream = self.ex.account(user).stream
        start = self.seen.get(user, 0)
        self.seen[user] = len(stream)
        return [m.decode(p, inbound=False) for p in stream[start:]]


def kinds(msgs):
    return [type(x).__name__ for x in msgs]


def test_account_stream_starts_with_start_of_day():
    v = Venue()
    assert v.news("U1") == [m.SystemEvent(1, "S")]


def test_price_time_priority_and_partial_fills():
    v = Venue()
    v.news("A"), v.news("B")
    v.send("A", enter(1, "S", 100, 1010))  # worse price
    v.send("A", enter(2, "S", 100, 1000))  # best price, first
    v.send("A", enter(3, "S", 100, 1000))  # best price, second
    got = v.send("B", enter(1, "B", 250, 1010))
    execs = [x for x in got if isinstance(x, m.OrderExecuted)]
    assert [(x.quantity, x.price, x.liquidity_flag) for x in execs] == [(100, 1000, "R"), (100, 1000, "R"),
                                                                        (50, 1010, "R")]
    maker = [x for x in v.news("A") if isinstance(x, m.OrderExecuted)]
    assert [(x.user_ref_num, x.quantity, x.liquidity_flag) for x in maker] == [(2, 100, "A"), (3, 100, "A"),
                                                                               (1, 50, "A")]
    assert [x.match_number for x in maker] == [x.match_number for x in execs]
    assert list(v.ex.accounts["A"].live) == [1] and v.ex.accounts["A"].live[1].qty == 50


def test_no_cross_rests_and_ioc_remainder_is_cancelled():
    v = Venue()
    v.news("A")
    assert kinds(v.send("A", enter(1, "B", 10, 999))) == ["OrderAccepted"]
    got = v.send("A", enter(2, "S", 10, 1000, tif="3"))
    assert kinds(got) == ["OrderAccepted", "OrderCanceled"] and got[1].reason == "I" and got[1].quantity == 10


def test_cross_at_reference_price_fills_without_counterparty():
    v = Venue(cross_at={"AAPL": 1_900_000})
    v.news("A")
    got = v.send("A", enter(1, "B", 100, 1_900_000, "AAPL"))
    assert kinds(got) == ["OrderAccepted", "OrderExecuted"] and got[1].price == 1_900_000
    assert kinds(v.send("A", enter(2, "S", 100, 1_900_100, "AAPL"))) == ["OrderAccepted"]  # above: rests
    got = v.send("A", enter(3, "T", 10, 0, "AAPL"))  # market sell short: fills at the reference
    assert kinds(got) == ["OrderAccepted", "OrderExecuted"]


def test_rejects():
    v = Venue(symbols={"MSFT"}, max_qty=1000)
    v.news("A")
    assert v.send("A", enter(5, "B", 10, 1, "NOPE"))[0].reason == sim.REJECT_SYMBOL
    assert v.send("A", enter(6, "B", 0, 1))[0].reason == sim.REJECT_QTY
    assert v.send("A", enter(7, "B", 1001, 1))[0].reason == sim.REJECT_SHARES
    assert kinds(v.send("A", enter(8, "B", 10, 1))) == ["OrderAccepted"]
    dup = v.send("A", enter(8, "B", 10, 1, cid="AGAIN"))[0]
    assert isinstance(dup, m.OrderRejected) and dup.reason == sim.REJECT_REF and dup.cl_ord_id == "AGAIN"
    assert v.send("A", enter(3, "B", 10, 1))[0].reason == sim.REJECT_REF  # decreasing
    assert v.send("A", enter(9, "X", 10, 1))[0].reason == 0x09  # no such side
    assert v.ex.counts["rejects"] == 6
    assert v.send("A", b"O\x00")  == [] and v.ex.counts["bad_messages"] == 1  # counted, nothing sent


def test_cancel_reduce_and_cancel_reject():
    v = Venue()
    v.news("A")
    v.send("A", enter(1, "B", 100, 1))
    got = v.send("A", m.encode(m.CancelOrder(1, 40)))
    assert got == [m.OrderCanceled(1, 1, 60, "U")]
    assert v.send("A", m.encode(m.CancelOrder(1, 40))) == [m.CancelReject(1, 1)]  # not a reduction
    assert v.send("A", m.encode(m.CancelOrder(1, 0))) == [m.OrderCanceled(1, 1, 40, "U")]
    assert v.send("A", m.encode(m.CancelOrder(1, 0))) == [m.CancelReject(1, 1)]  # gone
    assert v.ex.books["MSFT"].bids == []


def test_replace_moves_the_order_and_may_execute():
    v = Venue()
    v.news("A"), v.news("B")
    v.send("B", enter(1, "S", 30, 1005))
    v.send("A", enter(1, "B", 100, 1000))
    got = v.send("A", m.encode(m.ReplaceOrder(1, 2, 80, 1005, "0", "Y", "N", "NEW")))
    assert kinds(got) == ["OrderReplaced", "OrderExecuted"]
    assert (got[0].orig_user_ref_num, got[0].user_ref_num, got[0].quantity, got[0].cl_ord_id) == (1, 2, 80, "NEW")
    assert got[1].quantity == 30 and v.ex.accounts["A"].live[2].qty == 50
    gone = v.send("A", m.encode(m.ReplaceOrder(1, 3, 80, 1005, "0", "Y", "N", "NEW2")))
    assert isinstance(gone[0], m.OrderRejected) and gone[0].reason == sim.REJECT_REPLACE


def test_modify_and_mass_cancel():
    v = Venue()
    v.news("A")
    v.send("A", enter(1, "S", 100, 1000))
    v.send("A", enter(2, "B", 100, 900, "AAPL"))
    v.send("A", enter(3, "B", 100, 900))
    assert v.send("A", m.encode(m.ModifyOrder(1, "T", 60))) == [m.OrderModified(1, 1, "T", 60)]
    assert v.send("A", m.encode(m.ModifyOrder(1, "B", 10))) == [m.CancelReject(1, 1)]  # sell → buy
    got = v.send("A", m.encode(m.MassCancel(4, "FIRM", "MSFT")))
    assert kinds(got) == ["OrderCanceled", "OrderCanceled", "MassCancelResponse"]
    assert sorted(x.user_ref_num for x in got[:2]) == [1, 3] and got[2].symbol == "MSFT"
    got = v.send("A", m.encode(m.MassCancel(5, "FIRM", "")))
    assert kinds(got) == ["OrderCanceled", "MassCancelResponse"] and got[0].user_ref_num == 2
    assert v.send("A", enter(5, "B", 1, 1))[0].reason == sim.REJECT_REF  # mass cancel used ref 5


def test_end_of_day():
    v = Venue()
    v.news("A")
    v.ex.end_of_day()
    assert v.news("A") == [m.SystemEvent(1, "E")]
    assert isinstance(v.send("A", enter(1, "B", 1, 1))[0], m.OrderRejected)
