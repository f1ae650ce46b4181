"""OUCH 5.0 messages, both directions: one dataclass per message type, encoders and decoders (sans-IO).

Layouts follow ``docs/order-protocols.md``: big-endian unsigned integers, prices u8 with four implied
decimals (our ticks), timestamps u8 nanoseconds since midnight, alpha fields ASCII left-justified and
space-padded. Messages with an appendage end in ``AppendageLength u2`` + the appendage bytes; the
appendage is kept raw in ``appendage`` and read with :func:`parse_appendage` (unknown tags skipped).

``encode(msg)`` / ``decode(payload, inbound=...)`` handle every type generically from each class's
``FORMAT``; :class:`EnterOrderEncoder` is the hot path: one ``pack_into`` into a preallocated buffer
that already holds the SoupBinTCP header, so the frame goes to the socket as it is.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from xdpgw.orders.model import Order, Side, Tif
from xdpgw.orders.ouch.soupbin import alpha


class OuchError(ValueError):
    """A message that cannot be decoded (wrong length, unknown type, bad appendage)."""


def _alpha(value: str, width: int) -> bytes:
    return alpha(value, width, OuchError)


def _text(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip(" \x00")


@dataclass(slots=True)
class _Message:
    """Base: ``TYPE`` is the message type byte, ``FORMAT`` the struct codes of the fields after it, in
    field order (``s`` fields are alpha, space-padded); ``HAS_APPENDAGE`` adds AppendageLength u2 +
    appendage after the fixed part (the last dataclass field, ``appendage: bytes``)."""

    TYPE: ClassVar[bytes]
    FORMAT: ClassVar[str]
    HAS_APPENDAGE: ClassVar[bool] = False
    INBOUND: ClassVar[bool]  # True: client → exchange (in Unsequenced Data)


# --- client → exchange ---------------------------------------------------------------------------


@dataclass(slots=True)
class EnterOrder(_Message):
    TYPE: ClassVar[bytes] = b"O"
    FORMAT: ClassVar[str] = "I1sI8sQ1s1s1s1s1s14s"
    HAS_APPENDAGE: ClassVar[bool] = True
    INBOUND: ClassVar[bool] = True
    user_ref_num: int
    side: str
    quantity: int
    symbol: str
    price: int
    time_in_force: str
    display: str
    capacity: str
    inter_market_sweep: str
    cross_type: str
    cl_ord_id: str
    appendage: bytes = b""


@dataclass(slots=True)
class ReplaceOrder(_Message):
    TYPE: ClassVar[bytes] = b"U"
    FORMAT: ClassVar[str] = "IIIQ1s1s1s14s"
    HAS_APPENDAGE: ClassVar[bool] = True
    INBOUND: ClassVar[bool] = True
    orig_user_ref_num: int
    user_ref_num: int
    quantity: int
    price: int
    time_in_force: str
    display: str
    inter_market_sweep: str
    cl_ord_id: str
    appendage: bytes = b""


@dataclass(slots=True)
class CancelOrder(_Message):
    TYPE: ClassVar[bytes] = b"X"
    FORMAT: ClassVar[str] = "II"
    INBOUND: ClassVar[bool] = True
    user_ref_num: int
    quantity: int  # the new intended size; 0 cancels the rest


@dataclass(slots=True)
class ModifyOrder(_Message):
    TYPE: ClassVar[bytes] = b"M"
    FORMAT: ClassVar[str] = "I1sI"
    INBOUND: ClassVar[bool] = True
    user_ref_num: int
    side: str
    quantity: int


@dataclass(slots=True)
class MassCancel(_Message):
    TYPE: ClassVar[bytes] = b"C"
    FORMAT: ClassVar[str] = "I4s8s"
    HAS_APPENDAGE: ClassVar[bool] = True
    INBOUND: ClassVar[bool] = True
    user_ref_num: int
    firm: str
    symbol: str  # blank: every symbol
    appendage: bytes = b""


# --- exchange → client ---------------------------------------------------------------------------


@dataclass(slots=True)
class SystemEvent(_Message):
    TYPE: ClassVar[bytes] = b"S"
    FORMAT: ClassVar[str] = "Q1s"
    INBOUND: ClassVar[bool] = False
    timestamp: int
    event_code: str  # S start of day, E end of day


@dataclass(slots=True)
class OrderAccepted(_Message):
    TYPE: ClassVar[bytes] = b"A"
    FORMAT: ClassVar[str] = "QI1sI8sQ1s1sQ1s1s1s1s14s"
    HAS_APPENDAGE: ClassVar[bool] = True
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int
    side: str
    quantity: int
    symbol: str
    price: int
    time_in_force: str
    display: str
    order_reference_number: int
    capacity: str
    inter_market_sweep: str
    cross_type: str
    order_state: str  # L live, D dead
    cl_ord_id: str
    appendage: bytes = b""


@dataclass(slots=True)
class OrderReplaced(_Message):
    TYPE: ClassVar[bytes] = b"U"
    FORMAT: ClassVar[str] = "QII1sI8sQ1s1sQ1s1s1s1s14s"
    HAS_APPENDAGE: ClassVar[bool] = True
    INBOUND: ClassVar[bool] = False
    timestamp: int
    orig_user_ref_num: int
    user_ref_num: int
    side: str
    quantity: int
    symbol: str
    price: int
    time_in_force: str
    display: str
    order_reference_number: int
    capacity: str
    inter_market_sweep: str
    cross_type: str
    order_state: str
    cl_ord_id: str
    appendage: bytes = b""


@dataclass(slots=True)
class OrderCanceled(_Message):
    TYPE: ClassVar[bytes] = b"C"
    FORMAT: ClassVar[str] = "QII1s"
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int
    quantity: int  # shares just canceled (a decrement)
    reason: str


@dataclass(slots=True)
class OrderExecuted(_Message):
    TYPE: ClassVar[bytes] = b"E"
    FORMAT: ClassVar[str] = "QIIQ1sQ"
    HAS_APPENDAGE: ClassVar[bool] = True
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int
    quantity: int
    price: int
    liquidity_flag: str
    match_number: int
    appendage: bytes = b""


@dataclass(slots=True)
class OrderRejected(_Message):
    TYPE: ClassVar[bytes] = b"J"
    FORMAT: ClassVar[str] = "QIH14s"
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int
    reason: int
    cl_ord_id: str


@dataclass(slots=True)
class BrokenTrade(_Message):
    TYPE: ClassVar[bytes] = b"B"
    FORMAT: ClassVar[str] = "QIQ1s14s"
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int
    match_number: int
    reason: str
    cl_ord_id: str


@dataclass(slots=True)
class CancelPending(_Message):
    TYPE: ClassVar[bytes] = b"P"
    FORMAT: ClassVar[str] = "QI"
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int


@dataclass(slots=True)
class CancelReject(_Message):
    TYPE: ClassVar[bytes] = b"I"
    FORMAT: ClassVar[str] = "QI"
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int


@dataclass(slots=True)
class OrderModified(_Message):
    TYPE: ClassVar[bytes] = b"M"
    FORMAT: ClassVar[str] = "QI1sI"
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int
    side: str
    quantity: int


@dataclass(slots=True)
class MassCancelResponse(_Message):
    """The doc lists Timestamp · UserRefNum · Firm · Symbol · "…": we end it as the request ends,
    with AppendageLength u2 + appendage (27 bytes without one)."""

    TYPE: ClassVar[bytes] = b"X"
    FORMAT: ClassVar[str] = "QI4s8s"
    HAS_APPENDAGE: ClassVar[bool] = True
    INBOUND: ClassVar[bool] = False
    timestamp: int
    user_ref_num: int
    firm: str
    symbol: str
    appendage: bytes = b""


INBOUND_TYPES: dict[bytes, type[_Message]] = {
    c.TYPE: c for c in (EnterOrder, ReplaceOrder, CancelOrder, ModifyOrder, MassCancel)
}
OUTBOUND_TYPES: dict[bytes, type[_Message]] = {
    c.TYPE: c for c in (SystemEvent, OrderAccepted, OrderReplaced, OrderCanceled, OrderExecuted, OrderRejected,
                        BrokenTrade, CancelPending, CancelReject, OrderModified, MassCancelResponse)
}


@dataclass(slots=True, frozen=True)
class _Layout:
    struct: struct.Struct  # type byte + fixed fields (+ AppendageLength)
    names: tuple[str, ...]
    alpha: tuple[tuple[int, int], ...]  # (field index, width) of the alpha fields
    get: operator.attrgetter  # all fixed fields of a message at once
    appendage: bool
    length: int  # fixed length, type byte included (the doc's "length" column)


def _layout(cls: type[_Message]) -> _Layout:
    parts = re.findall(r"\d*[A-Za-z]", cls.FORMAT)
    names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "appendage")
    if len(names) != len(parts):
        raise AssertionError(f"{cls.__name__}: {len(names)} fields, {len(parts)} formats")
    alpha = tuple((i, int(p[:-1] or 1)) for i, p in enumerate(parts) if p.endswith("s"))
    return _Layout(struct.Struct(">c" + cls.FORMAT + ("H" if cls.HAS_APPENDAGE else "")), names, alpha,
                   operator.attrgetter(*names), cls.HAS_APPENDAGE,
                   struct.calcsize(">c" + cls.FORMAT + ("H" if cls.HAS_APPENDAGE else "")))


LAYOUTS: dict[type[_Message], _Layout] = {c: _layout(c) for c in (*INBOUND_TYPES.values(), *OUTBOUND_TYPES.values())}


def encode(msg: _Message) -> bytes:
    """The OUCH message (type byte first), as it goes inside a SoupBinTCP packet."""
    lay = LAYOUTS[type(msg)]
    values = list(lay.get(msg))
    for i, width in lay.alpha:
        try:
            raw = values[i].encode("latin-1")  # ASCII on the wire; latin-1 round-trips what we decoded
        except UnicodeEncodeError:
            raise OuchError(f"{type(msg).__name__}: {values[i]!r} is not ASCII") from None
        if len(raw) > width:
            raise OuchError(f"{type(msg).__name__}: {values[i]!r} is longer than its {width}-character field")
        values[i] = raw.ljust(width)
    try:
        if lay.appendage:
            return lay.struct.pack(msg.TYPE, *values, len(msg.appendage)) + msg.appendage
        return lay.struct.pack(msg.TYPE, *values)
    except struct.error as exc:
        raise OuchError(f"{type(msg).__name__}: {exc}") from None


def decode(payload: bytes | memoryview, inbound: bool) -> _Message:
    """One OUCH message (type byte first). ``inbound``: a client → exchange message (the simulator's
    view); else exchange → client (the connector's). Raises :class:`OuchError` when malformed."""
    if not payload:
        raise OuchError("empty OUCH message")
    kind = bytes(payload[:1])
    cls = (INBOUND_TYPES if inbound else OUTBOUND_TYPES).get(kind)
    if cls is None:
        raise OuchError(f"unknown {'inbound' if inbound else 'outbound'} OUCH message type {kind!r}")
    lay = LAYOUTS[cls]
    if len(payload) < lay.length:
        raise OuchError(f"{cls.__name__} of {len(payload)} bytes, needs {lay.length}")
    args = list(lay.struct.unpack_from(payload))
    del args[0]
    for i, _ in lay.alpha:
        args[i] = args[i].decode("latin-1").rstrip(" \x00")  # bytes as they came, even non-ASCII
    if lay.appendage:
        size = args.pop()
        if len(payload) != lay.length + size:
            raise OuchError(f"{cls.__name__}: {len(payload)} bytes, appendage length says {lay.length + size}")
        args.append(bytes(payload[lay.length:]))
    elif len(payload) != lay.length:
        raise OuchError(f"{cls.__name__} of {len(payload)} bytes, expected {lay.length}")
    return cls(*args)


# The connector's fast path for the frequent exchange messages: only the fields an event needs, read
# straight from the bytes (no dataclass); a length that disagrees falls back to ``decode``.
ACCEPTED_FIELDS = struct.Struct(">9xIxI8xQ2xQ4x14sH")  # ref, qty, price, order ref, ClOrdID, appendage length
EXECUTED_FIELDS = struct.Struct(">9xIIQcQH")  # ref, qty, price, liquidity flag, match number, appendage length
CANCELED_FIELDS = struct.Struct(">9xIIc")  # ref, qty (a decrement), reason


# --- appendage ("optional fields") ---------------------------------------------------------------

#: tag → (name, struct code or alpha width as "Ns")
APPENDAGE_TAGS: dict[int, tuple[str, str]] = {
    1: ("secondary_ord_ref_num", "Q"),
    2: ("firm", "4s"),
    3: ("min_qty", "I"),
    4: ("customer_type", "1s"),
    5: ("max_floor", "I"),
    6: ("price_type", "1s"),
    7: ("peg_offset", "i"),  # signed price offset (the doc gives no width; 4 bytes as in the spec)
    12: ("post_only", "1s"),
    15: ("expire_time", "I"),
    17: ("handle_inst", "1s"),
    18: ("bbo_weight", "1s"),
}
_TAG_OF = {name: (tag, code) for tag, (name, code) in APPENDAGE_TAGS.items()}


def encode_appendage(**fields: int | str) -> bytes:
    """``encode_appendage(firm="LIME")`` → ``b"\\x05\\x02LIME"`` (in the order given)."""
    out = bytearray()
    for name, value in fields.items():
        if name not in _TAG_OF:
            raise OuchError(f"unknown appendage field {name!r}; known: {', '.join(_TAG_OF)}")
        tag, code = _TAG_OF[name]
        raw = _alpha(value, int(code[:-1])) if code.endswith("s") else struct.pack(">" + code, value)
        out += bytes((1 + len(raw), tag)) + raw
    return bytes(out)


def parse_appendage(raw: bytes | memoryview) -> tuple[dict[str, int | str], int]:
    """Known optional fields by name, and how many unknown tags were skipped. A malformed appendage
    (an element running past the end, a known tag of the wrong size) raises :class:`OuchError`."""
    out: dict[str, int | str] = {}
    unknown = 0
    i, n = 0, len(raw)
    while i < n:
        size = raw[i]
        if size < 1 or i + 1 + size > n:
            raise OuchError(f"appendage element at byte {i} says {size} bytes, {n - i - 1} left")
        tag, value = raw[i + 1], bytes(raw[i + 2:i + 1 + size])
        i += 1 + size
        known = APPENDAGE_TAGS.get(tag)
        if known is None:
            unknown += 1
            continue
        name, code = known
        if struct.calcsize(">" + code) != len(value):
            raise OuchError(f"appendage {name} (tag {tag}) has {len(value)} bytes, expected {struct.calcsize(code)}")
        out[name] = _text(value) if code.endswith("s") else struct.unpack(">" + code, value)[0]
    return out, unknown


# --- codes ----------------------------------------------------------------------------------------

#: Order Rejected reasons: the doc's four, plus the ones our simulator sends (our numbering from the
#: OUCH 5.0 spec as we know it; a reason not listed reads "0xNN").
REJECT_REASONS: dict[int, str] = {
    0x06: "fat finger",
    0x07: "halted",
    0x0F: "other",
    0x13: "invalid quantity",
    0x15: "replace not allowed",
    0x17: "invalid symbol",
    0x1E: "shares exceed threshold",
    0x1F: "exceeds max notional",
    0x30: "invalid or non-increasing UserRefNum",
}
CANCEL_REASONS: dict[str, str] = {
    "U": "user", "I": "immediate or cancel", "T": "timeout", "S": "supervisory", "D": "regulatory",
    "Q": "self-match prevention", "Z": "system", "K": "price collar", "H": "halted", "E": "closed",
}


def reject_text(code: int) -> str:
    """``0x06`` → ``"0x06 fat finger"``."""
    name = REJECT_REASONS.get(code)
    return f"0x{code:02X} {name}" if name else f"0x{code:02X}"


def cancel_text(code: str) -> str:
    """``"U"`` → ``"U user"``."""
    name = CANCEL_REASONS.get(code)
    return f"{code} {name}" if name else code


# --- the hot path ---------------------------------------------------------------------------------

_SOUP_U_ENTER = struct.Struct(">Hcc I c I 8s Q c c c c c 14s H")  # SoupBinTCP length + 'U' + Enter Order
# the fields that change from order to order, from the UserRefNum (offset 4) to the ClOrdID; the
# TimeInForce and the display/capacity/ISO/cross flags after it are one 5s (made once per TimeInForce)
_ENTER_VARYING = struct.Struct(">I c I 8s Q 5s 14s")
_ENTER_AT = 4
_SIDES = {s: s.value.encode() for s in Side}
_TIFS = {t: t.value.encode() for t in Tif}


class EnterOrderEncoder:
    """Enter Order frames (SoupBinTCP header included) packed into preallocated buffers.

    ``frame(order, user_ref_num)`` returns a memoryview of one frame, valid until the next call;
    ``frames(orders, first_ref)`` packs a whole batch back to back (UserRefNums ``first_ref`` on) for
    one ``send``. What is the same in every frame (SoupBinTCP header, message type, flags, appendage)
    is written once per buffer slot; each order packs only its own fields (one ``pack_into``).
    """

    __slots__ = ("_buf", "_view", "_size", "_symbols", "_display", "_capacity", "_appendage", "_batch",
                 "_batch_view", "_flags", "_tif_flags", "_template")

    def __init__(self, appendage: bytes = b"", display: str = "Y", capacity: str = "A") -> None:
        self._size = _SOUP_U_ENTER.size + len(appendage)
        self._appendage = appendage
        self._display = display.encode()
        self._capacity = capacity.encode()
        self._flags = self._display + self._capacity + b"NN"
        self._tif_flags = {t: code + self._flags for t, code in _TIFS.items()}  # TimeInForce + the flags
        self._template = _SOUP_U_ENTER.pack(self._size - 2, b"U", b"O", 0, b"B", 0, b"", 0, b"0", self._display,
                                            self._capacity, b"N", b"N", b"", len(appendage)) + appendage
        self._buf = bytearray(self._template)
        self._view = memoryview(self._buf)
        self._batch = bytearray()
        self._batch_view = memoryview(self._batch)
        self._symbols: dict[str, bytes] = {}

    @property
    def size(self) -> int:
        """Bytes per frame."""
        return self._size

    def _symbol(self, symbol: str) -> bytes:
        sym = self._symbols.get(symbol)
        if sym is None:
            sym = self._symbols[symbol] = _alpha(symbol, 8)
        return sym

    def frame(self, order: Order, user_ref_num: int) -> memoryview:
        sym = self._symbols.get(order.symbol) or self._symbol(order.symbol)
        _ENTER_VARYING.pack_into(self._buf, _ENTER_AT, user_ref_num, _SIDES[order.side], order.qty, sym, order.price,
                                 self._tif_flags[order.tif], order.cl_ord_id.encode().ljust(14))
        return self._view

    def frames(self, orders: Sequence[Order], first_ref: int) -> memoryview:
        size, n = self._size, len(orders)
        if len(self._batch) < size * n:
            self._batch = bytearray(self._template * max(n, 64))
            self._batch_view = memoryview(self._batch)
        buf, pack = self._batch, _ENTER_VARYING.pack_into
        sides, tifs, syms, sym = _SIDES, self._tif_flags, self._symbols, self._symbol
        for i, o in enumerate(orders):
            pack(buf, i * size + _ENTER_AT, first_ref + i, sides[o.side], o.qty, syms.get(o.symbol) or sym(o.symbol),
                 o.price, tifs[o.tif], o.cl_ord_id.encode().ljust(14))
        return self._batch_view[:size * n]
