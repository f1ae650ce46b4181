"""Settling the requests a venue never answered, once it has replayed everything it had for us.

After a login (a restart on a killed run's journal, or a reconnect) the venue replays what we
missed; a connector that can tell when that replay is over reports a ``"replayed"`` session event
(OUCH: the first Server Heartbeat after Login Accepted, :class:`xdpgw.orders.ouch.soupbin.CaughtUp`).
From then on every request that left before the login has its answer in the journal or in the
replay, because a venue answers each request with a sequenced message (OUCH: an Enter Order with
Order Accepted or Rejected, a cancel with Order Canceled or Cancel Reject, a replace with Order
Replaced or Rejected). A request still unanswered never reached the venue:

* a new order still ``sent``: sent again under a new UserRefNum, with its own id (the venue never
  saw it), through the throttle; under the kill switch it is cancelled here instead;
* a cancel still pending: sent again when the venue had acknowledged the order; an order it never
  acknowledged never reached it either, and is cancelled here;
* a replace still pending: sent again (the replacement under a new UserRefNum), through the
  throttle; under the kill switch it is dropped (the mass cancel takes the original).

Each request sent again is journaled like the first (a later restart sees it); an order settled
here is journaled as the :class:`~xdpgw.orders.venue.Cancelled` event it stands for. Only
connectors that can take an order back (``forget(cl_ord_id)``, True when it may be sent again) are
reconciled; with others an order a killed run journaled but the venue never confirmed stays
``sent`` (the summary's ``unconfirmed``). A connector whose session layer resends what it took
(FIX: ``session_resends``; the engine's store answers the venue's ResendRequest) sends again only
what never reached its engine (a kill between the journal and the engine), and no cancel or
replace. Candidates are the orders sent before the login: an order sent after it is simply in
flight.
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
        #: venue → {order id: state} of the requests unanswered at its login
        self.candidates: dict[str, dict[str, State]] = {}
        self.waiting: deque[tuple[str, str]] = deque()  # (venue, order id) orders/replaces for a throttle slot
        self.counts: Counter[str] = Counter()  # resent_orders, resent_cancels, resent_replaces, settled_here

    def on_session(self, venue: str, ev: SessionEvent) -> None:
        if ev.kind == "connected" and hasattr(self.router.connectors.get(venue), "forget"):
            self.candidates[venue] = self._unanswered(venue, ev.ts_ns)
        elif ev.kind == "replayed":
            self.settle(venue, self.candidates.pop(venue, None))

    @property
    def awaiting_replay(self) -> bool:
        """A venue that can reconcile has logged in but not yet replayed what we missed: fills
        and cancels a killed run never saw may still be on their way."""
        return bool(self.candidates)

    def _unanswered(self, venue: str, login_ns: int) -> dict[str, State]:
        return {i: r.state for i, r in self.router.blotter.orders.items()
                if r.venue == venue and r.state in (S.SENT, S.CANCEL_PENDING, S.REPLACE_PENDING)
                and not r.replaces and (r.resumed or r.send_ns < login_ns)}

    def settle(self, venue: str, candidates: dict[str, State] | None) -> None:
        """Act on every candidate still unanswered now that ``venue`` has replayed everything."""
        b = self.router.blotter
        for cid, before in (candidates or {}).items():
            rec = b.orders.get(cid)
            if rec is None or rec.state is not before:
                continue  # answered by the replay
            if before is S.SENT:
                if self.router.risk.killed:
                    self._settle_here(venue, cid)
                else:
                    self.waiting.append((venue, cid))
            elif getattr(self.router.connectors[venue], "session_resends", False):
                self.counts["left_to_session"] += 1  # a cancel/replace the engine took, it delivers
            elif before is S.CANCEL_PENDING:
                if rec.ack_ns or rec.cum_qty:
                    self._resend_cancel(venue, cid)
                else:
                    self._settle_here(venue, cid)
            elif rec.pending_replacement and b[rec.pending_replacement].state is S.SENT:
                self.waiting.append((venue, cid))
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
            else:
                self._resend_order(venue, cid)

    # --- the requests ------------------------------------------------------------------------------

    def _resend_order(self, venue: str, cid: str) -> None:
        r = self.router
        rec, conn = r.blotter[cid], r.connectors[venue]
        o = rec.order
        if not conn.forget(cid):  # the connector's session layer still delivers it (FIX resend)
            self.counts["left_to_session"] += 1
            return
        if r.journal is not None:
            r.journal.orders([(venue, o)], r.clock())
            r._reserve_refs(venue, [o])
            r.journal.sync()
        try:
            rec.send_ns = conn.send(o)
        except (GatewayError, OSError) as e:  # still unanswered: the next login's replay decides again
            r._error("resend", f"{cid} to {venue}: {e}")
            return
        rec.resumed = False  # its ack and fills are this run's: latency counts
        self.counts["resent_orders"] += 1

    def _resend_cancel(self, venue: str, cid: str) -> None:
        r = self.router
        if r.journal is not None:
            r.journal.cancel(cid, 0, r.clock())
            r.journal.sync()
        try:
            r.connectors[venue].cancel(cid, 0)
        except (GatewayError, OSError) as e:
            r._error("resend", f"cancel of {cid} at {venue}: {e}")
            return
        self.counts["resent_cancels"] += 1

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
