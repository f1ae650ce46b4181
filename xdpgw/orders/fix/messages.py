"""Our orders as FIX application fields, and FIX reports as venue events (pure functions, no engine).

Encoders return ``[(tag, value), ...]`` for the body of a message (the engine adds the header and
trailer); decoders take the ``{tag: value}`` of a received message (:func:`xdpgw.orders.fix.wire.fields`).
FIX 4.4 by default; FIX 4.2's differences (ExecType 1/2 for fills, ExecTransType) are handled.
"""

from __future__ import annotations

import time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from xdpgw.errors import GatewayError
from xdpgw.orders.model import PRICE_SCALE, Order, Side, Tif
from xdpgw.orders.venue import (
    Accepted,
    Cancelled,
    CancelRejected,
    Event,
    Expired,
    Filled,
    Rejected,
    Replaced,
    TradeBroken,
)

SIDE = {Side.BUY: "1", Side.SELL: "2", Side.SELL_SHORT: "5", Side.SELL_SHORT_EXEMPT: "6"}
SIDE_OF = {v: k for k, v in SIDE.items()}
#: OUCH's times in force that FIX 59 can say without more fields (GTT needs an ExpireTime, after-hours a
#: trading session: refused with a clear error)
TIF = {Tif.DAY: "0", Tif.IOC: "3", Tif.GTX: "5"}
TIF_OF = {v: k for k, v in TIF.items()}

#: OrdStatus (39) values after which an order is no longer open
FINAL_STATUS = frozenset("2348C")


def price_text(ticks: int) -> str:
    """630200 → "63.0200" (exact: no float on the way)."""
    return f"{ticks // PRICE_SCALE}.{ticks % PRICE_SCALE:04d}"


def ticks_of(text: str | None) -> tuple[int, bool]:
    """"63.02" → (630200, True); a price finer than a tick is rounded half-even and flagged False
    (venues may fill at mid-tick prices; the caller counts it). Missing or junk → (0, False)."""
    if not text:
        return 0, False
    try:
        value = Decimal(text) * PRICE_SCALE
    except InvalidOperation:
        return 0, False
    exact = value == value.to_integral_value()
    return int(value.to_integral_value(ROUND_HALF_EVEN)), exact


def transact_time() -> str:
    """TransactTime (60), UTC with milliseconds, as FIX writes timestamps."""
    ns = time.time_ns()
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns // 1_000_000 % 1000:03d}"


def _tif(order: Order) -> str:
    try:
        return TIF[order.tif]
    except KeyError:
        raise GatewayError(f"order {order.cl_ord_id}: time in force {order.tif.name} has no plain FIX 4.4 code",
                           "send it as DAY, IOC or GTX over FIX") from None


def new_order_single(order: Order) -> list[tuple[int, str]]:
    """NewOrderSingle (35=D) body: limit when ``price`` > 0, market when 0."""
    body = [(11, order.cl_ord_id), (21, "1"), (55, order.symbol), (54, SIDE[order.side]),
            (60, transact_time()), (38, str(order.qty))]
    body += [(40, "2"), (44, price_text(order.price))] if order.price else [(40, "1")]
    body.append((59, _tif(order)))
    return body


def order_from_fields(f: dict[int, str]) -> Order:
    """The order a NewOrderSingle or OrderCancelReplaceRequest we sent carried (rebuilt from the
    engine's log after a restart)."""
    return Order(f[11], f[55], SIDE_OF[f[54]], int(f[38]), ticks_of(f.get(44))[0], TIF_OF.get(f.get(59, "0"), Tif.DAY))


def cancel_request(cl_ord_id: str, orig_wire_id: str, order: Order) -> list[tuple[int, str]]:
    """OrderCancelRequest (35=F): ``cl_ord_id`` names this request, ``orig_wire_id`` the order."""
    return [(41, orig_wire_id), (11, cl_ord_id), (55, order.symbol), (54, SIDE[order.side]),
            (60, transact_time()), (38, str(order.qty))]


def replace_request(orig_wire_id: str, new: Order) -> list[tuple[int, str]]:
    """OrderCancelReplaceRequest (35=G): the whole new order, naming the one it replaces."""
    return [(41, orig_wire_id), *new_order_single(new)]


def execution_event(f: dict[int, str], ts_ns: int, resolve) -> Event | None:
    """An ExecutionReport (35=8) as our event, or None for reports that change nothing we track
    (pending new/cancel/replace, order status, restatement, done for day). ``resolve(wire_id)`` maps a
    ClOrdID on the wire to the router's order id (they differ for our cancel requests)."""
    kind = f.get(150, "")
    cl = resolve(f.get(11, ""))
    if kind == "0":
        qty = int(f.get(38) or 0) or int(f.get(151) or 0) + int(f.get(14) or 0)
        return Accepted(cl, f.get(37, ""), qty, ticks_of(f.get(44))[0], ts_ns)
    if kind in ("F", "1", "2"):  # 4.4: F trade (39 says partial or filled); 4.2: 1 partial / 2 fill
        return Filled(cl, int(f.get(32) or 0), ticks_of(f.get(31))[0], f.get(17, ""), f.get(851, ""), ts_ns)
    if kind == "4":
        target = resolve(f[41]) if 41 in f else cl
        qty = max(int(f.get(38) or 0) - int(f.get(14) or 0), 0)
        return Cancelled(target, qty, f.get(58, "canceled"), ts_ns)
    if kind == "5":
        return Replaced(resolve(f.get(41, "")), cl, f.get(37, ""), int(f.get(151) or 0),
                        ticks_of(f.get(44))[0], ts_ns)
    if kind == "8":
        reason = f.get(58) or f"OrdRejReason {f.get(103, '?')}"
        return Rejected(cl, reason, ts_ns)
    if kind == "C":
        return Expired(cl, ts_ns)
    if kind == "H":
        return TradeBroken(cl, f.get(19, ""), f.get(58, "trade cancel"), ts_ns)
    return None


def cancel_reject_event(f: dict[int, str], ts_ns: int, resolve) -> CancelRejected:
    """OrderCancelReject (35=9): the order (OrigClOrdID 41) is unchanged."""
    reason = f.get(58) or f"CxlRejReason {f.get(102, '?')}"
    return CancelRejected(resolve(f.get(41) or f.get(11, "")), reason, ts_ns)


def reject_event(f: dict[int, str], ts_ns: int, sent: tuple[str, str] | None) -> Event | None:
    """Reject (35=3) or BusinessMessageReject (35=j) of a message we sent: ``sent`` is (MsgType,
    order id) of the message it refers to (looked up by RefSeqNum 45 / BusinessRejectRefID 379).
    A refused new order is Rejected; a refused cancel or replace is CancelRejected."""
    if sent is None:
        return None
    msg_type, cl = sent
    code = f.get(373) or f.get(380) or "?"
    reason = f"{'session' if f.get(35) == '3' else 'business'} reject {code}: {f.get(58, '')}".rstrip(": ")
    return Rejected(cl, reason, ts_ns) if msg_type == "D" else CancelRejected(cl, reason, ts_ns)
