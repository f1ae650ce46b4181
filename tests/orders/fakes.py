"""A scripted in-memory venue connector for the router's pure-logic tests (no I/O)."""

from __future__ import annotations

import itertools

from xdpgw.orders.model import Order
from xdpgw.orders.venue import (
    Accepted,
    Cancelled,
    Event,
    Filled,
    MemoryStore,
    Rejected,
    Replaced,
    SessionEvent,
)


class FakeConnector:
    """Records requests; events are queued by the test (or auto-acked) and handed out by ``poll``."""

    def __init__(self, name: str = "v1", auto_ack: bool = True, connected: bool = True) -> None:
        self.name = name
        self.auto_ack = auto_ack
        self._connected = connected
        self.store = MemoryStore()
        self.sent: list[Order] = []
        self.cancels: list[tuple[str, int]] = []
        self.replaces: list[tuple[str, Order]] = []
        self.mass_cancels: list[str | None] = []
        self.events: list[Event] = []
        self.live: dict[str, int] = {}  # id → open qty
        self._t = itertools.count(1_000)
        self._oid = itertools.count(1)
        self.wire = None  # a file every sent id is written to (the kill -9 test's witness)

    @property
    def connected(self) -> bool:
        return self._connected

    def now(self) -> int:
        return next(self._t)

    def connect(self, timeout: float = 5.0) -> None:
        self._connected = True

    def send(self, order: Order) -> int:
        self.sent.append(order)
        self.store.put("next_ref", str(len(self.sent) + 1))
        ts = self.now()
        if self.wire is not None:
            self.wire.write(order.cl_ord_id + "\n")
            self.wire.flush()
        if self.auto_ack:
            self.events.append(Accepted(order.cl_ord_id, str(next(self._oid)), order.qty, order.price, self.now()))
            self.live[order.cl_ord_id] = order.qty
        return ts

    def cancel(self, cl_ord_id: str, qty: int = 0) -> int:
        self.cancels.append((cl_ord_id, qty))
        return self.now()

    def replace(self, orig_cl_ord_id: str, new: Order) -> int:
        self.replaces.append((orig_cl_ord_id, new))
        return self.now()

    def mass_cancel(self, symbol: str | None = None) -> int:
        self.mass_cancels.append(symbol)
        for i, q in list(self.live.items()):
            self.events.append(Cancelled(i, q, "U", self.now()))
            del self.live[i]
        return self.now()

    def fill(self, cl_ord_id: str, qty: int, price: int, exec_id: str) -> None:
        self.events.append(Filled(cl_ord_id, qty, price, exec_id, "A", self.now()))
        if cl_ord_id in self.live:
            self.live[cl_ord_id] -= qty
            if self.live[cl_ord_id] <= 0:
                del self.live[cl_ord_id]

    def reject(self, cl_ord_id: str, reason: str) -> None:
        self.events.append(Rejected(cl_ord_id, reason, self.now()))

    def replaced(self, orig: str, new: str, qty: int, price: int) -> None:
        self.events.append(Replaced(orig, new, "r" + new, qty, price, self.now()))

    def drop(self) -> None:
        self._connected = False
        self.events.append(SessionEvent("disconnected", "test", self.now()))

    def poll(self, timeout: float = 0.0, max_events: int = 0) -> list[Event]:
        n = max_events if max_events > 0 else len(self.events)
        out, self.events = self.events[:n], self.events[n:]
        return out

    def stats(self) -> dict[str, int]:
        return {"sent": len(self.sent), "cancels": len(self.cancels), "replaces": len(self.replaces),
                "events": 0, "reconnects": 0, "heartbeats_sent": 0}

    def close(self) -> None:
        self._connected = False
