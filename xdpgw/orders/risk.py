"""Pre-trade risk checks: every order passes them before it can be sent; a denial is counted by reason.

The checks follow SEC Rule 15c3-5 (Market Access Rule), which requires controls "reasonably designed
to prevent the entry of orders that exceed appropriate pre-set credit or capital thresholds in the
aggregate" — ¶(c)(1)(i): gross notional per day per symbol and in total, position limits — and "to
prevent the entry of erroneous orders, by rejecting orders that exceed appropriate price or size
parameters, on an order-by-order basis or over a short period of time, or that indicate duplicative
orders" — ¶(c)(1)(ii): max quantity, max notional per order, the price collar, the duplicate check —
and orders "for securities ... the broker or dealer is restricted from trading" — ¶(c)(2)(ii): the
restricted list. The FIA's automated-trading risk controls ("Best Practices for Automated Trading Risk
Controls and System Safeguards", FIA 2015/2024) name the same pre-trade set (maximum order size,
price tolerance / collars, maximum intraday position, message throttles — :mod:`xdpgw.orders.throttle`)
and the **kill switch**: one action that stops new orders and cancels every resting one, while
cancels still go through. Every limit is optional (None: not checked), all are checked in a fixed
order and the first failure names the denial.

Quantities are shares, prices integer ticks (``PRICE_SCALE`` per unit); notionals are ticks × shares
(a limit of $1,000,000 is ``1_000_000 * PRICE_SCALE``). Exposure (open orders, open quantity per
side, gross notional, position) is reserved when an order is accepted, returned when it ends, and
positions come from fills only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from xdpgw.orders.model import Order, Side

#: The reasons a check denies an order (the keys of ``RiskEngine.denied``).
REASONS = ("kill_switch", "restricted", "max_qty", "max_notional", "no_reference_price", "price_collar",
           "duplicate_id", "duplicate_order", "max_open_orders", "gross_notional_symbol",
           "gross_notional_total", "position_limit")

ReferencePrice = Callable[[str], "int | None"]  # symbol → reference price in ticks (None: unknown)


_EPOCH = [0]  # bumped by every change to any RiskLimits: engines rebuild their per-symbol records


class _Watched(dict):
    """A limits table (symbol → value) that tells the engines when it changes in place."""

    __slots__ = ()

    def __setitem__(self, key, value) -> None:
        dict.__setitem__(self, key, value)
        _EPOCH[0] += 1

    def __delitem__(self, key) -> None:
        dict.__delitem__(self, key)
        _EPOCH[0] += 1

    def __ior__(self, other):
        dict.update(self, other)
        _EPOCH[0] += 1
        return self

    def clear(self) -> None:
        dict.clear(self)
        _EPOCH[0] += 1

    def pop(self, *args):
        _EPOCH[0] += 1
        return dict.pop(self, *args)

    def popitem(self):
        _EPOCH[0] += 1
        return dict.popitem(self)

    def setdefault(self, key, default=None):
        _EPOCH[0] += 1
        return dict.setdefault(self, key, default)

    def update(self, *args, **kw) -> None:
        dict.update(self, *args, **kw)
        _EPOCH[0] += 1


@dataclass(slots=True)
class RiskLimits:
    """Every pre-trade limit; None (or empty) switches that check off.

    Limits may change at any time, in place too (``limits.max_qty = 500``,
    ``limits.reference_prices["AAPL"] = px``): the next order is checked against them. The two
    tables are kept as dicts that report changes (a copy of the dict given), ``restricted`` as a
    frozenset (assign a new one to change it)."""

    max_qty: int | None = None  # shares per order
    max_notional: int | None = None  # ticks × shares per order
    collar_pct: float | None = None  # a limit price may be at most this % away from the reference
    reference_prices: dict[str, int] = field(default_factory=dict)  # configured references (ticks)
    max_open_per_symbol: int | None = None  # orders working at venues, per symbol
    max_gross_per_symbol: int | None = None  # ticks × shares sent per day, per symbol
    max_gross_total: int | None = None  # ticks × shares sent per day, all symbols
    max_position: int | None = None  # |shares| per symbol, counting open orders on the same side
    position_limits: dict[str, int] = field(default_factory=dict)  # per-symbol overrides of max_position
    restricted: frozenset[str] = frozenset()
    duplicate_window_ns: int = 0  # same symbol/side/qty/price within this window is a duplicate (0: off)

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("reference_prices", "position_limits") and type(value) is not _Watched:
            value = _Watched(value)
        elif name == "restricted" and type(value) is not frozenset:
            value = frozenset(value)
        object.__setattr__(self, name, value)
        _EPOCH[0] += 1


@dataclass(slots=True)
class SymbolExposure:
    open_orders: int = 0
    open_buy: int = 0  # shares
    open_sell: int = 0
    gross: int = 0  # ticks × shares sent today
    position: int = 0  # from fills: + bought, - sold


_NONE = float("inf")  # a limit that is off: no quantity, notional or position exceeds it
_EMPTY = (1, 0)  # a price band no price is inside


class _SymbolRisk:
    """What one symbol's orders are checked against, worked out once per symbol (and again after
    any limit changes): restricted or not, the configured reference price, the position limit, the
    band of limit prices the collar surely accepts (``lo <= price <= hi``; a price outside it, or
    any price when the reference comes from ``RiskEngine.reference``, is checked against the
    reference itself), and the symbol's exposure (None until its first order passes the checks
    that precede it)."""

    __slots__ = ("restricted", "ref", "lo", "hi", "max_position", "exp")

    def __init__(self, lim: RiskLimits, sym: str, live_reference: bool, exp: SymbolExposure | None) -> None:
        self.restricted = sym in lim.restricted
        self.ref = ref = lim.reference_prices.get(sym)
        collar = lim.collar_pct
        if collar is None:
            self.lo, self.hi = -_NONE, _NONE
        elif live_reference or ref is None:
            self.lo, self.hi = _EMPTY
        else:  # |price - ref| * 100 <= collar * ref  ⟸  |price - ref| <= floor(collar * ref) // 100
            x = collar * ref
            k = math.floor(x) // 100 if 0 <= x < _NONE else -1
            self.lo, self.hi = (ref - k, ref + k) if k >= 0 else _EMPTY
        pl = lim.position_limits
        limit = pl.get(sym, lim.max_position) if pl else lim.max_position
        self.max_position = _NONE if limit is None else limit
        self.exp = exp


_BUY = Side.BUY


class RiskEngine:
    """Pre-trade checks and the exposure they need. ``reference`` (e.g. a book's mid or last trade)
    is asked first; ``limits.reference_prices`` is the fallback."""

    def __init__(self, limits: RiskLimits | None = None, reference: ReferencePrice | None = None) -> None:
        self._epoch = -1  # the limits the per-symbol records were made from (-1: none yet)
        self._symbols: dict[str, _SymbolRisk] = {}
        self._flat: tuple = ()
        self.limits = limits or RiskLimits()
        self.reference = reference
        self.killed = False
        self.kill_reason = ""
        self.denied: Counter[str] = Counter()
        self.exposure: dict[str, SymbolExposure] = {}
        self.gross_total = 0
        self.seen_ids: set[str] = set()
        self._recent: dict[tuple, int] = {}  # (symbol, side, qty, price) → last accepted ns

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: RiskLimits) -> None:
        self._limits = limits
        self._epoch = -1

    @property
    def reference(self) -> ReferencePrice | None:
        return self._reference

    @reference.setter
    def reference(self, reference: ReferencePrice | None) -> None:
        self._reference = reference
        self._epoch = -1

    def _relimit(self) -> None:
        """The limits changed (or were never read): forget the per-symbol records, read the rest
        (a limit that is off as ``_NONE``)."""
        lim = self._limits
        self._symbols.clear()
        self._flat = (*(_NONE if x is None else x for x in (
            lim.max_qty, lim.max_notional, lim.max_open_per_symbol, lim.max_gross_per_symbol, lim.max_gross_total)),
            lim.duplicate_window_ns)
        self._epoch = _EPOCH[0]

    def _symbol(self, sym: str) -> _SymbolRisk:
        sr = self._symbols[sym] = _SymbolRisk(self._limits, sym, self._reference is not None, self.exposure.get(sym))
        return sr

    # --- the kill switch --------------------------------------------------------------------------

    def kill(self, reason: str = "kill switch") -> None:
        """Deny every new order from now on (cancels are not orders: they still go through)."""
        self.killed, self.kill_reason = True, reason

    def resume(self) -> None:
        self.killed, self.kill_reason = False, ""

    # --- checks -----------------------------------------------------------------------------------

    def reference_price(self, symbol: str) -> int | None:
        if self.reference is not None:
            px = self.reference(symbol)
            if px:
                return int(px)
        return self._limits.reference_prices.get(symbol)

    def check_order(self, order: Order) -> str | None:
        """The checks on the order alone (no exposure): kill switch, restricted, size, price.
        A queued order passes these again when it leaves the throttle."""
        return self.verdict(order, 0, 1, False, True)

    def check(self, order: Order, now_ns: int = 0, children: int = 1) -> str | None:
        """Every check, without reserving anything; the first failure's reason, or None."""
        return self.verdict(order, now_ns, children, False)

    def accept(self, order: Order, now_ns: int = 0, children: int = 1) -> str | None:
        """Check and, when it passes, reserve the order's exposure (``children`` orders at venues).
        Returns the denial reason (counted) or None."""
        why = self.verdict(order, now_ns, children, True)
        if why:
            self.denied[why] += 1
        return why

    def verdict(self, order: Order, now_ns: int = 0, children: int = 1, commit: bool = True,
                alone: bool = False) -> str | None:
        """Every check in one pass (the per-order hot path: one call, one per-symbol record), the
        first failure's reason or None; a denial is not counted (``accept`` counts). ``commit``:
        reserve the exposure of an order that passes; ``alone``: only the checks on the order alone
        (``check_order``)."""
        if _EPOCH[0] != self._epoch:
            self._relimit()
        if self.killed:
            return "kill_switch"
        sym = order.symbol
        sr = self._symbols.get(sym) or self._symbol(sym)
        if sr.restricted:
            return "restricted"
        max_qty, max_notional, max_open, max_gross_sym, max_gross_total, window = self._flat
        qty, price = order.qty, order.price
        if qty > max_qty:
            return "max_qty"
        if price and sr.lo <= price <= sr.hi:
            notional = qty * price
        else:  # the collar against the reference itself, or a market order valued at it
            value = self._valued(sr, sym, price)
            if type(value) is str:
                return value
            notional = qty * value
        if notional > max_notional:
            return "max_notional"
        if alone:
            return None
        oid, side = order.cl_ord_id, order.side
        if oid in self.seen_ids:
            return "duplicate_id"
        if window:
            key = (sym, side, qty, price)
            last = self._recent.get(key)
            if last is not None and now_ns - last < window:
                return "duplicate_order"
        exp = sr.exp
        if exp is None:
            exp = self.exposure.get(sym)
            if exp is None:
                exp = self.exposure[sym] = SymbolExposure()
            sr.exp = exp
        open_orders = exp.open_orders + children  # each sum once: checked, then kept when committed
        if open_orders > max_open:
            return "max_open_orders"
        gross = exp.gross + notional
        if gross > max_gross_sym:
            return "gross_notional_symbol"
        gross_total = self.gross_total + notional
        if gross_total > max_gross_total:
            return "gross_notional_total"
        if side is _BUY:
            open_side = exp.open_buy + qty
            if exp.position + open_side > sr.max_position:
                return "position_limit"
        else:
            open_side = exp.open_sell + qty
            if exp.position - open_side < -sr.max_position:
                return "position_limit"
        if commit:
            self.seen_ids.add(oid)
            if window:
                self._recent[key] = now_ns
            exp.open_orders = open_orders
            if side is _BUY:
                exp.open_buy = open_side
            else:
                exp.open_sell = open_side
            exp.gross = gross
            self.gross_total = gross_total
        return None

    def _valued(self, sr: _SymbolRisk, sym: str, price: int) -> int | str:
        """A limit price outside the collar's sure band, or a market order (price 0): what a share
        is worth (the price, or the reference for a market order), or the denial (no reference,
        outside the collar)."""
        lim = self._limits
        collar = lim.collar_pct
        ref = self.reference_price(sym) if self._reference is not None else sr.ref
        if ref is None:
            return "no_reference_price" if collar is not None or (not price and lim.max_notional is not None) else price
        if not price:
            return ref
        if collar is not None and abs(price - ref) * 100 > collar * ref:
            return "price_collar"
        return price

    def _reserve(self, exp: SymbolExposure, oid: str, key: tuple | None, now_ns: int, children: int, buy: bool,
                 qty: int, notional: int) -> None:
        self.seen_ids.add(oid)
        if key is not None:
            self._recent[key] = now_ns
        exp.open_orders += children
        if buy:
            exp.open_buy += qty
        else:
            exp.open_sell += qty
        exp.gross += notional
        self.gross_total += notional

    def recheck(self, order: Order) -> str | None:
        """The order-alone checks again (for an order leaving the throttle queue); counts a denial."""
        why = self.check_order(order)
        if why:
            self.denied[why] += 1
        return why

    def deny(self, reason: str) -> None:
        """Count a denial decided outside the checks (e.g. no route)."""
        self.denied[reason] += 1

    # --- exposure ---------------------------------------------------------------------------------

    def commit(self, order: Order, now_ns: int = 0, children: int = 1) -> None:
        """Reserve an accepted order's exposure (also used to rebuild it from the journal)."""
        key = (order.symbol, order.side, order.qty, order.price) if self.limits.duplicate_window_ns else None
        exp = self.exposure.get(order.symbol)
        if exp is None:
            exp = self.exposure[order.symbol] = SymbolExposure()
        notional = order.qty * (order.price or self.reference_price(order.symbol) or 0)
        self._reserve(exp, order.cl_ord_id, key, now_ns, children, order.side is Side.BUY, order.qty, notional)

    def on_fill(self, symbol: str, side: Side, qty: int) -> None:
        exp = self.exposure.setdefault(symbol, SymbolExposure())
        exp.position += side.sign * qty
        if side is Side.BUY:
            exp.open_buy = max(0, exp.open_buy - qty)
        else:
            exp.open_sell = max(0, exp.open_sell - qty)

    def on_broken(self, symbol: str, side: Side, qty: int) -> None:
        """A busted trade: the fill's shares leave the position."""
        self.exposure.setdefault(symbol, SymbolExposure()).position -= side.sign * qty

    def release(self, symbol: str, side: Side, leaves: int, orders: int = 1) -> None:
        """An order ended (cancelled, rejected, expired, filled, replaced) with ``leaves`` shares open."""
        exp = self.exposure.setdefault(symbol, SymbolExposure())
        exp.open_orders = max(0, exp.open_orders - orders)
        if side is Side.BUY:
            exp.open_buy = max(0, exp.open_buy - leaves)
        else:
            exp.open_sell = max(0, exp.open_sell - leaves)

    def add_open(self, symbol: str, side: Side, qty: int, orders: int = 0) -> None:
        """Open quantity (or orders) that appeared after acceptance (e.g. a replace to a larger size)."""
        exp = self.exposure.setdefault(symbol, SymbolExposure())
        exp.open_orders += orders
        if side is Side.BUY:
            exp.open_buy += qty
        else:
            exp.open_sell += qty

    def positions(self) -> dict[str, int]:
        return {s: e.position for s, e in self.exposure.items() if e.position}

    def new_day(self) -> None:
        """Start a trading day: gross notionals back to zero (positions and open orders stay)."""
        for e in self.exposure.values():
            e.gross = 0
        self.gross_total = 0
        self._recent.clear()


def limits_from_mapping(m: Mapping) -> RiskLimits:
    """RiskLimits from a config table (``[risk]`` of the router's TOML): notionals and prices in
    currency units (decimals), ``collar_pct`` in percent, ``duplicate_window_ms``."""
    from xdpgw.orders.model import price_to_ticks

    known = {"max_qty", "max_notional", "collar_pct", "reference_prices", "max_open_per_symbol",
             "max_gross_per_symbol", "max_gross_total", "max_position", "position_limits", "restricted",
             "duplicate_window_ms"}
    unknown = set(m) - known
    if unknown:
        from xdpgw.errors import GatewayError

        raise GatewayError(f"unknown risk setting(s) {', '.join(sorted(unknown))}",
                           f"use only {', '.join(sorted(known))}")

    def money(key: str) -> int | None:
        v = m.get(key)
        return None if v is None else price_to_ticks(str(v))

    def num(key: str) -> int | None:
        v = m.get(key)
        return None if v is None else int(v)

    return RiskLimits(
        max_qty=num("max_qty"),
        max_notional=money("max_notional"),
        collar_pct=None if m.get("collar_pct") is None else float(m["collar_pct"]),
        reference_prices={s: price_to_ticks(str(p)) for s, p in (m.get("reference_prices") or {}).items()},
        max_open_per_symbol=num("max_open_per_symbol"),
        max_gross_per_symbol=money("max_gross_per_symbol"),
        max_gross_total=money("max_gross_total"),
        max_position=num("max_position"),
        position_limits={s: int(v) for s, v in (m.get("position_limits") or {}).items()},
        restricted=frozenset(m.get("restricted") or ()),
        duplicate_window_ns=int(float(m.get("duplicate_window_ms", 0)) * 1_000_000),
    )
