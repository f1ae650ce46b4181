"""The order router: risk → route → throttle → journal → connector, and venue events back.

Single-threaded: every call (submit, cancel, replace, kill, poll) runs on the caller's thread; the
only things other threads or signal handlers may do is :meth:`Router.request_kill` (sets a flag the
next ``poll()`` acts on). ``submit`` checks the client's order (:mod:`xdpgw.orders.risk`), splits it
(:mod:`xdpgw.orders.routing`), passes each child through the throttle and sends what may go at once;
``poll`` collects the venues' events, applies them (:mod:`xdpgw.orders.state`), keeps exposure and
latency (send→ack, send→fill), and releases throttled children (risk-checked again as they leave).

With a journal, everything sent and received is recorded (:mod:`xdpgw.orders.journal`); a router
made on an existing journal rebuilds every order, its exposure and the kill switch from it, never
reuses an id it holds, and hands each connector its session values (``give_store``) so sequence
numbers resume and the venue replays what was missed. Fsync policy for new orders: their records (and
the UserRefNums they take) are written before they leave, a burst in one write each; with
``sync_each_send`` (the default) the journal is also ``fdatasync``-ed before they leave (an id on the
wire survives a power cut), without it it is synced by the next ``poll()`` or send once the journal's
``sync_interval_s`` has passed (group commit: ``kill -9``-safe, not power-cut-safe). Cancels,
replaces and the kill switch are always synced before they leave.

Hot paths: ``submit`` of an order that stays whole and finds a throttle slot does only risk, journal and
the connector's send before the order is on the wire, then makes its record (already sent);
``submit_batch`` checks and routes the columns vectorised and sends one write per venue.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace as _replace
from itertools import repeat
from typing import Any

import numpy as np

from xdpgw.errors import GatewayError
from xdpgw.orders.batch import NAMES, OK, BatchPlan, OrderBatch, plan_batch
from xdpgw.orders.journal import Journal, JournalStore
from xdpgw.orders.model import Order, State
from xdpgw.orders.recovery import Recovery
from xdpgw.orders.risk import RiskEngine
from xdpgw.orders.routing import NoRoute, RoutingTable, VenueShare
from xdpgw.orders.state import Blotter, IllegalTransition, OrderRecord, new_record
from xdpgw.orders.throttle import Throttle
from xdpgw.orders.venue import (
    Accepted,
    Connector,
    Event,
    Filled,
    Replaced,
    SessionEvent,
    TradeBroken,
    give_store,
)
from xdpgw.pipeline.histogram import LatencyHistogram

S = State
_SENT, _PENDING_NEW = S.SENT, S.PENDING_NEW
_LATENCY_BULK = 4096  # latencies kept before they go into the histograms (and on any read)
_UNSENT_CANCEL = "cancelled before sending"  # the reason Blotter.cancel_requested gives


class Router:
    """Orders in, venue connectors out. ``connectors``: the venues by name (their ``name``)."""

    def __init__(self, connectors: Iterable[Connector], routing: RoutingTable | None = None,
                 risk: RiskEngine | None = None, throttle: Throttle | None = None,
                 journal: Journal | None = None, clock: Callable[[], int] = time.monotonic_ns,
                 sync_each_send: bool = True) -> None:
        self.connectors: dict[str, Connector] = {}
        for c in connectors:
            if c.name in self.connectors:
                raise GatewayError(f"two venues are named {c.name!r}", "give each venue its own name")
            self.connectors[c.name] = c
        self.routing = routing or RoutingTable(default=tuple(
            VenueShare(n, 1.0, i) for i, n in enumerate(self.connectors, 1)))
        self.risk = risk or RiskEngine()
        self.throttle = throttle or Throttle()
        self.journal = journal
        self.sync_each_send = sync_each_send  # the fsync policy (module docstring)
        self.clock = clock
        self.blotter = Blotter()
        self.client_orders: dict[str, list[str]] = {}  # client id → child ids ([] if denied)
        self.denied_unrecorded: Counter[str] = Counter()  # denials that cannot have a record (reused id)
        self.errors: Counter[str] = Counter()
        self.last_error = ""
        self._ack_hist = LatencyHistogram()
        self._fill_hist = LatencyHistogram()
        self._ack_ns: list[int] = []  # latencies not yet in the histograms (recorded in bulk: _flush_latency)
        self._fill_ns: list[int] = []
        self.resumed = 0  # orders known from the journal at start
        self.mass_cancels = 0
        self._kill_request: str | None = None
        self._down: set[str] = set()  # venues that reported a disconnect
        self._live: frozenset[str] = frozenset()  # connected venues as routing sees them (refreshed)
        self.stores: dict[str, JournalStore] = {}
        self.recovery = Recovery(self)  # settles what a venue never answered, after its replay
        if journal is not None:
            self._restore(journal)
        self._refresh()

    # --- venues -----------------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> None:
        """Log in to every venue (each resuming from its journaled session values)."""
        for name, c in self.connectors.items():
            if self.journal is not None:
                store = self.stores.setdefault(name, JournalStore(self.journal, name))
                give_store(c, store)
                _restore_session(c, store.values)
            c.connect(timeout)
            self._down.discard(name)
            self._save_session(name, login=True)
        self._refresh()
        if self.risk.killed:  # a restart under the kill switch: make sure nothing rests anywhere
            self._mass_cancel_all()

    @property
    def connected(self) -> set[str]:
        return {n for n, c in self.connectors.items() if c.connected and n not in self._down}

    def _refresh(self) -> None:
        live = frozenset(self.connected)
        if live != self._live:
            self._live = live

    def close(self) -> None:
        for c in self.connectors.values():
            try:
                c.close()
            except Exception as e:  # noqa: BLE001 - close every venue even if one fails
                self._error("close", f"{c.name}: {e}")
        if self.journal is not None:
            self.journal.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- orders -----------------------------------------------------------------------------------

    def known(self, cl_ord_id: str) -> bool:
        """The id is in use (a client order, a child, or a replacement) — it will never be sent again."""
        return cl_ord_id in self.client_orders or cl_ord_id in self.blotter

    def submit(self, order: Order) -> list[OrderRecord]:
        """Check, split, throttle and send one client order. Returns its records: the children (sent,
        or pending in the throttle queue, or denied by the throttle's reject policy), or the order
        itself denied by a risk check or for want of a route. A reused id is denied and not recorded
        (the id's first order keeps its record).

        The common case (the order goes whole to one venue, a throttle slot is free) is the
        per-order hot path, one pass with few calls: the reused-id check, the symbol's venue
        (``RoutingTable.whole``), every risk check (``RiskEngine.verdict``: one call), the journal
        (if any), the connector's send, and only then the bookkeeping — the order's record is made
        already sent (pending-new → sent, as ``Blotter.sent`` would move it)."""
        now = self.clock()
        cid = order.cl_ord_id
        if cid in self.client_orders or cid in self.blotter.orders:
            self.risk.deny("duplicate_id")
            self.denied_unrecorded["duplicate_id"] += 1
            return []
        venue = order.venue
        live = self._live
        if venue is None:
            whole = self.routing.whole.get(live)
            venue = whole.get(order.symbol) if whole is not None else None
            if venue is None:
                venue = self.routing.whole_venue(order.symbol, live)
        elif venue not in live:
            venue = ""
        if not venue:  # split across venues, or no route: the general path
            legs = self._check(order, now)
            if type(legs) is not list:
                return [] if legs is None else [legs]
            go: list[tuple[str, Order]] = []
            recs = self._register(order, legs, now, go)
            self._send(go)
            return recs
        why = self.risk.verdict(order, now)
        if why:
            return [self._deny(order, why, now)]
        throttle = self.throttle
        if throttle.active and not throttle.try_acquire(venue, now):
            go = []
            recs = self._register(order, [(venue, order)], now, go)
            self._send(go)
            return recs
        if self.journal is not None:
            self._journal_sends({venue: [order]}, [(venue, order)])
        try:
            ts = self.connectors[venue].send(order)
        except BaseException as e:
            return [self._send_one_failed(cid, venue, order, e)]
        self.client_orders[cid] = [cid]
        rec = self.blotter.orders[cid] = new_record(order, venue, _SENT, ts)
        return [rec]

    def submit_many(self, orders: Iterable[Order]) -> list[OrderRecord]:
        """``submit`` for many orders with one journal sync before they all leave (and one write per
        venue for the orders that go at once)."""
        if type(orders) is list and len(orders) == 1:
            return self.submit(orders[0])
        go: list[tuple[str, Order]] = []
        out: list[OrderRecord] = []
        now = self.clock()
        for o in orders:
            out.extend(self._admit(o, now, go))
        self._send(go)
        return out

    def submit_batch(self, batch: OrderBatch) -> BatchPlan:
        """Many client orders as numpy columns (:class:`~xdpgw.orders.batch.OrderBatch`): risk
        checks and routing vectorised (:func:`~xdpgw.orders.batch.plan_batch`, the same verdicts as
        ``submit`` row by row), then records, throttle and journal (one write, one sync) as ``submit``
        keeps them, and to the wire: one write per venue, its frames encoded from the columns
        (connectors with ``send_rows``; OUCH) — byte for byte what ``submit`` row by row sends.
        Returns the plan (``reasons`` per row, ``denied()``)."""
        orders = batch.orders()  # checks every row first: a bad row raises before anything is reserved
        now = self.clock()
        plan = plan_batch(batch, self.risk, self.routing, self._live, now, encode=False,
                          ids=[o.cl_ord_id for o in orders])
        names, vrow = plan.names, plan.venues
        easy = (plan.reasons == OK) & (vrow >= 0)  # accepted, whole to one venue: recorded in bulk
        if self.throttle.active:
            easy[:] = False  # row by row through the throttle, as submit
        go: list[tuple[str, Order]] = []
        by_venue: dict[str, list[Order]] = {}
        rows: dict[str, list[int]] = {}  # venue → the batch rows it gets whole, in row order
        mixed: set[str] = set()  # venues that also get orders that are not rows (split children)
        legs_of = dict(plan.scalar)
        cuts = [0, *(np.flatnonzero(easy[1:] != easy[:-1]) + 1).tolist(), len(batch)]
        for s, e in zip(cuts, cuts[1:], strict=False):  # runs of rows of one kind, in row order
            if e > s and easy[s]:
                self._record_rows(orders[s:e], s, vrow[s:e], names, go, by_venue, rows)
            else:
                for i in range(s, e):
                    self._record_row(i, orders[i], plan, legs_of, now, go, by_venue, rows, mixed)
        self._send(go, {v: (batch, rs) for v, rs in rows.items() if v not in mixed}, by_venue)
        return plan

    def _record_rows(self, os_: list[Order], first: int, vrow: np.ndarray, names: list[str],
                     go: list[tuple[str, Order]], by_venue: dict[str, list[Order]], rows: dict[str, list[int]]) -> None:
        """Accepted rows, each whole to one venue with a free throttle: their records, in bulk."""
        b = self.blotter.orders
        ids = [o.cl_ord_id for o in os_]
        if not b.keys().isdisjoint(ids):
            self.blotter.add(next(o for o in os_ if o.cl_ord_id in b))  # raises: the id is in use
        vs = [names[v] for v in vrow.tolist()]
        b.update(zip(ids, map(new_record, os_, vs, repeat(_PENDING_NEW)), strict=True))
        self.client_orders.update(zip(ids, [[c] for c in ids], strict=True))
        go += zip(vs, os_, strict=True)
        for k in np.unique(vrow).tolist():
            at = np.flatnonzero(vrow == k)
            name = names[k]
            rows.setdefault(name, []).extend((at + first).tolist())
            by_venue.setdefault(name, []).extend([os_[j] for j in at.tolist()] if len(at) < len(os_) else os_)

    def _record_row(self, i: int, o: Order, plan: BatchPlan, legs_of: dict[int, list[tuple[str, Order]]], now: int,
                    go: list[tuple[str, Order]],
                    by_venue: dict[str, list[Order]], rows: dict[str, list[int]], mixed: set[str]) -> None:
        """One row as ``submit`` would record it: denied, split (children), or through the throttle."""
        why = int(plan.reasons[i])
        if why != OK:
            if self.known(o.cl_ord_id):
                self.denied_unrecorded[NAMES[why]] += 1
            else:
                self._deny(o, NAMES[why], now, counted=True)
            return
        v = int(plan.venues[i])
        if v < 0:  # split on the scalar path: its children
            n = len(go)
            self._register(o, legs_of[i], now, go)
            for venue, child in go[n:]:
                mixed.add(venue)
                by_venue.setdefault(venue, []).append(child)
            return
        n = len(go)
        self._register(o, [(plan.names[v], o)], now, go)
        if len(go) > n:
            venue = plan.names[v]
            rows.setdefault(venue, []).append(i)
            by_venue.setdefault(venue, []).append(o)

    def _check(self, order: Order, now: int) -> list[tuple[str, Order]] | OrderRecord | None:
        """The order's legs if it may go (exposure reserved), else its denial's record (None: a
        reused id, counted but not recorded)."""
        cid = order.cl_ord_id
        if cid in self.client_orders or cid in self.blotter.orders:
            self.risk.deny("duplicate_id")
            self.denied_unrecorded["duplicate_id"] += 1
            return None
        try:
            legs = self.routing.legs(order, self._live)
        except NoRoute as e:
            return self._deny(order, "no_route", now, str(e))
        if len(legs) > 1 and any(self.known(c.cl_ord_id) for _, c in legs):
            return self._deny(order, "duplicate_id", now)
        why = self.risk.accept(order, now, len(legs))
        if why:
            return self._deny(order, why, now, counted=True)
        return legs

    def _admit(self, order: Order, now: int, go: list[tuple[str, Order]]) -> list[OrderRecord]:
        legs = self._check(order, now)
        if type(legs) is not list:
            return [] if legs is None else [legs]
        return self._register(order, legs, now, go)

    def _register(self, order: Order, legs: list[tuple[str, Order]], now: int,
                  go: list[tuple[str, Order]]) -> list[OrderRecord]:
        """An accepted client order's children: records, then a throttle slot (``go``) or the queue."""
        if len(legs) > 1:
            self.risk.seen_ids.update(c.cl_ord_id for _, c in legs)
        self.client_orders[order.cl_ord_id] = [c.cl_ord_id for _, c in legs]
        recs = []
        throttle = self.throttle
        for leg in legs:
            venue, child = leg
            rec = self.blotter.add(child, venue=venue)
            recs.append(rec)
            if not throttle.active or throttle.try_acquire(venue, now):
                go.append(leg)
            elif not throttle.hold(venue, leg):
                self._refuse(rec, "throttle")
        return recs

    def _deny(self, order: Order, reason: str, now: int, detail: str = "", counted: bool = False) -> OrderRecord:
        if not counted:
            self.risk.deny(reason)
        self.risk.seen_ids.add(order.cl_ord_id)
        self.client_orders[order.cl_ord_id] = []
        if self.journal is not None:
            self.journal.denied(order, reason, now)
        return self.blotter.add(order, S.DENIED, reason)

    def _refuse(self, rec: OrderRecord, reason: str) -> None:
        """A child accepted by risk that will not be sent after all (throttle, recheck, kill)."""
        o = rec.order
        self.blotter.move(rec, S.DENIED if reason != "kill switch" else S.CANCELLED, reason)
        self.risk.release(o.symbol, o.side, o.qty)
        if reason != "kill switch":
            self.risk.denied[reason] += 1
        if self.journal is not None:
            self.journal.denied(o, reason, self.clock(), rec.venue)

    def _journal_sends(self, by_venue: Mapping[str, list[Order]], orders: list[tuple[str, Order]]) -> None:
        """Before requests leave: their records, the UserRefNums they will take, then the sync the
        fsync policy asks for (``sync_each_send``)."""
        j = self.journal
        j.orders(orders, self.clock())
        held = getattr(j, "_pending_kv", None) is not None  # puts already held (by poll): leave them
        if not held:
            j.hold_puts()  # the reserved UserRefNums in one write after the orders
        try:
            for name, os_ in by_venue.items():
                self._reserve_refs(name, os_)
        finally:
            if not held:
                j.flush_puts()
        if self.sync_each_send:
            j.sync()
        else:
            j.maybe_sync()

    def _send_one_failed(self, client_id: str, venue: str, order: Order, e: BaseException) -> OrderRecord:
        """``submit``'s send raised: the order's record; denied (send_failed) when it was not sent."""
        self.client_orders[client_id] = [order.cl_ord_id]
        rec = self.blotter.add(order, venue=venue)
        if not isinstance(e, GatewayError | OSError):
            raise e
        self._send_failed(venue, order, e)
        return rec

    def _send(self, orders: list[tuple[str, Order]], rows: Mapping[str, tuple[OrderBatch, list[int]]] | None = None,
              by_venue: dict[str, list[Order]] | None = None) -> None:
        """Journal, then put each (venue, order) on the wire: one write per venue for a burst.
        ``rows``: venues whose orders are exactly these rows of a batch (their frames are encoded
        from its columns by a connector with ``send_rows``); ``by_venue``: ``orders`` grouped by
        venue, when the caller has it."""
        if not orders:
            return
        if by_venue is None:
            by_venue = {}
            for v, o in orders:
                os_ = by_venue.get(v)
                if os_ is None:
                    by_venue[v] = [o]
                else:
                    os_.append(o)
        if self.journal is not None:
            self._journal_sends(by_venue, orders)
        b = self.blotter.orders
        for venue, os_ in by_venue.items():
            conn = self.connectors[venue]
            try:
                if len(os_) == 1:
                    ts = conn.send(os_[0])
                elif rows and venue in rows and hasattr(conn, "send_rows"):  # frames from the columns
                    batch, rs = rows[venue]
                    ts = conn.send_rows(batch, rs, os_)
                elif hasattr(conn, "send_batch"):  # one write for the burst (OUCH)
                    ts = conn.send_batch(os_)
                else:
                    for o in os_:
                        try:
                            ts = conn.send(o)
                        except (GatewayError, OSError) as e:
                            self._send_failed(venue, o, e)
                            continue
                        self._sent(b[o.cl_ord_id], ts)
                    continue
            except (GatewayError, OSError) as e:  # nothing of the burst was sent
                for o in os_:
                    self._send_failed(venue, o, e)
                continue
            for rec in map(b.__getitem__, [o.cl_ord_id for o in os_]):
                if rec.state is _PENDING_NEW:  # Blotter.sent, inlined (pending-new → sent is legal)
                    rec.state = _SENT
                    rec.send_ns = ts
                else:
                    self._sent(rec, ts)

    def _sent(self, rec: OrderRecord, ts: int) -> None:
        self.blotter.move(rec, S.SENT)  # raises (counted) unless the move is legal
        rec.send_ns = ts

    def _send_failed(self, venue: str, o: Order, e: Exception) -> None:
        self._error("send", f"{o.cl_ord_id} to {venue}: {e}")
        self.blotter.move(self.blotter[o.cl_ord_id], S.DENIED, "send_failed")
        if self.journal is not None:
            self.journal.denied(o, "send_failed", self.clock(), venue)
        self.risk.release(o.symbol, o.side, o.qty)

    def cancel(self, cl_ord_id: str, qty: int = 0) -> None:
        """Cancel an order (or reduce it to ``qty`` open shares); a client order's id cancels every
        open child. Cancels pass the kill switch and the throttle."""
        kids = self.client_orders.get(cl_ord_id)
        ids = [cl_ord_id] if kids is None or kids == [cl_ord_id] else [k for k in kids if self.blotter[k].open]
        for i in ids:
            rec = self.blotter[i]
            if rec.state is S.PENDING_NEW and qty:  # still queued by the throttle: it leaves smaller
                self._shrink_queued(rec, qty)
                continue
            if rec.state is S.PENDING_NEW:
                self._unqueue(rec)
                self.blotter.cancel_requested(i)
                self.risk.release(rec.order.symbol, rec.order.side, rec.order.qty)
                if self.journal is not None:  # so a restart does not send it
                    self.journal.denied(rec.order, _UNSENT_CANCEL, self.clock(), rec.venue)
                continue
            if rec.state.final:
                self.blotter.move(rec, S.CANCEL_PENDING, "cancel of a finished order")  # raises, counted
            if rec.state is S.CANCEL_PENDING and not qty:
                raise GatewayError(f"order {i}: a cancel is already pending", "wait for the venue's answer (poll)")
            if qty and (rec.reduce_to or rec.state in (S.CANCEL_PENDING, S.REPLACE_PENDING)):
                raise GatewayError(f"order {i}: a reduction, cancel or replace is already pending",
                                   "wait for the venue's answer (poll), then reduce")
            if self.journal is not None:
                self.journal.cancel(i, qty, self.clock())
                self.journal.sync()
            self.connectors[rec.venue].cancel(i, qty)
            if qty:
                self.blotter.reduce_requested(i, qty)
            else:
                self.blotter.cancel_requested(i)

    def replace(self, orig_id: str, new_id: str, qty: int | None = None, price: int | None = None) -> OrderRecord:
        """Replace a working order by a new one (new id; quantity and/or price). The new order
        passes the order-alone risk checks and the throttle (GatewayError when it has no slot)."""
        rec = self.blotter[orig_id]
        if self.known(new_id):
            raise GatewayError(f"replacement id {new_id} is already in use", "give the replacement a new id")
        new = _replace(rec.order, cl_ord_id=new_id, qty=qty or rec.order.qty,
                       price=rec.order.price if price is None else price, venue=rec.venue, parent_id=None)
        why = self.risk.recheck(new)
        if why:
            raise GatewayError(f"replace of {orig_id} denied by risk check {why}", "change the size or price")
        if rec.state not in (S.ACKNOWLEDGED, S.PARTIALLY_FILLED):
            self.blotter.move(rec, S.REPLACE_PENDING, "replace before ack or after the end")  # raises
        now = self.clock()
        if not self.throttle.try_acquire(new.venue, now):
            self.throttle.throttled += 1
            raise GatewayError(f"replace of {orig_id}: the order rate limit is reached",
                               "retry after the next poll() (throttle window)")
        if self.journal is not None:
            self.journal.replace(orig_id, new, now)
            self._reserve_refs(new.venue, [new])
            self.journal.sync()
        self.risk.seen_ids.add(new_id)
        ts = self.connectors[new.venue].replace(orig_id, new)
        return self.blotter.replace_requested(orig_id, new, ts)

    def _shrink_queued(self, rec: OrderRecord, qty: int) -> None:
        """A reduction of an order the throttle still holds: the queued order itself becomes smaller
        (nothing of it is journaled or sent yet)."""
        o = rec.order
        if qty >= o.qty:
            return
        smaller = _replace(o, qty=qty)
        q = self.throttle.queues.get(rec.venue)
        if q is not None and (rec.venue, o) in q:
            q[q.index((rec.venue, o))] = (rec.venue, smaller)
        self.risk.release(o.symbol, o.side, o.qty - qty, orders=0)
        rec.order, rec.leaves_qty = smaller, qty

    def _unqueue(self, rec: OrderRecord) -> None:
        q = self.throttle.queues.get(rec.venue)
        leg = (rec.venue, rec.order)
        if q is not None and leg in q:
            q.remove(leg)

    # --- the kill switch --------------------------------------------------------------------------

    def request_kill(self, reason: str = "kill switch") -> None:
        """Ask for the kill switch from another thread or a signal handler (acted on by ``poll``)."""
        self._kill_request = reason

    def install_signal(self, signum: int = signal.SIGUSR1) -> None:
        """The kill switch on a signal (default SIGUSR1: ``kill -USR1 PID``); main thread only."""
        signal.signal(signum, lambda s, f: self.request_kill(f"signal {signal.Signals(s).name}"))

    def kill(self, reason: str = "kill switch") -> None:
        """Halt new orders, drop queued ones, cancel every open order at every venue (mass cancel)."""
        self._kill_request = None
        if self.risk.killed:
            return
        self.risk.kill(reason)
        if self.journal is not None:
            self.journal.kill_switch(True, reason, self.clock())
            self.journal.sync()
        for _, (_, child) in self.throttle.drop_all():
            self._refuse(self.blotter[child.cl_ord_id], "kill switch")
        self._mass_cancel_all()

    def resume(self) -> None:
        """Lift the kill switch (new orders are checked again)."""
        self.risk.resume()
        if self.journal is not None:
            self.journal.kill_switch(False, "resumed", self.clock())
            self.journal.sync()

    def _mass_cancel_all(self) -> None:
        for name in self.connected:
            self._mass_cancel(name)

    def _mass_cancel(self, name: str) -> None:
        try:
            self._reserve_refs(name, [None])
            self.connectors[name].mass_cancel()
            self.mass_cancels += 1
        except (GatewayError, OSError) as e:
            self._error("mass_cancel", f"{name}: {e} (retried when it reconnects)")

    # --- events -----------------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, max_events: int = 0) -> int:
        """Collect every venue's events for up to ``timeout`` s and act on them; release throttled
        orders whose slot has come. Returns the number of events. ``max_events`` > 0: about that many
        per venue at most (the rest waits in the connector for the next call: a bounded call, for a
        caller with a feed to get back to)."""
        if self._kill_request is not None:
            self.kill(self._kill_request)
        self._refresh()
        nxt = self.throttle.next_release()
        if nxt is not None:
            timeout = min(timeout, max(0.0, (nxt - self.clock()) / 1e9))
        n = 0
        per = timeout / max(1, len(self.connectors))
        for name, c in self.connectors.items():
            if self.journal is None:
                events = c.poll(per, max_events) if max_events else c.poll(per)
            else:
                self.journal.hold_puts()  # what the connector stores while polling follows its events
                events = c.poll(per, max_events) if max_events else c.poll(per)
                self.journal.events(events)
                self.journal.flush_puts()
            n += len(events)
            self._dispatch(name, events, live=True)
            if self.journal is not None:
                self._save_session(name, login=any(isinstance(e, SessionEvent) and e.kind == "connected"
                                                   for e in events))
        self._release_throttled()
        if self.recovery.waiting:
            self.recovery.step()
        if len(self._ack_ns) + len(self._fill_ns) >= _LATENCY_BULK:
            self._flush_latency()
        if self.journal is not None:
            self.journal.maybe_sync()
        return n

    @property
    def ack_latency(self) -> LatencyHistogram:
        """send → ack per order (CLOCK_MONOTONIC ns)."""
        self._flush_latency()
        return self._ack_hist

    @property
    def fill_latency(self) -> LatencyHistogram:
        """send → each fill."""
        self._flush_latency()
        return self._fill_hist

    def _flush_latency(self) -> None:
        """Into the histograms in bulk: one numpy call per few thousand latencies, not one per poll (a
        histogram call on a handful of values costs more than the poll's events themselves)."""
        if self._ack_ns:
            self._ack_hist.record_many(self._ack_ns)
            self._ack_ns.clear()
        if self._fill_ns:
            self._fill_hist.record_many(self._fill_ns)
            self._fill_ns.clear()

    def _release_throttled(self) -> None:
        if not self.throttle.queued:
            return
        go = []
        for _, leg in self.throttle.release(self.clock()):
            venue, child = leg
            rec = self.blotter[child.cl_ord_id]
            why = self.risk.recheck(child)
            if why:
                self.blotter.move(rec, S.DENIED, why)
                self.risk.release(child.symbol, child.side, child.qty)
                if self.journal is not None:
                    self.journal.denied(child, why, self.clock(), venue)
            else:
                go.append(leg)
        self._send(go)

    def on_events(self, venue: str, events: list[Event]) -> None:
        """Apply events a venue reported outside ``poll()`` (journaled first)."""
        if self.journal is not None and events:
            self.journal.events(events)
        self._dispatch(venue, events, live=True)

    def _dispatch(self, venue: str, events: list[Event], live: bool) -> None:
        for ev in events:
            if isinstance(ev, SessionEvent):
                self._session(venue, ev, replaying=not live)
            else:
                self._apply(ev, live=live)

    def _session(self, venue: str, ev: SessionEvent, replaying: bool) -> None:
        if not replaying:
            self.recovery.on_session(venue, ev)
        if ev.kind == "connected":
            self._down.discard(venue)
            if self.risk.killed and not replaying:
                self._mass_cancel(venue)
        elif ev.kind in ("disconnected", "ended", "rejected"):
            self._down.add(venue)
        self._refresh()

    def _apply(self, ev: Event, live: bool) -> None:
        b = self.blotter
        key = ev.orig_cl_ord_id if isinstance(ev, Replaced) else ev.cl_ord_id
        before = b.orders.get(key)
        if before is None:
            b.unknown += 1
            return
        was_open, leaves0, acked0 = before.open, before.leaves_qty, before.ack_ns
        try:
            rec = b.apply(ev)
        except IllegalTransition as e:
            self._error("illegal_transition", str(e))
            return
        if rec is None:
            return
        o = before.order
        if isinstance(ev, Filled):
            self.risk.on_fill(o.symbol, o.side, ev.qty)
            if live and not rec.resumed:
                self._fill_ns.append(ev.ts_ns - rec.send_ns)
            if was_open and rec.state.final:
                self.risk.release(o.symbol, o.side, 0)
            return
        if isinstance(ev, TradeBroken):
            qty = rec.broken[-1][0]
            self.risk.on_broken(o.symbol, o.side, qty)
            return
        if isinstance(ev, Replaced):
            self.risk.release(o.symbol, o.side, leaves0)
            if rec is not before:
                self.risk.add_open(o.symbol, o.side, rec.leaves_qty, orders=1)
            if live and not rec.resumed and rec.ack_ns:
                self._ack_ns.append(rec.ack_ns - rec.send_ns)
            return
        if isinstance(ev, Accepted) and live and not acked0 and rec.ack_ns and not rec.resumed:
            self._ack_ns.append(rec.ack_ns - rec.send_ns)
        final_now = was_open and rec.state.final
        delta = max(0, leaves0 - rec.leaves_qty)
        if delta or final_now:
            self.risk.release(o.symbol, o.side, delta, 1 if final_now else 0)

    # --- connector session state in the journal -------------------------------------------------

    def _store(self, name: str) -> JournalStore:
        st = self.stores.get(name)
        if st is None:
            st = self.stores[name] = JournalStore(self.journal, name)
        return st

    def _reserve_refs(self, name: str, orders: list[Order | None]) -> None:
        """Before requests leave for a venue that numbers them (OUCH UserRefNums: the connector's
        ``next_user_ref_num``, one per request): journal the numbers they will take and the next one,
        so a restart resumes above them. ``None`` stands for a request without an order id."""
        c = self.connectors.get(name)
        if self.journal is None or c is None or not hasattr(c, "next_user_ref_num"):
            return
        st, ref = self._store(name), c.next_user_ref_num
        for o in orders:
            if o is not None:
                st.put(f"ref:{ref}", o.cl_ord_id)
            ref += 1
        st.put("next_user_ref_num", str(ref))

    def _save_session(self, name: str, login: bool = False) -> None:
        """After a venue's events are journaled: its next expected sequence number (and, after a
        login, the session name), so a restart asks the venue to replay from there."""
        c = self.connectors[name]
        if self.journal is None:
            return
        if hasattr(c, "next_sequence"):
            self._store(name).put("next_sequence", str(c.next_sequence))
        if login and hasattr(c, "session_state"):
            self._store(name).put("session", c.session_state().session)

    def _error(self, kind: str, text: str) -> None:
        self.errors[kind] += 1
        self.last_error = text

    # --- restart ----------------------------------------------------------------------------------

    def _restore(self, journal: Journal) -> None:
        """Rebuild orders, exposure, kill switch and session values from an earlier run's journal."""
        b, risk = self.blotter, self.risk
        for r in journal.records():
            try:
                if r.kind == "O":
                    o = r.order
                    if o.cl_ord_id in b and b[o.cl_ord_id].state is S.SENT:  # sent again (recovery)
                        b[o.cl_ord_id].send_ns = r.ts_ns
                        continue
                    client = o.parent_id or o.cl_ord_id
                    if client not in self.client_orders:
                        parent = _replace(o, cl_ord_id=client, parent_id=None)
                        risk.commit(parent, r.ts_ns, children=0)
                        self.client_orders[client] = []
                    self.client_orders[client].append(o.cl_ord_id)
                    risk.seen_ids.add(o.cl_ord_id)
                    risk.add_open(o.symbol, o.side, 0, orders=1)
                    b.add(o)
                    b.sent(o.cl_ord_id, r.ts_ns).resumed = True
                elif r.kind == "D":
                    o = r.order
                    risk.seen_ids.add(o.cl_ord_id)
                    if o.cl_ord_id in b:  # a child refused after it was accepted (throttle, kill)
                        continue
                    if o.parent_id:  # a throttled child that never left
                        self.client_orders.setdefault(o.parent_id, []).append(o.cl_ord_id)
                    else:
                        self.client_orders.setdefault(o.cl_ord_id, [])
                    b.add(o, S.CANCELLED if r.reason in ("kill switch", _UNSENT_CANCEL) else S.DENIED, r.reason)
                elif r.kind == "X":
                    if r.cl_ord_id in b and b[r.cl_ord_id].open and b[r.cl_ord_id].state is not S.PENDING_NEW:
                        if r.qty:
                            b.reduce_requested(r.cl_ord_id, r.qty)
                        else:
                            b.cancel_requested(r.cl_ord_id)
                elif r.kind == "R":
                    risk.seen_ids.add(r.order.cl_ord_id)
                    if r.order.cl_ord_id in b:  # a replace sent again (recovery)
                        continue
                    b.replace_requested(r.cl_ord_id, r.order, r.ts_ns).resumed = True
                elif r.kind == "E":
                    if not isinstance(r.event, SessionEvent):
                        self._apply(r.event, live=False)
                elif r.kind == "K":
                    st = self.stores.get(r.scope)
                    if st is None:
                        st = self.stores[r.scope] = JournalStore(journal, r.scope)
                    st.values[r.key] = r.value
                elif r.kind == "S":
                    if r.on:
                        risk.kill(r.reason)
                    else:
                        risk.resume()
            except GatewayError as e:
                self._error("journal", f"{r.kind} record: {e}")
        # open quantities of the orders still working, as the events left them
        for e in risk.exposure.values():
            e.open_buy = e.open_sell = 0
        for rec in b.orders.values():
            if rec.open:
                risk.add_open(rec.order.symbol, rec.order.side, rec.leaves_qty)
        self.resumed = len(self.client_orders)

    # --- reporting --------------------------------------------------------------------------------

    def open_orders(self) -> list[OrderRecord]:
        return [r for r in self.blotter.orders.values() if r.open]

    def settled(self, unconfirmed_ok: bool = False) -> bool:
        """Nothing waits for a venue's answer: every order is final or resting (acknowledged and
        not pending a cancel, reduction or replace), nothing is queued by the throttle, and every
        venue that logged in has replayed what we missed (a killed run's fills may be in that replay).
        ``unconfirmed_ok``: also excuse an order a killed run journaled as sent that a venue which
        cannot reconcile (no ``forget``, see :mod:`xdpgw.orders.recovery`) never confirmed."""
        if self.throttle.queued or self.recovery.awaiting_replay:
            return False
        return all(r.state.final or (r.state in (S.ACKNOWLEDGED, S.PARTIALLY_FILLED) and not r.reduce_to)
                   or (unconfirmed_ok and r.resumed and r.state is S.SENT
                       and not hasattr(self.connectors.get(r.venue), "forget"))
                   for r in self.blotter.orders.values())

    def summary(self) -> dict[str, Any]:
        recs = self.blotter.orders.values()
        states = Counter(r.state for r in recs)
        rejected = Counter(r.reason or "unknown" for r in recs if r.state is S.REJECTED)
        denied = Counter(r.reason or "unknown" for r in recs if r.state is S.DENIED) + self.denied_unrecorded
        lat = {}
        for key, h in (("send_ack", self.ack_latency), ("send_fill", self.fill_latency)):
            p = h.percentiles()
            lat[key] = {k: int(p[k]) for k in ("count", "min", "p50", "p90", "p99", "p99.9", "max")}
        return {
            "orders": len(self.client_orders) + sum(self.denied_unrecorded.values()),
            "child_orders": sum(1 for r in recs if r.state is not S.DENIED or r.order.parent_id),
            "sent": sum(1 for r in recs if r.send_ns),
            "acked": sum(1 for r in recs if r.ack_ns),
            "filled": states[S.FILLED],
            "partially_filled": sum(1 for r in recs if r.cum_qty and r.state is not S.FILLED),
            "cancelled": states[S.CANCELLED],
            "replaced": states[S.REPLACED],
            "expired": states[S.EXPIRED],
            "rejected": dict(rejected),
            "denied": dict(denied),
            "throttled": self.throttle.throttled,
            "queued": self.throttle.queued,
            "open": sum(1 for r in recs if r.open),
            "unconfirmed": sum(1 for r in recs if r.resumed and r.state is S.SENT),
            "filled_qty": sum(r.cum_qty for r in recs),
            "positions": self.risk.positions(),
            "states": {str(k): v for k, v in states.items()},
            "latency_ns": lat,
            "kill_switch": self.risk.killed,
            "mass_cancels": self.mass_cancels,
            "recovered": dict(self.recovery.counts),
            "resumed": self.resumed,
            "errors": dict(self.errors) | ({"illegal_transitions": sum(self.blotter.illegal.values())}
                                           if self.blotter.illegal else {}),
            "event_duplicates": self.blotter.duplicates,
            "event_unknown": self.blotter.unknown,
            "venues": {n: dict(c.stats()) for n, c in self.connectors.items()},
        }


def _restore_session(c: Connector, values: Mapping[str, str]) -> None:
    """Hand a connector with ``session_state()``/``restore()`` (OUCH) what the journal kept."""
    if not values or not hasattr(c, "restore") or not hasattr(c, "session_state"):
        return
    base = c.session_state()
    refs = {int(k[4:]): v for k, v in values.items() if k.startswith("ref:")}
    c.restore(_replace(base, next_user_ref_num=int(values.get("next_user_ref_num", base.next_user_ref_num)),
                          next_sequence=int(values.get("next_sequence", base.next_sequence)),
                          session=values.get("session", base.session), refs=refs))


def stats_for_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a router summary into the numeric keys ``xdpgw.ops.metrics`` exports (``xdpgw_stat{name}``)."""
    out: dict[str, Any] = {}
    for k, v in summary.items():
        if isinstance(v, bool):
            out[k] = int(v)
        elif isinstance(v, int | float):
            out[k] = v
        elif k in ("rejected", "denied", "recovered") and isinstance(v, Mapping):
            for reason, n in v.items():
                out[f"{k}_{reason}"] = n
        elif k == "latency_ns":
            for kind, p in v.items():
                for q in ("p50", "p99"):
                    out[f"latency_{kind}_{q}_ns"] = p[q]
    return out
