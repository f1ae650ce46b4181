"""One order state machine for every venue: legal transitions, fills, and venue events applied.

:data:`TRANSITIONS` lists every legal move; anything else raises :class:`IllegalTransition` (and is
counted in ``Blotter.illegal``), so a venue reporting nonsense is never silently absorbed. A fill
adds to ``cum_qty`` / ``notional`` (``avg_price`` is their ratio, in ticks) and takes from
``leaves_qty``; a cancel event takes its decrement from ``leaves_qty`` (0 left: cancelled, else the
order lives on, reduced). A reduction (a cancel down to N open shares) leaves the state as it is and
is kept in ``reduce_to`` until the venue answers it: the next partial cancel or cancel reject for the
order is its answer (it was asked before any cancel or replace still pending). Events repeated after
a reconnect (same fill ``exec_id``, an ack for an order already acknowledged) are counted in
``duplicates`` and change nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import MISSING, dataclass, fields

from xdpgw.errors import GatewayError
from xdpgw.orders.model import Order, State
from xdpgw.orders.venue import (
    Accepted,
    Cancelled,
    CancelRejected,
    Event,
    Expired,
    Filled,
    Rejected,
    Replaced,
    SessionEvent,
    TradeBroken,
)

S = State
_LIVE = (S.ACKNOWLEDGED, S.PARTIALLY_FILLED)
_WORKING = (S.SENT, *_LIVE, S.CANCEL_PENDING, S.REPLACE_PENDING)

#: state → the states it may move to (a fill while a cancel/replace is pending keeps the pending state)
TRANSITIONS: dict[State, frozenset[State]] = {
    S.PENDING_NEW: frozenset({S.SENT, S.DENIED, S.CANCELLED}),
    S.SENT: frozenset({S.ACKNOWLEDGED, S.REJECTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_PENDING,
                       S.CANCELLED, S.EXPIRED}),
    S.ACKNOWLEDGED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_PENDING, S.REPLACE_PENDING,
                               S.CANCELLED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_PENDING, S.REPLACE_PENDING,
                                   S.CANCELLED, S.EXPIRED}),
    S.CANCEL_PENDING: frozenset({S.CANCEL_PENDING, S.CANCELLED, S.FILLED, S.EXPIRED, S.SENT, S.ACKNOWLEDGED,
                                 S.PARTIALLY_FILLED}),
    S.REPLACE_PENDING: frozenset({S.REPLACE_PENDING, S.REPLACED, S.CANCEL_PENDING, S.CANCELLED, S.FILLED,
                                  S.EXPIRED, S.ACKNOWLEDGED, S.PARTIALLY_FILLED}),
    **{s: frozenset() for s in State if s.final},
}


class IllegalTransition(GatewayError):
    """An order was asked to move where its state machine does not allow."""

    def __init__(self, cl_ord_id: str, src: State, dst: State, why: str = "") -> None:
        super().__init__(f"order {cl_ord_id}: illegal transition {src} -> {dst}{f' ({why})' if why else ''}",
                         "the venue and the router disagree about this order: check the journal and the "
                         "venue's report, and cancel it by hand if it is still live")
        self.cl_ord_id, self.src, self.dst = cl_ord_id, src, dst


class UnknownOrder(GatewayError):
    def __init__(self, cl_ord_id: str) -> None:
        super().__init__(f"no order {cl_ord_id!r}", "use an id the router sent (see the journal or the summary)")
        self.cl_ord_id = cl_ord_id


@dataclass(slots=True)
class OrderRecord:
    """An order and everything that happened to it."""

    order: Order
    state: State = S.PENDING_NEW
    venue: str = ""  # where it is (or will be) sent
    leaves_qty: int = 0
    cum_qty: int = 0
    notional: int = 0  # sum of fill qty * fill price (ticks)
    venue_order_id: str = ""
    reason: str = ""  # why it was denied / rejected / cancelled
    send_ns: int = 0
    ack_ns: int = 0
    fill_ns: int = 0  # first fill
    replaced_by: str = ""
    replaces: str = ""  # for a replacement: the id it replaces
    broken: list[tuple[int, int]] | None = None  # (qty, price) of busted fills
    pending_replacement: str = ""  # the new id of a replace in flight
    pending_from: State = S.PENDING_NEW
    resumed: bool = False  # known from an earlier run's journal (its send time is that run's)  # the state a cancel/replace request left (to go back to)
    fills: dict[str, tuple[int, int]] | None = None  # exec id → (qty, price)
    reduce_to: int = 0  # a reduction to this many open shares the venue has not answered (0: none)

    def __post_init__(self) -> None:
        if not self.leaves_qty and self.state is S.PENDING_NEW:
            self.leaves_qty = self.order.qty

    @property
    def avg_price(self) -> float:
        """Average fill price in ticks (0.0 before the first fill)."""
        return self.notional / self.cum_qty if self.cum_qty else 0.0

    @property
    def open(self) -> bool:
        """Working or waiting to be sent (counts against open-order limits)."""
        return not self.state.final

    def live_state(self) -> State:
        """Where a working order goes back to when a cancel/replace is refused or partly done."""
        if not self.ack_ns and self.pending_from is S.SENT and not self.cum_qty:
            return S.SENT
        return S.PARTIALLY_FILLED if self.cum_qty else S.ACKNOWLEDGED



def _new_record_factory():
    """``new_record(order, venue, state, send_ns)``: an OrderRecord with the order's whole quantity
    open and every other field at its dataclass default, its slots set one by one (the code is
    written from the dataclass's own fields): a third cheaper than ``OrderRecord(...)``, whose
    ``__init__`` and ``__post_init__`` the router's hot paths (``submit``, ``submit_batch``) would
    otherwise pay per order."""
    given = {"order": "order", "state": "state", "venue": "venue", "leaves_qty": "order.qty", "send_ns": "send_ns"}
    ns = {"_new": object.__new__, "OrderRecord": OrderRecord}
    lines = ["def new_record(order, venue, state, send_ns=0):", "    r = _new(OrderRecord)"]
    for f in fields(OrderRecord):
        value = given.get(f.name)
        if value is None:
            factory = f.default_factory is not MISSING
            ns[f"_d_{f.name}"] = f.default_factory if factory else f.default
            value = f"_d_{f.name}()" if factory else f"_d_{f.name}"
        lines.append(f"    r.{f.name} = {value}")
    exec("\n".join([*lines, "    return r"]), ns)  # noqa: S102 - as dataclasses writes __init__
    return ns["new_record"]


new_record = _new_record_factory()

class Blotter:
    """Every order by id, moved only through :data:`TRANSITIONS`."""

    def __init__(self) -> None:
        self.orders: dict[str, OrderRecord] = {}
        self.illegal: Counter[str] = Counter()  # "src->dst" -> n
        self.duplicates = 0  # events repeated (replayed after a reconnect)
        self.unknown = 0  # events for ids we never sent
        self.overfills = 0  # fills beyond the open quantity (applied: positions come from fills)
        self.broken = 0

    def __contains__(self, cl_ord_id: str) -> bool:
        return cl_ord_id in self.orders

    def __getitem__(self, cl_ord_id: str) -> OrderRecord:
        try:
            return self.orders[cl_ord_id]
        except KeyError:
            raise UnknownOrder(cl_ord_id) from None

    def add(self, order: Order, state: State = S.PENDING_NEW, reason: str = "", venue: str = "") -> OrderRecord:
        if order.cl_ord_id in self.orders:
            raise GatewayError(f"order id {order.cl_ord_id} is already in use",
                               "give every order of the day its own id")
        rec = OrderRecord(order, leaves_qty=order.qty, venue=venue or order.venue or "")
        self.orders[order.cl_ord_id] = rec
        if state is not S.PENDING_NEW:
            self.move(rec, state, reason)
        return rec

    def move(self, rec: OrderRecord, dst: State, reason: str = "") -> None:
        src = rec.state
        if dst not in TRANSITIONS[src]:
            self.illegal[f"{src}->{dst}"] += 1
            raise IllegalTransition(rec.order.cl_ord_id, src, dst, reason)
        rec.state = dst
        if reason:
            rec.reason = reason
        if dst in (S.CANCELLED, S.REJECTED, S.DENIED, S.EXPIRED, S.REPLACED):
            rec.leaves_qty = 0

    # --- requests (router → venue) --------------------------------------------------------------

    def sent(self, cl_ord_id: str, send_ns: int) -> OrderRecord:
        rec = self[cl_ord_id]
        self.move(rec, S.SENT)
        rec.send_ns = send_ns
        return rec

    def cancel_requested(self, cl_ord_id: str) -> OrderRecord:
        rec = self[cl_ord_id]
        if rec.state is S.PENDING_NEW:  # never left: cancelled on the spot
            self.move(rec, S.CANCELLED, "cancelled before sending")
        else:
            src = rec.state
            self.move(rec, S.CANCEL_PENDING)
            if src is not S.CANCEL_PENDING:
                rec.pending_from = src
        return rec

    def reduce_requested(self, cl_ord_id: str, qty: int) -> OrderRecord:
        """A reduction to ``qty`` open shares is on its way (the state stays; see the module docstring)."""
        rec = self[cl_ord_id]
        if rec.state.final:
            self.move(rec, S.CANCEL_PENDING, "reduction of a finished order")  # raises, counted
        rec.reduce_to = qty
        return rec

    def replace_requested(self, orig_id: str, new: Order, send_ns: int) -> OrderRecord:
        rec = self[orig_id]
        src = rec.state
        self.move(rec, S.REPLACE_PENDING)
        rec.pending_from = src
        nrec = self.add(new, venue=rec.venue)
        nrec.state = S.SENT  # the replacement is on the wire with the request
        nrec.send_ns = send_ns
        nrec.replaces = orig_id
        rec.pending_replacement = new.cl_ord_id
        return nrec

    # --- events (venue → router) ----------------------------------------------------------------

    def apply(self, ev: Event) -> OrderRecord | None:
        """Apply one venue event; returns the record it changed (None: session event, duplicate or
        unknown id, each counted). Raises IllegalTransition for an event the state forbids."""
        if isinstance(ev, SessionEvent):
            return None
        rec = self.orders.get(ev.orig_cl_ord_id if isinstance(ev, Replaced) else ev.cl_ord_id)
        if rec is None:
            self.unknown += 1
            return None
        if isinstance(ev, Filled):
            return self._fill(rec, ev)
        if isinstance(ev, Accepted):
            if rec.ack_ns:
                if rec.venue_order_id == ev.venue_order_id:
                    self.duplicates += 1
                    return None
                self.move(rec, S.ACKNOWLEDGED, f"second ack with venue id {ev.venue_order_id}")  # raises
            if rec.state is S.SENT:
                self.move(rec, S.ACKNOWLEDGED)
                rec.leaves_qty = max(0, ev.qty - rec.cum_qty)
            elif rec.state in (S.REJECTED, S.DENIED, S.PENDING_NEW):
                self.move(rec, S.ACKNOWLEDGED)  # raises: an ack for an order refused or never sent
            # else: the ack arrived after a fill or a cancel request (both legal before an ack)
            rec.venue_order_id, rec.ack_ns = ev.venue_order_id, ev.ts_ns
        elif isinstance(ev, Cancelled):
            if rec.state in (S.CANCELLED, S.EXPIRED) or (rec.state.final and not ev.qty):
                self.duplicates += 1
                return None
            left = max(0, rec.leaves_qty - ev.qty) if ev.qty else 0
            if left:  # reduced, still working
                if rec.reduce_to:  # our reduction's answer: a cancel or replace asked later still pends
                    rec.reduce_to = 0
                elif rec.state in (S.CANCEL_PENDING, S.REPLACE_PENDING):
                    self.move(rec, rec.live_state(), ev.reason)
                rec.leaves_qty = left
            else:
                self.move(rec, S.CANCELLED, ev.reason)
                self._drop_replacement(rec)
        elif isinstance(ev, Replaced):
            if rec.state is S.REPLACED:
                self.duplicates += 1
                return None
            self.move(rec, S.REPLACED)
            rec.replaced_by, rec.pending_replacement = ev.cl_ord_id, ""
            new = self.orders.get(ev.cl_ord_id)
            if new is None:
                self.unknown += 1
                return rec
            if new.state is S.SENT:
                self.move(new, S.ACKNOWLEDGED)
            new.venue_order_id, new.ack_ns, new.leaves_qty = ev.venue_order_id, ev.ts_ns, ev.qty
            return new
        elif isinstance(ev, Rejected):
            if rec.state is S.REJECTED:
                self.duplicates += 1
                return None
            self.move(rec, S.REJECTED, ev.reason)
            if rec.replaces:  # a refused replacement: the original works on
                self._back_to_live(self.orders.get(rec.replaces))
        elif isinstance(ev, CancelRejected):
            if rec.reduce_to and not rec.state.final:  # our reduction refused (it was asked first)
                rec.reduce_to = 0
            elif rec.state in (S.CANCEL_PENDING, S.REPLACE_PENDING):
                self._drop_replacement(rec, ev.reason)
                self.move(rec, rec.live_state(), ev.reason)
            elif rec.replaces and rec.state is S.SENT:  # named the replacement
                self.move(rec, S.REJECTED, ev.reason)
                self._back_to_live(self.orders.get(rec.replaces))
            else:
                self.duplicates += 1
                return None
        elif isinstance(ev, Expired):
            if rec.state is S.EXPIRED:
                self.duplicates += 1
                return None
            self.move(rec, S.EXPIRED)
        elif isinstance(ev, TradeBroken):
            fill = rec.fills.pop(ev.exec_id, None) if rec.fills else None
            if fill is None:
                self.duplicates += 1  # unknown or already broken
                return None
            self.broken += 1  # the execution is void: out of cum qty (the state stays; shares do not reopen)
            rec.cum_qty -= fill[0]
            rec.notional -= fill[0] * fill[1]
            rec.broken = [*(rec.broken or ()), fill]
        return rec

    def _back_to_live(self, orig: OrderRecord | None) -> None:
        if orig is not None and orig.state is S.REPLACE_PENDING:
            self.move(orig, orig.live_state())
            orig.pending_replacement = ""
            orig.replaced_by = ""

    def _drop_replacement(self, rec: OrderRecord, reason: str = "original order gone") -> None:
        """A replace was pending when the original died or the venue refused it: the new id is dead."""
        new = self.orders.get(rec.pending_replacement) if rec.pending_replacement else None
        rec.pending_replacement = ""
        if new is not None and new.state is S.SENT:
            self.move(new, S.REJECTED, reason)

    def _fill(self, rec: OrderRecord, ev: Filled) -> OrderRecord | None:
        if ev.exec_id and rec.fills and ev.exec_id in rec.fills:
            self.duplicates += 1
            return None
        if rec.state.final:
            # a fill for a dead order still moves the position; count it, do not resurrect the order
            self.overfills += 1
            if rec.state is not S.FILLED:
                self.illegal[f"{rec.state}->fill"] += 1
        elif ev.qty > rec.leaves_qty:
            self.overfills += 1
        if ev.exec_id:
            if rec.fills is None:
                rec.fills = {}
            rec.fills[ev.exec_id] = (ev.qty, ev.price)
        rec.cum_qty += ev.qty
        rec.notional += ev.qty * ev.price
        rec.leaves_qty = max(0, rec.leaves_qty - ev.qty)
        if not rec.fill_ns:
            rec.fill_ns = ev.ts_ns
        if rec.state.final:
            return rec
        if rec.leaves_qty == 0:
            self.move(rec, S.FILLED)
        elif rec.state in (S.CANCEL_PENDING, S.REPLACE_PENDING):
            self.move(rec, rec.state)
        else:
            self.move(rec, S.PARTIALLY_FILLED)
        return rec

    def counts(self) -> Counter[str]:
        """How many orders are in each state."""
        return Counter(str(r.state) for r in self.orders.values())
