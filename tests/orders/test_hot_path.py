"""The router's one-order hot path (``submit``: risk, journal, send, then the record) keeps what the
general path keeps, and the journal's fsync policy holds either way."""

from __future__ import annotations

import pytest

from tests.orders.fakes import FakeConnector
from xdpgw.orders.journal import Journal
from xdpgw.orders.model import PRICE_SCALE, Order, Side, State, Tif
from xdpgw.orders.risk import RiskEngine, RiskLimits
from xdpgw.orders.router import Router
from xdpgw.orders.throttle import Throttle

S = State


def basket() -> list[Order]:
    out = []
    for i in range(40):
        sym = ("AAPL", "MSFT", "TSLA")[i % 3]
        out.append(Order(f"H{i}" if i % 7 else "H1", sym, Side.BUY if i % 2 else Side.SELL_SHORT, 100 * (1 + i % 4),
                         PRICE_SCALE * (1 + i % 5), Tif.IOC if i % 5 else Tif.DAY))
    return out


def make(throttle: Throttle | None = None, journal: Journal | None = None, **kw) -> Router:
    return Router([FakeConnector("a")], risk=RiskEngine(RiskLimits(max_qty=300, restricted=frozenset({"TSLA"}))),
                  throttle=throttle, journal=journal, clock=lambda: 7, **kw)


def view(r: Router) -> tuple:
    recs = {i: (x.state, x.reason, x.venue, x.order, x.send_ns, x.ack_ns, x.leaves_qty)
            for i, x in r.blotter.orders.items()}
    return recs, r.client_orders, dict(r.risk.denied), r.denied_unrecorded, r.risk.exposure, \
        [o.cl_ord_id for o in r.connectors["a"].sent], r.throttle.throttled, r.throttle.queued


@pytest.mark.parametrize("throttle", [None, 5], ids=["free", "throttled"])
def test_submit_keeps_what_the_general_path_keeps(throttle):
    """One by one (``submit``: the hot path while a slot is free) and as one burst (``submit_many``:
    records first, then the sends) leave the same records, ids, denials, exposure and queue."""
    one, many = (make(Throttle(per_venue=throttle) if throttle else None) for _ in range(2))
    for o in basket():
        one.submit(o)
    many.submit_many(basket())
    assert view(one) == view(many)
    one.poll()
    many.poll()
    assert view(one) == view(many)
    assert one.blotter["H4"].state is S.ACKNOWLEDGED and one.blotter["H2"].reason == "restricted"


def test_submit_returns_the_sent_record_and_later_polls_apply_to_it():
    r = make()
    (rec,) = r.submit(Order("Q1", "AAPL", Side.BUY, 100, PRICE_SCALE))
    assert rec is r.blotter["Q1"] and rec.state is S.SENT and rec.send_ns and r.client_orders["Q1"] == ["Q1"]
    r.poll()
    assert rec.state is S.ACKNOWLEDGED and r.summary()["latency_ns"]["send_ack"]["count"] == 1
    assert r.submit(Order("Q1", "AAPL", Side.BUY, 100, PRICE_SCALE)) == []  # the id again: denied, not recorded
    assert r.denied_unrecorded["duplicate_id"] == 1 and len(r.connectors["a"].sent) == 1


class Witness(FakeConnector):
    """Checks, as each order leaves, that the journal already holds it."""

    def __init__(self, path: str) -> None:
        super().__init__("a")
        self.path = path

    def send(self, order: Order) -> int:
        with open(self.path) as f:
            assert f"O\t7\t{order.cl_ord_id}\t" in f.read()
        return super().send(order)


@pytest.mark.parametrize("each", [True, False], ids=["sync-each-send", "group-commit"])
def test_journal_written_before_each_send_and_synced_as_the_policy_says(tmp_path, each):
    path = str(tmp_path / "j")
    j = Journal(path, sync_interval_s=3600)
    r = Router([Witness(path)], journal=j, clock=lambda: 7, sync_each_send=each)
    for i in range(5):
        r.submit(Order(f"W{i}", "AAPL", Side.BUY, 100, PRICE_SCALE))
    r.submit_many([Order(f"M{i}", "AAPL", Side.BUY, 100, PRICE_SCALE) for i in range(3)])
    assert len(r.connectors["a"].sent) == 8
    assert j.syncs == (6 if each else 0)  # one per send (a burst is one); or none before the interval
    r.close()
    assert j.syncs >= 1  # close syncs
