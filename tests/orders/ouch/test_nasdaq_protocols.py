"""Against a counterparty nobody here wrote: Nasdaq's own ``nasdaq-protocols`` (PyPI).

* its OUCH message framework (``ouch.Message`` records of its big-endian types), with the OUCH 5.0
  layouts written out from the doc in its vocabulary, encodes and decodes exactly our bytes;
* its SoupBinTCP server (``soup.SoupServerSession``) carries a small OUCH venue that our
  ``OuchConnector`` trades with: login, orders, acks, fills, cancels, replaces, heartbeats both ways,
  dead peer, reconnect with replay, End of Session;
* its SoupBinTCP/OUCH client (``ouch.connect_async``) trades with our simulator.

nasdaq-protocols ships no OUCH 5.0 definitions (applications bring an XML spec or classes) and has no
type for a byte-counted appendage, so :class:`Appendage` below is the one piece written here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import defaultdict

import nasdaq_protocols.common as npc  # the test extras install it (pyproject): a missing one fails
import pytest
from nasdaq_protocols import ouch, soup
from nasdaq_protocols.common import (
    CharAscii,
    Field,
    FixedAsciiString,
    Record,
    TypeDefinition,
    UnsignedIntBE,
    UnsignedLongBE,
    UnsignedShortBE,
)
from nasdaq_protocols.soup.soup_app import SoupAppMessageId

from xdpgw.orders.model import Order, Side
from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch.connector import OuchConnector
from xdpgw.orders.ouch.simulator import Exchange, VenueServer
from xdpgw.orders.venue import Accepted, Cancelled, Filled, Replaced, SessionEvent

from .conftest import collect, kinds, of, wait
from .test_messages import SAMPLES


class Appendage(TypeDefinition):
    """AppendageLength u2 (bytes) + the appendage's bytes."""

    to_str = staticmethod(bytes.hex)
    from_str = staticmethod(bytes.fromhex)
    to_bytes = staticmethod(lambda v: (2 + len(v), len(v).to_bytes(2, "big") + v))
    from_bytes = staticmethod(lambda b: (2 + int.from_bytes(b[:2], "big"),
                                         bytes(b[2:2 + int.from_bytes(b[:2], "big")])))
    hint = "bytes"
    type_cls = bytes
    default_value = b""


U4, U8, U2, C = UnsignedIntBE, UnsignedLongBE, UnsignedShortBE, CharAscii


def A(n):  # noqa: N802 - alpha field of n characters
    return FixedAsciiString(n)


def fields(*spec):
    return [Field(name, kind) for name, kind in spec]


# OUCH 5.0 from docs/order-protocols.md, in nasdaq-protocols' vocabulary ('incoming' = client → exchange)
class NpEnterOrder(ouch.Message, indicator=ord("O"), direction="incoming"):
    class BodyRecord(Record):
        Fields = fields(("user_ref_num", U4), ("side", C), ("quantity", U4), ("symbol", A(8)), ("price", U8),
                        ("time_in_force", C), ("display", C), ("capacity", C), ("inter_market_sweep", C),
                        ("cross_type", C), ("cl_ord_id", A(14)), ("appendage", Appendage))


class NpReplaceOrder(ouch.Message, indicator=ord("U"), direction="incoming"):
    class BodyRecord(Record):
        Fields = fields(("orig_user_ref_num", U4), ("user_ref_num", U4), ("quantity", U4), ("price", U8),
                        ("time_in_force", C), ("display", C), ("inter_market_sweep", C), ("cl_ord_id", A(14)),
                        ("appendage", Appendage))


class NpCancelOrder(ouch.Message, indicator=ord("X"), direction="incoming"):
    class BodyRecord(Record):
        Fields = fields(("user_ref_num", U4), ("quantity", U4))


class NpModifyOrder(ouch.Message, indicator=ord("M"), direction="incoming"):
    class BodyRecord(Record):
        Fields = fields(("user_ref_num", U4), ("side", C), ("quantity", U4))


