"""Routing rules: which venues take a symbol's orders, and how a parent order is split among them.

A rule is a list of :class:`VenueShare` (venue, participation share, priority — 1 is the highest —
and an active flag); symbols without a rule use the default route. :meth:`RoutingTable.split` gives
each usable venue (active and connected) ``qty * share / total`` rounded down to round lots (100
shares); what is left (odd lots, rounding) goes to the highest-priority usable venue, so the children
always add up to the parent. An inactive or disconnected venue is skipped and its share re-spread
over the others (shares are relative weights). An order that names its venue goes there unsplit.

A parent that stays whole keeps its id; children of a split get ids derived from the parent's alone
(:func:`child_id`, deterministic, at most 14 characters), so a restarted router derives the same
ids and its journal recognises them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace

from xdpgw.errors import GatewayError
from xdpgw.orders.model import MAX_CL_ORD_ID, Order

ROUND_LOT = 100
_WEIGHT = 1_000_000  # shares are kept as integer weights (no float rounding in the split)
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class NoRoute(GatewayError):
    def __init__(self, order: Order, why: str) -> None:
        super().__init__(f"order {order.cl_ord_id} ({order.symbol}): no venue to send it to ({why})",
                         "connect a venue of its route, mark one active, or add a route for the symbol")


@dataclass(slots=True, frozen=True)
class VenueShare:
    venue: str
    share: float = 1.0  # relative participation weight
    priority: int = 1  # 1 is the highest
    active: bool = True

    @property
    def weight(self) -> int:
        return round(self.share * _WEIGHT)


def child_id(parent: str, k: int) -> str:
    """The k-th child's id (k ≥ 1): ``PARENT-k`` (k in base 36) when it fits in 14 characters, else
    an 8-character digest of the parent in place of the parent."""
    digits = ""
    while True:
        k, r = divmod(k, 36)
        digits = _DIGITS[r] + digits
        if not k:
            break
    suffix = "-" + digits
    if len(parent) + len(suffix) <= MAX_CL_ORD_ID:
        return parent + suffix
    digest = base64.b32encode(hashlib.blake2b(parent.encode(), digest_size=5).digest()).decode()
    return digest + suffix


@dataclass(slots=True)
class RoutingTable:
    rules: dict[str, tuple[VenueShare, ...]] = field(default_factory=dict)
    default: tuple[VenueShare, ...] = ()
    lot: int = ROUND_LOT
    _plans: dict = field(default_factory=dict, repr=False, compare=False)  # (symbol, connected) → venues
    #: connected venues → {symbol: the one venue its orders go to whole, "" when they split or have
    #: none}, filled by :meth:`whole_venue` (the router's per-order hot path reads it directly)
    whole: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def invalidate(self) -> None:
        """Forget cached routes (call after changing ``rules``/``default`` in place)."""
        self._plans.clear()
        self.whole.clear()

    def whole_venue(self, symbol: str, connected: frozenset[str]) -> str:
        """The venue every order of ``symbol`` without a venue of its own goes to whole, when its
        route has one usable venue; "" when its orders are split or have no route (``legs`` decides).
        Remembered in ``whole[connected]``."""
        venues = self.usable(symbol, connected)
        venue = venues[0].venue if len(venues) == 1 else ""
        self.whole.setdefault(connected, {})[symbol] = venue
        return venue

    def set_active(self, venue: str, active: bool) -> None:
        """Switch a venue on or off in every rule."""
        def flip(vs: tuple[VenueShare, ...]) -> tuple[VenueShare, ...]:
            return tuple(replace(v, active=active) if v.venue == venue else v for v in vs)
        self.rules = {s: flip(vs) for s, vs in self.rules.items()}
        self.default = flip(self.default)
        self.invalidate()

    def route(self, symbol: str) -> tuple[VenueShare, ...]:
        return self.rules.get(symbol, self.default)

    def venues(self) -> set[str]:
        return {v.venue for vs in (*self.rules.values(), self.default) for v in vs}

    def usable(self, symbol: str, connected: Container[str] | None = None) -> list[VenueShare]:
        """The symbol's active, connected venues with a share, highest priority first."""
        vs = [v for v in self.route(symbol) if v.active and v.weight > 0
              and (connected is None or v.venue in connected)]
        vs.sort(key=lambda v: v.priority)
        return vs

    def allocate(self, qty: int, venues: list[VenueShare]) -> list[int]:
        """Shares per venue (same order as ``venues``, highest priority first): round lots by
        weight, the rest to the first."""
        total = sum(v.weight for v in venues)
        lot = self.lot
        out = [qty * v.weight // total // lot * lot for v in venues]
        out[0] += qty - sum(out)
        return out

    def legs(self, order: Order, connected: frozenset[str] | None = None) -> list[tuple[str, Order]]:
        """(venue, order) for each child; an order that stays whole is returned as it is (no copy:
        the hot path), children of a split are new orders with their own ids and venues."""
        if order.venue is not None:
            if connected is not None and order.venue not in connected:
                raise NoRoute(order, f"venue {order.venue} is not connected")
            return [(order.venue, order)]
        key = (order.symbol, connected)
        venues = self._plans.get(key)
        if venues is None:
            venues = self._plans[key] = self.usable(order.symbol, connected)
        if not venues:
            raise NoRoute(order, "no active connected venue in its route")
        if len(venues) == 1:
            return [(venues[0].venue, order)]
        qtys = self.allocate(order.qty, venues)
        legs = [(v.venue, q) for v, q in zip(venues, qtys, strict=True) if q > 0]
        if len(legs) == 1:
            return [(legs[0][0], order)]
        pid = order.cl_ord_id
        return [(venue, Order(child_id(pid, k), order.symbol, order.side, q, order.price, order.tif, venue, pid))
                for k, (venue, q) in enumerate(legs, 1)]

    def split(self, order: Order, connected: Container[str] | None = None) -> list[Order]:
        """The child orders for ``order``, each naming its venue (one, with the parent's id, when it
        is not split)."""
        fs = None if connected is None else frozenset(connected)
        return [o if o.venue == v else replace(o, venue=v) for v, o in self.legs(order, fs)]


def routing_from_mapping(m: Mapping, venues: list[str]) -> RoutingTable:
    """A RoutingTable from a config's ``[routing]`` table (``lot``, ``default`` and ``symbols.SYM``,
    each a list of ``{venue, share, priority, active}``). Without a default route, every configured
    venue takes an equal share, in the order configured."""

    def shares(rows, where: str) -> tuple[VenueShare, ...]:
        out = []
        for row in rows:
            if not isinstance(row, Mapping) or "venue" not in row:
                raise GatewayError(f"bad route entry {row!r} in {where}",
                                   'write each as { venue = "NAME", share = 1, priority = 1, active = true }')
            if row["venue"] not in venues:
                raise GatewayError(f"route {where} names venue {row['venue']!r}, which is not configured",
                                   f"use one of {', '.join(venues) or '(none)'} or add it under [venues]")
            out.append(VenueShare(str(row["venue"]), float(row.get("share", 1.0)), int(row.get("priority", 1)),
                                  bool(row.get("active", True))))
        return tuple(out)

    default = shares(m.get("default", ()), "routing.default") or tuple(
        VenueShare(v, 1.0, i) for i, v in enumerate(venues, 1))
    rules = {sym: shares(rows, f"routing.symbols.{sym}") for sym, rows in (m.get("symbols") or {}).items()}
    return RoutingTable(rules, default, int(m.get("lot", ROUND_LOT)))
