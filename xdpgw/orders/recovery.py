"""Settling the requests a venue never answered, once it has replayed everything it had for us.

After a login (a restart on a killed run's journal, or a reconnect) the venue replays what we
missed; a connector that can tell when that replay is over reports a ``"replayed"`` session event
(OUCH: the first Server Heartbeat after Login Accepted, :class:`xdpgw.orders.ouch.soupbin.CaughtUp`;
FIX: the engine has what the venue resent before its Logon, after ``connect()`` and after the
engine's own reconnects). From then on every request that left before the login has its answer in the
journal or in the replay, because a venue answers each request with a sequenced message (OUCH: an
Enter Order with Order Accepted or Rejected, a cancel or reduction with Order Canceled or Cancel
Reject, a replace with Order Replaced or Rejected). A request still unanswered never reached the venue
(lost on the way, left in the connector's outbox when the link broke, or journaled by a run killed
before it left), and is settled exactly once:

* a new order still ``sent``: sent again under a new UserRefNum, with its own id (the venue never
  saw it), through the throttle; under the kill switch it is cancelled here instead;
* a cancel still pending: sent again when the venue had acknowledged the order (cancels pass the kill
  switch); an order it never acknowledged never reached it either, and is cancelled here;
* a reduction (``Router.cancel(id, qty)``, down to ``qty`` open shares; ``OrderRecord.reduce_to``
  until answered) still unanswered: sent again with its quantity, after its order if that is sent
  again, before a replace asked after it; a full cancel pending takes it along;
* a replace still pending: sent again (the replacement under a new UserRefNum), through the
  throttle; under the kill switch it is dropped (the mass cancel takes the original).

Each request sent again is journaled like the first (a later restart sees it); an order settled
here is journaled as the :class:`~xdpgw.orders.venue.Cancelled` event it stands for. Summary:
``recovered{resent_orders, resent_cancels, resent_reductions, resent_replaces, settled_here,
left_to_session}``. Only connectors that can take a request back are reconciled: ``forget(id)`` (an
order, or a replacement by its new id) and ``forget_cancel(id)`` (a cancel or reduction of the order)
say whether it may be sent again; with others an order a killed run journaled but the venue never
confirmed stays ``sent`` (the summary's ``unconfirmed``). OUCH always may (SoupBinTCP resends nothing
of ours). A connector whose session layer resends what it took (FIX: ``session_resends``; the
engine's store answers the venue's ResendRequest) says no for what its engine took, and yes only for
what never reached it (a kill between the journal and the engine): those are left to the session
(``left_to_session``). Candidates are the requests sent before the login: one sent after it is simply
in flight. Until a venue's replay is over, :attr:`Recovery.awaiting_replay` holds (``Router.settled``
waits for it); a venue that drops during its replay is settled after the next login's, and a login
with no order of ours open there waits for nothing.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING

from xdpgw.errors import GatewayError
from xdpgw.orders.model import State
from xdpgw.orders.venue import Cancelled, SessionEvent

if TYPE_CHECKING:
    from xdpgw.orders.router import Router

S = State
NEVER_REACHED = "never reached the venue"


class Recovery:
    """The router's reconciliation after a venue's replay (see the module docstring)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        #: venue → {order id: (state, reduction)} of the requests unanswered at its login
        self.candidates: dict[str, dict[str, tuple[State, int]]] = {}
        self.waiting: deque[tuple[str, str]] = deque()  # (venue, order id) orders/replaces for a throttle slot
        #: resent_orders, resent_cancels, resent_reductions, resent_replaces, settled_here, left_to_session
        self.counts: Counter[str] = Counter()

    def on_session(self, venue: str, ev: SessionEvent) -> None:
        if ev.kind == "connected" and hasattr(self.router.connectors.get(venue), "forget"):
            if self._has_open(venue):
                self.candidates[venue] = self._unanswered(venue, ev.ts_ns)
            else:  # nothing of ours works there: no replay can change an order we hold
                self.candidates.pop(venue, None)
        elif ev.kind == "replayed":
            self.settle(venue, self.candidates.pop(venue, None))

    @property
    def awaiting_replay(self) -> bool:
        """A venue that can reconcile has logged in but not yet replayed what we missed: fills
        and cancels a killed run never saw may still be on their way."""
        return bool(self.candidates)

    def _has_open(self, venue: str) -> bool:
        return any(r.venue == venue and r.open for r in self.router.blotter.orders.values())

    def _unanswered(self, venue: str, login_ns: int) -> dict[str, tuple[State, int]]:
        return {i: (r.state, r.reduce_to) for i, r in self.router.blotter.orders.items()
                if r.venue == venue and (r.state in (S.SENT, S.CANCEL_PENDING, S.REPLACE_PENDING)
                                         or (r.reduce_to and r.open))
                and not r.replaces and (r.resumed or r.send_ns < login_ns)}

    def settle(self, venue: str, candidates: dict[str, tuple[State, int]] | None) -> None:
        """Act on every candidate still unanswered now that ``venue`` has replayed everything."""
        b, conn = self.router.blotter, self.router.connectors[venue]
        for cid, (before, reduce_to) in (candidates or {}).items():
            rec = b.orders.get(cid)
            if rec is None:
                continue
            if rec.state is not before:  # its request answered by the replay; a reduction may not be
                if reduce_to and rec.reduce_to == reduce_to and not rec.state.final:
                    self._reduction(venue, cid)
                continue
            if before is S.SENT:  # a reduction of it follows it (step)
                if self.router.risk.killed:
                    self._settle_here(venue, cid)
                else:
                    self.waiting.append((venue, cid))
            elif before is S.CANCEL_PENDING:  # the cancel takes a reduction asked before it along
                if not _may_resend_cancel(conn, cid):
                    self.counts["left_to_session"] += 1  # the engine took it: its resend delivers it
                elif rec.ack_ns or rec.cum_qty:
                    rec.reduce_to = 0
                    self._resend_cancel(venue, cid)
                else:
                    self._settle_here(venue, cid)
            else:  # a replace, or a reduction of a resting order
                if reduce_to and rec.reduce_to == reduce_to:  # asked before any replace: goes first
                    self._reduction(venue, cid)
                new = rec.pending_replacement if before is S.REPLACE_PENDING else ""
                if new and b[new].state is S.SENT:
                    if conn.forget(new):
                        self.waiting.append((venue, cid))
                    else:  # the engine took it: its resend delivers it
                        self.counts["left_to_session"] += 1
        self.step()

    def step(self) -> None:
        """Send the orders and replaces waiting for a throttle slot (called from the router's poll).
        Under the kill switch an order is cancelled here and a replace dropped (the mass cancel takes
        the original, and with it the replacement)."""
        r = self.router
        while self.waiting:
            venue, cid = self.waiting[0]
            rec = r.blotter.orders.get(cid)
            new = rec.pending_replacement if rec is not None and rec.state is S.REPLACE_PENDING else ""
            if rec is None or (rec.state is not S.SENT and not new) or venue not in r.connected:
                self.waiting.popleft()
                continue
            if r.risk.killed:
                self.waiting.popleft()
                if not new:
                    self._settle_here(venue, cid)
                continue
            if r.throttle.active and not r.throttle.try_acquire(venue, r.clock()):
                return
            self.waiting.popleft()
            if new:
                self._resend_replace(venue, cid, new)
            elif self._resend_order(venue, cid) and rec.reduce_to:
                self._reduction(venue, cid)

    # --- the requests ------------------------------------------------------------------------------

    def _resend_order(self, venue: str, cid: str) -> bool:
        """Sent again (or left to the session layer that delivers it): True; False if it failed."""
        r = self.router
        rec, conn = r.blotter[cid], r.connectors[venue]
        o = rec.order
        if not conn.forget(cid):  # the connector's session layer still delivers it (FIX resend)
            self.counts["left_to_session"] += 1
            return True
        if r.journal is not None:
            r.journal.orders([(venue, o)], r.clock())
            r._reserve_refs(venue, [o])
            r.journal.sync()
        try:
            rec.send_ns = conn.send(o)
        except (GatewayError, OSError) as e:  # still unanswered: the next login's replay decides again
            r._error("resend", f"{cid} to {venue}: {e}")
            return False
        rec.resumed = False  # its ack and fills are this run's: latency counts
        self.counts["resent_orders"] += 1
        return True

    def _reduction(self, venue: str, cid: str) -> None:
        """A reduction the venue never answered: sent again with its quantity, unless the
        connector's session layer still delivers it."""
        if not _may_resend_cancel(self.router.connectors[venue], cid):
            self.counts["left_to_session"] += 1
            return
        self._resend_cancel(venue, cid, self.router.blotter[cid].reduce_to)

    def _resend_cancel(self, venue: str, cid: str, qty: int = 0) -> None:
        r = self.router
        if r.journal is not None:
            r.journal.cancel(cid, qty, r.clock())
            r.journal.sync()
        try:
            r.connectors[venue].cancel(cid, qty)
        except (GatewayError, OSError) as e:
            r._error("resend", f"{'reduction' if qty else 'cancel'} of {cid} at {venue}: {e}")
            return
        self.counts["resent_reductions" if qty else "resent_cancels"] += 1

    def _resend_replace(self, venue: str, orig: str, new_id: str) -> None:
        r = self.router
        new, conn = r.blotter[new_id].order, r.connectors[venue]
        conn.forget(new_id)
        if r.journal is not None:
            r.journal.replace(orig, new, r.clock(), venue)
            r._reserve_refs(venue, [new])
            r.journal.sync()
        try:
            r.blotter[new_id].send_ns = conn.replace(orig, new)
        except (GatewayError, OSError) as e:
            r._error("resend", f"replace of {orig} at {venue}: {e}")
            return
        self.counts["resent_replaces"] += 1

    def _settle_here(self, venue: str, cid: str) -> None:
        """The order never reached the venue and is not to be sent: cancelled, as the event says."""
        ev = Cancelled(cid, 0, NEVER_REACHED, self.router.clock())
        self.router.on_events(venue, [ev])
        self.counts["settled_here"] += 1


def _may_resend_cancel(conn: object, cid: str) -> bool:
    """May a cancel or reduction of ``cid`` the venue never answered be sent again? The connector's
    ``forget_cancel`` says (FIX: not if its engine took one, its resend delivers it); without one,
    unless its session layer resends what it took."""
    forget_cancel = getattr(conn, "forget_cancel", None)
    return forget_cancel(cid) if forget_cancel is not None else not getattr(conn, "session_resends", False)