class NpMassCancel(ouch.Message, indicator=ord("C"), direction="incoming"):
    class BodyRecord(Record):
        Fields = fields(("user_ref_num", U4), ("firm", A(4)), ("symbol", A(8)), ("appendage", Appendage))


class NpSystemEvent(ouch.Message, indicator=ord("S"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("event_code", C))


_ACCEPTED = (("side", C), ("quantity", U4), ("symbol", A(8)), ("price", U8), ("time_in_force", C), ("display", C),
             ("order_reference_number", U8), ("capacity", C), ("inter_market_sweep", C), ("cross_type", C),
             ("order_state", C), ("cl_ord_id", A(14)), ("appendage", Appendage))


class NpOrderAccepted(ouch.Message, indicator=ord("A"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4), *_ACCEPTED)


class NpOrderReplaced(ouch.Message, indicator=ord("U"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("orig_user_ref_num", U4), ("user_ref_num", U4), *_ACCEPTED)


class NpOrderCanceled(ouch.Message, indicator=ord("C"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4), ("quantity", U4), ("reason", C))


class NpOrderExecuted(ouch.Message, indicator=ord("E"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4), ("quantity", U4), ("price", U8),
                        ("liquidity_flag", C), ("match_number", U8), ("appendage", Appendage))


class NpOrderRejected(ouch.Message, indicator=ord("J"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4), ("reason", U2), ("cl_ord_id", A(14)))


class NpBrokenTrade(ouch.Message, indicator=ord("B"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4), ("match_number", U8), ("reason", C),
                        ("cl_ord_id", A(14)))


class NpCancelPending(ouch.Message, indicator=ord("P"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4))


class NpCancelReject(ouch.Message, indicator=ord("I"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4))


class NpOrderModified(ouch.Message, indicator=ord("M"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4), ("side", C), ("quantity", U4))


class NpMassCancelResponse(ouch.Message, indicator=ord("X"), direction="outgoing"):
    class BodyRecord(Record):
        Fields = fields(("timestamp", U8), ("user_ref_num", U4), ("firm", A(4)), ("symbol", A(8)),
                        ("appendage", Appendage))


NP_OF = {m.EnterOrder: NpEnterOrder, m.ReplaceOrder: NpReplaceOrder, m.CancelOrder: NpCancelOrder,
         m.ModifyOrder: NpModifyOrder, m.MassCancel: NpMassCancel, m.SystemEvent: NpSystemEvent,
         m.OrderAccepted: NpOrderAccepted, m.OrderReplaced: NpOrderReplaced, m.OrderCanceled: NpOrderCanceled,
         m.OrderExecuted: NpOrderExecuted, m.OrderRejected: NpOrderRejected, m.BrokenTrade: NpBrokenTrade,
         m.CancelPending: NpCancelPending, m.CancelReject: NpCancelReject, m.OrderModified: NpOrderModified,
         m.MassCancelResponse: NpMassCancelResponse}


def np_message(cls, **values):
    msg = cls()
    for name, value in values.items():
        setattr(msg, name, value)
    return msg


def np_decode(data: bytes, direction: str):
    """nasdaq-protocols' generic ``Message.from_bytes`` only finds 'outgoing' (exchange → client)
    classes; a server reads client messages through the class's record."""
    cls = ouch.Message.get_msg_cls_by_indicator(SoupAppMessageId(data[0], direction))
    _, record = cls.BodyRecord.from_bytes(data[1:])
    return cls(record)


def values_of(np_msg) -> dict:
    return dict(np_msg.record.values)


# --- 1. the codecs agree byte for byte --------------------------------------------------------------


@pytest.mark.parametrize("ours", SAMPLES, ids=lambda s: type(s).__name__)
def test_nasdaq_protocols_encodes_and_decodes_our_bytes(ours):
    cls = NP_OF[type(ours)]
    values = dataclasses.asdict(ours)
    theirs = np_message(cls, **values)
    assert theirs.to_bytes()[1] == m.encode(ours)
    back = np_decode(m.encode(ours), "incoming" if ours.INBOUND else "outgoing")
    assert type(back) is cls and values_of(back) == values


def test_nasdaq_protocols_reads_the_worked_example():
    from .test_messages import WORKED

    _, packet = soup.SoupMessage.from_bytes(WORKED)
    assert isinstance(packet, soup.UnSequencedData)
    order = np_decode(packet.data, "incoming")
    assert (order.user_ref_num, order.side, order.quantity, order.symbol, order.price, order.cl_ord_id) == (
        113, "T", 225, "CVLT", 630_200, "H8FUB8IV")
    assert m.parse_appendage(order.appendage) == ({"firm": "LIME"}, 0)


# --- 2. our connector against nasdaq-protocols' SoupBinTCP server ------------------------------------


class NpVenue:
    """A small OUCH venue on nasdaq-protocols' SoupBinTCP server: acks everything, fills orders for
    symbol FILL at their price, cancels and replaces open orders, keeps each user's sequenced stream."""

    def __init__(self, local_hb: float = 0.1, remote_hb: float = 1.0) -> None:
        self.streams: dict[str, list[bytes]] = defaultdict(list)
        self.open: dict[tuple[str, int], list] = {}
        self.sessions: list = []
        self.sever_next = False
        self.logins: list[tuple[str, int]] = []
        self.matches = 0
        venue = self

        class Session(soup.SoupServerSession):
            async def on_login(self, msg):
                stream = venue.streams[msg.user]
                asked = int(msg.sequence)
                start = len(stream) + 1 if asked == 0 else min(asked, len(stream) + 1)
                venue.logins.append((msg.user, asked))
                venue.sessions.append(self)
                asyncio.get_running_loop().call_soon(self._replay, stream, start)
                return soup.LoginAccepted("NPVENUE", start)

            def _replay(self, stream, start):
                for payload in stream[start - 1:]:
                    self.send_seq_msg(payload)

            async def on_unsequenced(self, msg):
                user = self.session_id.user
                stream = venue.streams[user]
                before = len(stream)
                venue.handle(user, np_decode(msg.data, "incoming"))
                if venue.sever_next:
                    venue.sever_next = False
                    self.initiate_close()  # stored, never written: the client must ask for a replay
                    return
                for payload in stream[before:]:
                    self.send_seq_msg(payload)

        self.session_cls = Session
        self.local_hb, self.remote_hb = local_hb, remote_hb
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="np-venue")

    def handle(self, user: str, msg) -> None:
        out = self.streams[user]
        if isinstance(msg, NpEnterOrder):
            self.open[(user, msg.user_ref_num)] = [msg.cl_ord_id, msg.quantity, msg]
            out.append(np_message(NpOrderAccepted, timestamp=1, user_ref_num=msg.user_ref_num, side=msg.side,
                                  quantity=msg.quantity, symbol=msg.symbol, price=msg.price,
                                  time_in_force=msg.time_in_force, display=msg.display,
                                  order_reference_number=1000 + msg.user_ref_num, capacity=msg.capacity,
                                  inter_market_sweep="N", cross_type="N", order_state="L",
                                  cl_ord_id=msg.cl_ord_id, appendage=b"").to_bytes()[1])
            if msg.symbol == "FILL":
                self.matches += 1
                out.append(np_message(NpOrderExecuted, timestamp=2, user_ref_num=msg.user_ref_num,
                                      quantity=msg.quantity, price=msg.price, liquidity_flag="R",
                                      match_number=self.matches, appendage=b"").to_bytes()[1])
                del self.open[(user, msg.user_ref_num)]
        elif isinstance(msg, NpCancelOrder):
            entry = self.open.get((user, msg.user_ref_num))
            if entry is None or msg.quantity >= entry[1]:
                out.append(np_message(NpCancelReject, timestamp=3, user_ref_num=msg.user_ref_num).to_bytes()[1])
                return
            out.append(np_message(NpOrderCanceled, timestamp=3, user_ref_num=msg.user_ref_num,
                                  quantity=entry[1] - msg.quantity, reason="U").to_bytes()[1])
            entry[1] = msg.quantity
            if not msg.quantity:
                del self.open[(user, msg.user_ref_num)]
        elif isinstance(msg, NpReplaceOrder):
            entry = self.open.pop((user, msg.orig_user_ref_num))
            orig = entry[2]
            self.open[(user, msg.user_ref_num)] = [msg.cl_ord_id, msg.quantity, orig]
            out.append(np_message(NpOrderReplaced, timestamp=4, orig_user_ref_num=msg.orig_user_ref_num,
                                  user_ref_num=msg.user_ref_num, side=orig.side, quantity=msg.quantity,
                                  symbol=orig.symbol, price=msg.price, time_in_force=msg.time_in_force,
                                  display=msg.display, order_reference_number=2000 + msg.user_ref_num,
                                  capacity=orig.capacity, inter_market_sweep="N", cross_type="N",
                                  order_state="L", cl_ord_id=msg.cl_ord_id, appendage=b"").to_bytes()[1])

    def start(self) -> NpVenue:
        self.thread.start()

        def factory():
            return self.session_cls(client_heartbeat_interval=self.local_hb,
                                    server_heartbeat_interval=self.remote_hb)

        fut = asyncio.run_coroutine_threadsafe(npc.start_server(("127.0.0.1", 0), factory), self.loop)
        self.server, self.task = fut.result(60)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def run(self, fn):
        async def call():
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(60)

    def stop(self) -> None:
        async def shutdown():
            for s in self.sessions:
                await s.close()
            self.server.close()
            await npc.stop_task(self.task)
            # End every task the sessions left (readers, monitors, dispatchers) here, on this loop: a
            # task abandoned in a closed loop is finalized later on another thread, where its
            # dispatcher meets a queue of this loop and spins without yielding (nasdaq-protocols 1.3.0).
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture
def np_venue():
    v = NpVenue().start()
    try:
        yield v
    finally:
        v.stop()



def test_connector_trades_with_nasdaq_protocols_server(np_venue):
    c = OuchConnector("np", "127.0.0.1", np_venue.port, user="NQ1", password="pw", firm="LIME",
                      heartbeat_interval=0.1, timeout=5.0)
    try:
        c.connect(5)
        assert c.connected and np_venue.logins == [("NQ1", 1)]
        c.send(Order("F1", "FILL", Side.BUY, 100, 1_000_000))
        c.send(Order("R1", "REST", Side.SELL_SHORT, 300, 2_000_000))
        evs = collect(c, lambda e: len(of(e, Accepted)) == 2 and of(e, Filled))
        assert [(a.cl_ord_id, a.qty, a.price) for a in of(evs, Accepted)] == [("F1", 100, 1_000_000),
                                                                            ("R1", 300, 2_000_000)]
        assert [(f.cl_ord_id, f.qty, f.exec_id) for f in of(evs, Filled)] == [("F1", 100, "1")]
        c.cancel("R1", 100)
        assert of(collect(c, lambda e: of(e, Cancelled)), Cancelled)[0].qty == 200
        c.replace("R1", Order("R2", "REST", Side.SELL_SHORT, 50, 2_000_100))
        rep = of(collect(c, lambda e: of(e, Replaced)), Replaced)[0]
        assert (rep.orig_cl_ord_id, rep.cl_ord_id, rep.qty, rep.price) == ("R1", "R2", 50, 2_000_100)
        # idle: nasdaq-protocols' server drops a client silent for its heartbeat interval (1 s)
        wait(lambda: c.stats()["heartbeats_received"] >= 15, timeout=15, step=lambda: c.poll(0.05))
        assert c.connected and c.stats()["disconnects"] == 0 and c.stats()["heartbeats_sent"] >= 10
    finally:
        c.close()


def test_reconnect_replays_from_nasdaq_protocols_server(np_venue):
    c = OuchConnector("np", "127.0.0.1", np_venue.port, user="NQ1", password="pw", heartbeat_interval=0.1,
                      timeout=5.0, reconnect_delay=0.01)
    try:
        c.connect(5)
        c.send(Order("A1", "REST", Side.BUY, 10, 1))
        collect(c, lambda e: of(e, Accepted))
        np_venue.sever_next = True
        c.send(Order("A2", "FILL", Side.BUY, 10, 5))  # acked and filled, but never written
        evs = collect(c, lambda e: of(e, Filled))
        evs += c.poll(0.3)
        assert kinds(evs) == ["disconnected", "connected"]
        assert [e.cl_ord_id for e in of(evs, Accepted)] == ["A2"] and len(of(evs, Filled)) == 1
        assert np_venue.logins == [("NQ1", 1), ("NQ1", 2)]  # asked for the message after A1's ack (1)
    finally:
        c.close()


def test_dead_peer_and_end_of_session_with_nasdaq_protocols_server():
    mute = NpVenue(local_hb=1000.0, remote_hb=1000.0).start()  # never heartbeats
    try:
        c = OuchConnector("np", "127.0.0.1", mute.port, user="NQ1", heartbeat_interval=0.05, timeout=0.4,
                          reconnect_delay=0.01)
        c.connect(5)
        evs = collect(c, lambda e: len(kinds(e)) >= 3)
        assert kinds(evs) == ["connected", "disconnected", "connected"]
        assert "dead peer" in of(evs, SessionEvent)[1].detail
        mute.run(lambda: mute.sessions[-1].end_session())
        evs = collect(c, lambda e: [x for x in of(e, SessionEvent) if x.kind == "ended"])
        assert not c.connected and c.poll(0.2) == []
        c.close()
    finally:
        mute.stop()


# --- 3. nasdaq-protocols' client against our simulator -----------------------------------------------


def test_nasdaq_protocols_client_trades_with_our_simulator():
    server = VenueServer(exchange=Exchange(cross_at={"AAPL": 1_900_000}), heartbeat_interval=0.1).start()

    async def session():
        s = await ouch.connect_async(("127.0.0.1", server.port), "NQ2", "pw", "", sequence=1,
                                     client_heartbeat_interval=0.1, server_heartbeat_interval=1)
        s.send_message(np_message(NpEnterOrder, user_ref_num=1, side="B", quantity=100, symbol="AAPL",
                                  price=1_905_000, time_in_force="0", display="Y", capacity="A",
                                  inter_market_sweep="N", cross_type="N", cl_ord_id="NP1",
                                  appendage=m.encode_appendage(firm="NQ")))
        s.send_message(np_message(NpEnterOrder, user_ref_num=1, side="B", quantity=1, symbol="AAPL", price=1,
                                  time_in_force="0", display="Y", capacity="A", inter_market_sweep="N",
                                  cross_type="N", cl_ord_id="DUP", appendage=b""))
        got = [await asyncio.wait_for(s.receive_message(), 5) for _ in range(4)]
        await asyncio.sleep(0.5)  # idle: both sides heartbeat; nobody drops
        assert not s.closed
        await s.close()
        return got

    try:
        system, accepted, executed, rejected = asyncio.run(session())
        assert isinstance(system, NpSystemEvent) and system.event_code == "S"
        assert isinstance(accepted, NpOrderAccepted) and accepted.cl_ord_id == "NP1"
        assert m.parse_appendage(accepted.appendage)[0] == {"firm": "NQ"}
        assert isinstance(executed, NpOrderExecuted) and (executed.quantity, executed.price) == (100, 1_900_000)
        assert isinstance(rejected, NpOrderRejected) and m.reject_text(rejected.reason).endswith("UserRefNum")
        stats = server.call(lambda s: s.stats())
        assert stats["heartbeats_received"] >= 1 and stats["malformed"] == 0
    finally:
        server.stop()
