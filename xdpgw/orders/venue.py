"""The venue connector interface (as httpx's transports: one small interface, several implementations).

A connector owns one session with one venue. It never calls back into the router on its own: every
I/O step, timer and engine thread's news is handed over as a list of events from ``poll()``, on the
caller's thread, in the order the venue reported them. Events name orders by ``cl_ord_id`` (the id
of the :class:`~xdpgw.orders.model.Order` that was sent); a replace names the new id and the old one.

``ts_ns`` on every event is CLOCK_MONOTONIC when we received it (``time.monotonic_ns()``), and
``send``/``cancel``/``replace`` return the CLOCK_MONOTONIC time the request left (the latency
figures are differences of these).

Implementations: ``ouch://`` (OUCH 5.0 over SoupBinTCP 4.0, ``xdpgw.orders.ouch``) and ``fix://``
(FIX 4.4 on QuickFIX, ``xdpgw.orders.fix``); :func:`connect_url` picks one by URL scheme.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from xdpgw.errors import GatewayError
from xdpgw.orders.model import Order

# --- events (venue → router) ---------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Accepted:
    cl_ord_id: str
    venue_order_id: str  # OUCH OrderReferenceNumber, FIX OrderID
    qty: int  # the quantity the venue accepted (it may be less than asked)
    price: int  # ticks, as accepted
    ts_ns: int


@dataclass(slots=True, frozen=True)
class Filled:
    cl_ord_id: str
    qty: int  # this execution only
    price: int  # ticks
    exec_id: str  # OUCH MatchNumber, FIX ExecID
    liquidity: str  # OUCH liquidity flag, FIX LastLiquidityInd ("" when unknown)
    ts_ns: int


@dataclass(slots=True, frozen=True)
class Cancelled:
    cl_ord_id: str
    qty: int  # shares cancelled by this event (a decrement, as OUCH reports it)
    reason: str  # venue's code or text
    ts_ns: int


@dataclass(slots=True, frozen=True)
class Replaced:
    orig_cl_ord_id: str
    cl_ord_id: str
    venue_order_id: str
    qty: int  # the new order's open quantity
    price: int
    ts_ns: int


@dataclass(slots=True, frozen=True)
class Rejected:
    cl_ord_id: str
    reason: str  # e.g. OUCH reject code "0x06 fat finger", FIX Text
    ts_ns: int


@dataclass(slots=True, frozen=True)
class CancelRejected:
    """A cancel or replace request the venue refused (the order is unchanged)."""

    cl_ord_id: str
    reason: str
    ts_ns: int


@dataclass(slots=True, frozen=True)
class Expired:
    cl_ord_id: str
    ts_ns: int


@dataclass(slots=True, frozen=True)
class TradeBroken:
    cl_ord_id: str
    exec_id: str
    reason: str
    ts_ns: int


@dataclass(slots=True, frozen=True)
class SessionEvent:
    """The session itself changed: ``kind`` is one of "connected", "disconnected", "ended"
    (end of session: no further data today), "rejected" (login refused), "replayed" (after a login:
    the venue has sent everything it had for us, so a request sent before that login that it has not
    answered never reached it), with a human ``detail``."""

    kind: str
    detail: str
    ts_ns: int


Event = Accepted | Filled | Cancelled | Replaced | Rejected | CancelRejected | Expired | TradeBroken | SessionEvent


# --- the interface -------------------------------------------------------------------------------


@runtime_checkable
class Connector(Protocol):
    """One session with one venue. Generic code (router, CLI) uses only this."""

    name: str  # the venue's name in routing rules and summaries

    @property
    def connected(self) -> bool:
        """Logged in and able to take orders now."""
        ...

    def connect(self, timeout: float = 5.0) -> None:
        """Log in (resuming the session where the journal or store left it); GatewayError on failure."""
        ...

    def send(self, order: Order) -> int:
        """Put a new order on the wire; returns its send time (CLOCK_MONOTONIC ns)."""
        ...

    def cancel(self, cl_ord_id: str, qty: int = 0) -> int:
        """Reduce an order to ``qty`` open shares (0 cancels it); returns the send time."""
        ...

    def replace(self, orig_cl_ord_id: str, new: Order) -> int:
        """Replace an order (new id, quantity, price); returns the send time."""
        ...

    def mass_cancel(self, symbol: str | None = None) -> int:
        """Cancel every open order of this session (of ``symbol`` only when given): the protocol's
        mass cancel where it has one, one cancel per open order otherwise. Returns the send time."""
        ...

    def poll(self, timeout: float = 0.0, max_events: int = 0) -> list[Event]:
        """Do pending I/O and timers (heartbeats, reconnects) for up to ``timeout`` s; return what
        the venue reported since the last call, in its order. ``max_events`` > 0: about that many at
        most (a bound on the call's work; the rest comes with the next calls)."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: at least sent, cancels, replaces, events, reconnects, heartbeats_sent."""
        ...

    def close(self) -> None:
        """Log out cleanly and release the socket (idempotent)."""
        ...


@runtime_checkable
class SessionStore(Protocol):
    """Where a connector keeps session values that must survive a restart (next UserRefNum, next
    expected sequence number, ...): strings by key. The router's is its journal
    (:class:`xdpgw.orders.journal.JournalStore`); a value put during ``poll()`` is made persistent
    after the events that ``poll()`` returns, one put during ``send()`` at once."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...


class MemoryStore:
    """A SessionStore that forgets at exit (a connector's default when nobody gives it one)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def put(self, key: str, value: str) -> None:
        self.values[key] = value


def give_store(connector: Connector, store: SessionStore) -> bool:
    """Hand a connector its SessionStore before ``connect()``: connectors that keep sequence state
    across restarts have a ``store`` attribute; others are left alone (returns False)."""
    if hasattr(connector, "store"):
        connector.store = store
        return True
    return False


# --- venue URLs ----------------------------------------------------------------------------------

#: URL scheme → "module:factory"; the factory takes (name, host, port, params) and returns a Connector.
SCHEMES = {
    "ouch": "xdpgw.orders.ouch.connector:from_url",
    "fix": "xdpgw.orders.fix.connector:from_url",
}


@dataclass(slots=True, frozen=True)
class VenueUrl:
    scheme: str
    host: str
    port: int
    params: dict[str, str]  # query parameters, last value wins


def parse_venue_url(url: str) -> VenueUrl:
    """"ouch://127.0.0.1:15000?user=U1" → VenueUrl("ouch", "127.0.0.1", 15000, {"user": "U1"})."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise GatewayError(f"unknown venue URL scheme in {url!r}",
                           f"use one of {', '.join(s + '://HOST:PORT' for s in SCHEMES)}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise GatewayError(f"venue URL {url!r} has no host or port", f"write it as {parts.scheme}://HOST:PORT")
    params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return VenueUrl(parts.scheme, parts.hostname, port, params)


def connect_url(url: str, name: str | None = None) -> Connector:
    """The (not yet connected) connector for a venue URL; ``name`` defaults to the URL's
    ``name=`` parameter, else ``scheme-port``."""
    v = parse_venue_url(url)
    module, _, attr = SCHEMES[v.scheme].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    return factory(name or v.params.get("name") or f"{v.scheme}-{v.port}", v.host, v.port, v.params)
