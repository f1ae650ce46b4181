"""Orders as the router and every venue connector see them (protocol-neutral, no I/O).

Prices are integer ticks of 1/10,000 of a currency unit (OUCH's four implied decimals), so no float
ever reaches a risk check or a wire format. Sides and times in force carry OUCH's codes; connectors for
other protocols (FIX) map them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

PRICE_SCALE = 10_000  #: ticks per currency unit
MAX_CL_ORD_ID = 14  #: OUCH's ClOrdID is alpha 14; FIX allows more, we keep the common limit


class Side(enum.StrEnum):
    BUY = "B"
    SELL = "S"
    SELL_SHORT = "T"
    SELL_SHORT_EXEMPT = "E"

    @property
    def sign(self) -> int:
        """+1 for buys, -1 for every kind of sell (position arithmetic)."""
        return 1 if self is Side.BUY else -1


class Tif(enum.StrEnum):
    DAY = "0"
    IOC = "3"
    GTX = "5"
    GTT = "6"
    AFTER_HOURS = "E"


class State(enum.StrEnum):
    """Where an order is in its life (the transitions live in ``xdpgw.orders.state``)."""

    PENDING_NEW = "pending_new"  # accepted by us, not yet on the wire (e.g. queued by the throttle)
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCEL_PENDING = "cancel_pending"
    REPLACE_PENDING = "replace_pending"
    CANCELLED = "cancelled"
    REPLACED = "replaced"
    REJECTED = "rejected"  # by the venue, with its reason
    DENIED = "denied"  # by our pre-trade risk checks, with the check's name; never sent
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({State.FILLED, State.CANCELLED, State.REPLACED, State.REJECTED, State.DENIED, State.EXPIRED})


@dataclass(slots=True, frozen=True)
class Order:
    """One order as sent to one venue (a child order when a parent is split).

    ``cl_ord_id`` is the client's id (OUCH ClOrdID, FIX tag 11): unique for the day, at most 14 ASCII
    characters. ``price`` is in ticks (``PRICE_SCALE`` per unit); 0 means a market order where the
    venue allows one. ``venue`` names the connector that carries it (None: let routing decide).
    """

    cl_ord_id: str
    symbol: str
    side: Side
    qty: int
    price: int
    tif: Tif = Tif.DAY
    venue: str | None = None
    parent_id: str | None = None  # the client's order this child was split from (None: not split)

    def __post_init__(self) -> None:
        _check(self.cl_ord_id, self.symbol, self.qty, self.price)


def _check(cl_ord_id: str, symbol: str, qty: int, price: int) -> None:
    if not cl_ord_id or len(cl_ord_id) > MAX_CL_ORD_ID or not cl_ord_id.isascii():
        raise ValueError(f"order id {cl_ord_id!r} must be 1-{MAX_CL_ORD_ID} ASCII characters")
    if not symbol or len(symbol) > 8 or not symbol.isascii():
        raise ValueError(f"symbol {symbol!r} must be 1-8 ASCII characters")
    if qty <= 0:
        raise ValueError(f"order {cl_ord_id}: quantity {qty} must be positive")
    if price < 0:
        raise ValueError(f"order {cl_ord_id}: price {price} must not be negative")


# The dataclass's frozen __init__ goes through object.__setattr__ once per field (~0.9 µs an order,
# the largest single cost of a strategy's order); this one checks first, then stores straight into the
# slots with their descriptors (~0.5 µs). Same signature, same checks, the instances stay frozen.
_ID, _SYM, _SIDE, _QTY, _PRICE, _TIF, _VENUE, _PARENT = (getattr(Order, f).__set__ for f in (
    "cl_ord_id", "symbol", "side", "qty", "price", "tif", "venue", "parent_id"))


def _order_init(self: Order, cl_ord_id: str, symbol: str, side: Side, qty: int, price: int, tif: Tif = Tif.DAY,
                venue: str | None = None, parent_id: str | None = None) -> None:
    if not (0 < len(cl_ord_id) <= MAX_CL_ORD_ID and 0 < len(symbol) <= 8 and cl_ord_id.isascii()
            and symbol.isascii() and qty > 0 and price >= 0):
        _check(cl_ord_id, symbol, qty, price)
    _ID(self, cl_ord_id)
    _SYM(self, symbol)
    _SIDE(self, side)
    _QTY(self, qty)
    _PRICE(self, price)
    _TIF(self, tif)
    _VENUE(self, venue)
    _PARENT(self, parent_id)


_order_init.__doc__ = Order.__init__.__doc__
Order.__init__ = _order_init  # type: ignore[method-assign]


def checked_order(cl_ord_id: str, symbol: str, side: Side, qty: int, price: int, tif: Tif = Tif.DAY) -> Order:
    """An Order from fields already checked as ``Order()`` checks them (a batch's columns, checked
    vectorised: :meth:`xdpgw.orders.batch.OrderBatch.check`)."""
    o = _NEW(Order)
    _ID(o, cl_ord_id)
    _SYM(o, symbol)
    _SIDE(o, side)
    _QTY(o, qty)
    _PRICE(o, price)
    _TIF(o, tif)
    _VENUE(o, None)
    _PARENT(o, None)
    return o


_NEW = object.__new__


def price_to_ticks(text: str | Decimal | int) -> int:
    """"63.02" → 630200. Refuses sub-tick precision instead of rounding it away."""
    try:
        value = Decimal(str(text)) * PRICE_SCALE
    except InvalidOperation:
        raise ValueError(f"price {text!r} is not a decimal number") from None
    if value != value.to_integral_value():
        raise ValueError(f"price {text!r} has more than 4 decimals")
    return int(value)


def ticks_to_decimal(ticks: int) -> Decimal:
    """630200 → Decimal('63.0200')."""
    return Decimal(ticks).scaleb(-4)
