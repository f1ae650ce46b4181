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
import re
import struct
from dataclasses import dataclass
from typing import ClassVar

from xdpgw.orders.model import Order, Side, Tif


class OuchError(ValueError):
    """A message that cannot be decoded (wrong length, unknown type, bad appendage)."""


def _alpha(value: str, width: int) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > width:
        raise OuchError(f"{value!r} is longer than its {width}-character field")
    return raw.ljust(width, b" ")


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").rstrip(" \x00")


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
    widths: tuple[int, ...]  # alpha width per field, 0 for integers
    appendage: bool

    @property
    def length(self) -> int:
        """Fixed length, type byte included (the doc's "length" column)."""
        return self.struct.size


def _layout(cls: type[_Message]) -> _Layout:
    parts = re.findall(r"\d*[A-Za-z]", cls.FORMAT)
    names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "appendage")
    if len(names) != len(parts):
        raise AssertionError(f"{cls.__name__}: {len(names)} fields, {len(parts)} formats")
    widths = tuple(int(p[:-1] or 1) if p.endswith("s") else 0 for p in parts)
    return _Layout(struct.Struct(">c" + cls.FORMAT + ("H" if cls.HAS_APPENDAGE else "")), names, widths,
                   cls.HAS_APPENDAGE)


LAYOUTS: dict[type[_Message], _Layout] = {c: _layout(c) for c in (*INBOUND_TYPES.values(), *OUTBOUND_TYPES.values())}


def encode(msg: _Message) -> bytes:
    """The OUCH message (type byte first), as it goes inside a SoupBinTCP packet."""
    lay = LAYOUTS[type(msg)]
    values: list = [msg.TYPE]
    for name, width in zip(lay.names, lay.widths, strict=True):
        v = getattr(msg, name)
        values.append(_alpha(v, width) if width else v)
    if lay.appendage:
        values.append(len(msg.appendage))
        try:
            return lay.struct.pack(*values) + msg.appendage
        except struct.error as exc:
            raise OuchError(f"{type(msg).__name__}: {exc}") from None
    try:
        return lay.struct.pack(*values)
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
    fields = lay.struct.unpack_from(payload)
    args = [_text(v) if w else v for v, w in zip(fields[1:], lay.widths, strict=False)]
    if lay.appendage:
        size = fields[-1]
        if len(payload) != lay.length + size:
            raise OuchError(f"{cls.__name__}: {len(payload)} bytes, appendage length says {lay.length + size}")
        args.append(bytes(payload[lay.length:]))
    elif len(payload) != lay.length:
        raise OuchError(f"{cls.__name__} of {len(payload)} bytes, expected {lay.length}")
    return cls(*args)


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
_SIDES = {s: s.value.encode() for s in Side}
_TIFS = {t: t.value.encode() for t in Tif}


class EnterOrderEncoder:
    """Enter Order frames (SoupBinTCP header included) packed into one preallocated buffer.

    ``frame(order, user_ref_num)`` returns a memoryview of the buffer valid until the next call;
    a constant appendage (e.g. the firm) sits after the fixed part once for all orders.
    """

    __slots__ = ("_buf", "_view", "_size", "_symbols", "_display", "_capacity", "_fixed_tail")

    def __init__(self, appendage: bytes = b"", display: str = "Y", capacity: str = "A") -> None:
        self._size = _SOUP_U_ENTER.size + len(appendage)
        self._buf = bytearray(self._size)
        self._buf[_SOUP_U_ENTER.size:] = appendage
        self._view = memoryview(self._buf)
        self._symbols: dict[str, bytes] = {}
        self._display = display.encode()
        self._capacity = capacity.encode()
        self._fixed_tail = len(appendage)

    def frame(self, order: Order, user_ref_num: int) -> memoryview:
        sym = self._symbols.get(order.symbol)
        if sym is None:
            sym = self._symbols[order.symbol] = _alpha(order.symbol, 8)
        _SOUP_U_ENTER.pack_into(
            self._buf, 0, self._size - 2, b"U", b"O", user_ref_num, _SIDES[order.side], order.qty, sym,
            order.price, _TIFS[order.tif], self._display, self._capacity, b"N", b"N",
            order.cl_ord_id.encode().ljust(14), self._fixed_tail)
        return self._view
