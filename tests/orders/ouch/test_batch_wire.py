"""The batch API all the way to the wire: ``Router.submit_batch`` over a real OUCH session sends one
write per venue, the simulator accepts every order with the states ``submit`` row by row gives, and
the two paths put the same bytes on the wire and the same orders in the journal."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from xdpgw.orders import ouch
from xdpgw.orders.batch import OrderBatch
from xdpgw.orders.journal import Journal
from xdpgw.orders.model import PRICE_SCALE, Order, Side, State, Tif
from xdpgw.orders.ouch import soupbin as sb
from xdpgw.orders.ouch.connector import OuchConnector
from xdpgw.orders.ouch.simulator import Exchange, VenueServer
from xdpgw.orders.risk import RiskEngine, RiskLimits
from xdpgw.orders.router import Router
from xdpgw.orders.routing import RoutingTable, VenueShare

from .conftest import raw_venue, wait

S = State
CROSS = 100 * PRICE_SCALE  # the simulator fills buys at or above this on its own


def basket(n: int = 240) -> list[Order]:
    """Filled (CROSS buys), resting (MSFT buys far below), IOC cancelled (MSFT sells, nothing to
    take), denied by risk (restricted TSLA, over max_qty) and a reused id."""
    out = []
    for i in range(n):
        k = i % 6
        if k == 0:
            out.append(Order(f"F{i}", "CROSS", Side.BUY, 100 + i, CROSS + 100))
        elif k in (1, 2):
            out.append(Order(f"R{i}", "MSFT", Side.BUY, 10 + i, 5 * PRICE_SCALE, Tif.DAY))
        elif k == 3:
            out.append(Order(f"I{i}", "MSFT", Side.SELL_SHORT, 7, 900 * PRICE_SCALE, Tif.IOC))
        elif k == 4:
            out.append(Order(f"D{i}", "TSLA" if i % 4 else "MSFT", Side.BUY, 100 if i % 4 else 10**6, PRICE_SCALE))
        else:
            out.append(Order(f"F{i - 5}", "MSFT", Side.BUY, 1, PRICE_SCALE))  # the id of row i-5: reused
    return out


def router(conns: list, journal: Journal | None = None, routing: RoutingTable | None = None) -> Router:
    return Router(conns, routing=routing, journal=journal, clock=lambda: 5,
                  risk=RiskEngine(RiskLimits(max_qty=50_000, restricted=frozenset({"TSLA"}))))


def sim() -> VenueServer:
    return VenueServer("127.0.0.1", 0, Exchange(cross_at={"CROSS": CROSS}), heartbeat_interval=0.2, timeout=5.0)


def conn(port: int, name: str = "v", user: str = "U1", **kw) -> OuchConnector:
    return OuchConnector(name, "127.0.0.1", port, user=user, heartbeat_interval=0.2, timeout=5.0, **kw)


def states(r: Router) -> dict:
    return {i: (x.state, x.reason, x.venue, x.order, x.cum_qty, x.leaves_qty) for i, x in r.blotter.orders.items()}


def settle(r: Router, done: Callable[[], bool] | None = None) -> None:
    wait(lambda: r.settled() and (done is None or done()), 10, step=lambda: r.poll(0.02))


def test_submit_batch_reaches_the_simulator_in_one_write_with_the_states_of_submit():
    orders = basket()
    servers = [sim(), sim()]
    routers: list[Router] = []
    try:
        for s in servers:
            s.start()
        one, many = (router([conn(s.port)]) for s in servers)
        routers += [one, many]
        for r in routers:
            r.connect(5)
        for o in orders:
            one.submit(o)
        writes0 = many.connectors["v"].stats()["writes"]
        plan = many.submit_batch(OrderBatch.from_orders(orders))
        assert many.connectors["v"].stats()["writes"] == writes0 + 1  # the whole burst in one write
        sent = [o.cl_ord_id for o, why in zip(orders, plan.reasons.tolist(), strict=True) if not why]
        assert len(sent) == 160 and all(many.blotter[i].state is S.SENT and many.blotter[i].send_ns for i in sent)
        for r in routers:
            settle(r)
        assert states(one) == states(many)
        got = {i: (x.state, x.cum_qty) for i, x in many.blotter.orders.items()}
        for o in orders[:5]:  # (row 5 reuses the id of row 0)
            assert got[o.cl_ord_id] == {"F": (S.FILLED, o.qty), "R": (S.ACKNOWLEDGED, 0),
                                        "I": (S.CANCELLED, 0), "D": (S.DENIED, 0)}[o.cl_ord_id[0]]
        assert many.summary()["denied"] == one.summary()["denied"] == {"restricted": 20, "max_qty": 20,
                                                                       "duplicate_id": 40}
        accepted = servers[1].call(lambda s: [m.cl_ord_id for m in map(_decode, s.exchange.accounts["U1"].stream)
                                              if isinstance(m, ouch.messages.OrderAccepted)])
        assert accepted == sent  # every order reached the venue, in row order
        assert many.risk.exposure == one.risk.exposure
    finally:
        for r in routers:
            r.close()
        for s in servers:
            s.stop()


def _decode(payload: bytes):
    return ouch.messages.decode(payload, inbound=False)


class Recorder:
    """A SoupBinTCP peer that accepts the login and keeps every byte the client sends after it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = threading.Lock()

    def serve(self, c: socket.socket, stop: threading.Event) -> None:
        c.settimeout(0.05)
        login = b""
        while len(login) < 49 and not stop.is_set():
            try:
                login += c.recv(49 - len(login))
            except TimeoutError:
                continue
        c.sendall(sb.encode_login_accepted("REC", 1))
        while not stop.is_set():
            try:
                chunk = c.recv(1 << 16)
            except TimeoutError:
                continue
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def unsequenced(self) -> list[bytes]:
        """The 'U' packets' payloads (heartbeats dropped)."""
        with self.lock:
            buf = bytes(self.data)
        out, i = [], 0
        while i + 3 <= len(buf):
            n = int.from_bytes(buf[i:i + 2], "big")
            if buf[i + 2:i + 3] == b"U":
                out.append(buf[i + 3:i + 2 + n])
            i += 2 + n
        return out


@pytest.mark.parametrize("split", [False, True], ids=["one-venue", "split"])
def test_single_and_batch_paths_put_the_same_bytes_on_the_wire_and_in_the_journal(tmp_path, split):
    """Row by row (``submit``) and as a batch: the same Enter Order frames byte for byte (and
    UserRefNums), the same records, the same journal records. ``split``: IBM is split across two
    venues (the batch's scalar path, frames encoded order by order, still one write per venue)."""
    orders = basket(120) + [Order(f"P{i}", "IBM", Side.BUY, 250, PRICE_SCALE) for i in range(10)]
    recs = [Recorder() for _ in range(4)]
    table = RoutingTable(rules={"IBM": (VenueShare("a", 1, 1), VenueShare("b", 1, 2))} if split else {},
                         default=(VenueShare("a"),))
    with raw_venue(recs[0].serve) as p0, raw_venue(recs[1].serve) as p1, \
            raw_venue(recs[2].serve) as p2, raw_venue(recs[3].serve) as p3:
        js = [Journal(str(tmp_path / f"{k}.journal")) for k in ("one", "many")]
        one = router([conn(p0, "a"), conn(p1, "b")], js[0], table)
        many = router([conn(p2, "a"), conn(p3, "b")], js[1], table)
        try:
            for r in (one, many):
                r.connect(5)
            for o in orders:
                one.submit(o)
            many.submit_batch(OrderBatch.from_orders(orders))
            writes = {v: c.stats()["writes"] for v, c in many.connectors.items()}
            assert writes == {"a": 2, "b": 2 if split else 1}  # the login, then one write per venue
            assert states(one) == states(many)
            frames = [sum(1 for x in one.blotter.orders.values() if x.send_ns and x.venue == v) for v in "ab"]
            assert frames == ([80 + 10, 10] if split else [90, 0])
            wait(lambda: [len(r.unsequenced()) for r in recs] == frames * 2)
            for a, b in ((0, 2), (1, 3)):
                assert recs[a].unsequenced() == recs[b].unsequenced()
        finally:
            one.close()
            many.close()
    logs = []
    for j in js:
        with open(j.path) as f:
            lines = f.read().splitlines()
        kv = {}
        for line in lines:
            f = line.split("\t")
            if f[0] == "K":
                kv[(f[1], f[2])] = f[3]
        logs.append(([ln for ln in lines if ln[0] == "O"], [ln for ln in lines if ln[0] == "D"], kv))
    assert logs[0] == logs[1]  # the batch writes its denials as it goes, its orders in one write before they leave


def test_a_send_that_fails_denies_the_orders_and_releases_their_exposure(venue, tmp_path):
    """The connection broken under the router: ``submit`` and ``submit_batch`` record every order
    denied (send_failed), in the journal too, and give back the exposure they reserved."""
    j = Journal(str(tmp_path / "j"))
    r = router([conn(venue.port, reconnect=False)], j)
    try:
        r.connect(5)
        r.connectors["v"]._sock.shutdown(socket.SHUT_WR)  # the next send(2) fails with EPIPE
        one = r.submit(Order("A1", "MSFT", Side.BUY, 100, PRICE_SCALE))
        r.submit_batch(OrderBatch.from_orders([Order(f"B{i}", "MSFT", Side.BUY, 100, PRICE_SCALE) for i in range(3)]))
        assert [x.order.cl_ord_id for x in one] == ["A1"]
        assert {i: (x.state, x.reason) for i, x in r.blotter.orders.items()} == {
            i: (S.DENIED, "send_failed") for i in ("A1", "B0", "B1", "B2")}
        assert r.errors["send"] >= 1 and r.risk.exposure["MSFT"].open_orders == 0
        assert r.risk.exposure["MSFT"].open_buy == 0
    finally:
        r.close()
    denied = [ln.split("\t")[2] for ln in (tmp_path / "j").read_text().splitlines() if ln.startswith("D")]
    assert denied == ["A1", "B0", "B1", "B2"]
