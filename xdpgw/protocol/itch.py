"""NASDAQ TotalView-ITCH 5.0: the 23 message layouts as big-endian numpy dtypes, plus encoders.

Every dtype maps the message bytes exactly (itemsize == documented size), so a run of records of one
type is decoded by a zero-copy ``view``. The 48-bit timestamp is split into ``ts_hi`` (u16) and
``ts_lo`` (u32); :func:`timestamps` combines them into nanoseconds since midnight.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np

HEADER: list[tuple[str, str]] = [
    ("type", "S1"), ("locate", ">u2"), ("tracking", ">u2"), ("ts_hi", ">u2"), ("ts_lo", ">u4"),
]

_U4, _U8, _C = ">u4", ">u8", "S1"
_STOCK = ("stock", "S8")

# type -> (name, body fields after the 11-byte header)
SPECS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "S": ("system_event", [("event_code", _C)]),
    "R": ("stock_directory", [
        _STOCK, ("market_category", _C), ("financial_status", _C), ("round_lot_size", _U4),
        ("round_lots_only", _C), ("issue_classification", _C), ("issue_subtype", "S2"),
        ("authenticity", _C), ("short_sale_threshold", _C), ("ipo_flag", _C), ("luld_tier", _C),
        ("etp_flag", _C), ("etp_leverage_factor", _U4), ("inverse_indicator", _C)]),
    "H": ("stock_trading_action", [_STOCK, ("trading_state", _C), ("reserved", _C), ("reason", "S4")]),
    "Y": ("reg_sho_restriction", [_STOCK, ("reg_sho_action", _C)]),
    "L": ("market_participant_position", [
        ("mpid", "S4"), _STOCK, ("primary_market_maker", _C), ("market_maker_mode", _C),
        ("participant_state", _C)]),
    "V": ("mwcb_decline_level", [("level1", _U8), ("level2", _U8), ("level3", _U8)]),
    "W": ("mwcb_status", [("breached_level", _C)]),
    "K": ("ipo_quoting_period_update", [
        _STOCK, ("release_time", _U4), ("release_qualifier", _C), ("ipo_price", _U4)]),
    "J": ("luld_auction_collar", [
        _STOCK, ("ref_price", _U4), ("upper_collar", _U4), ("lower_collar", _U4), ("extension", _U4)]),
    "h": ("operational_halt", [_STOCK, ("market_code", _C), ("halt_action", _C)]),
    "A": ("add_order", [("order_ref", _U8), ("side", _C), ("shares", _U4), _STOCK, ("price", _U4)]),
    "F": ("add_order_mpid", [
        ("order_ref", _U8), ("side", _C), ("shares", _U4), _STOCK, ("price", _U4), ("attribution", "S4")]),
    "E": ("order_executed", [("order_ref", _U8), ("executed_shares", _U4), ("match_number", _U8)]),
    "C": ("order_executed_with_price", [
        ("order_ref", _U8), ("executed_shares", _U4), ("match_number", _U8), ("printable", _C),
        ("execution_price", _U4)]),
    "X": ("order_cancel", [("order_ref", _U8), ("cancelled_shares", _U4)]),
    "D": ("order_delete", [("order_ref", _U8)]),
    "U": ("order_replace", [
        ("original_order_ref", _U8), ("new_order_ref", _U8), ("shares", _U4), ("price", _U4)]),
    "P": ("trade", [
        ("order_ref", _U8), ("side", _C), ("shares", _U4), _STOCK, ("price", _U4), ("match_number", _U8)]),
    "Q": ("cross_trade", [
        ("shares", _U8), _STOCK, ("cross_price", _U4), ("match_number", _U8), ("cross_type", _C)]),
    "B": ("broken_trade", [("match_number", _U8)]),
    "I": ("noii", [
        ("paired_shares", _U8), ("imbalance_shares", _U8), ("imbalance_direction", _C), _STOCK,
        ("far_price", _U4), ("near_price", _U4), ("current_ref_price", _U4), ("cross_type", _C),
        ("price_variation", _C)]),
    "N": ("retail_price_improvement", [_STOCK, ("interest_flag", _C)]),
    "O": ("dlcr_price_discovery", [
        _STOCK, ("open_eligibility", _C), ("min_allowable_price", _U4), ("max_allowable_price", _U4),
        ("near_execution_price", _U4), ("near_execution_time", _U8), ("lower_price_range_collar", _U4),
        ("upper_price_range_collar", _U4)]),
}

# Documented sizes (TotalView-ITCH 5.0); checked against the dtypes at import time.
SIZES: dict[str, int] = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21, "A": 36,
    "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19, "I": 50, "N": 20,
    "O": 48,
}

DTYPES: dict[str, np.dtype] = {t: np.dtype(HEADER + body) for t, (_, body) in SPECS.items()}
for _t, _dt in DTYPES.items():
    assert _dt.itemsize == SIZES[_t], (_t, _dt.itemsize, SIZES[_t])

TYPES: tuple[str, ...] = tuple(SPECS)
NAMES: dict[str, str] = {t: name for t, (name, _) in SPECS.items()}

#: Price(4) fields (u32, 4 implied decimals) and the MWCB levels (u64, 8 implied decimals).
PRICE4 = frozenset({
    "price", "execution_price", "cross_price", "far_price", "near_price", "current_ref_price", "ref_price",
    "upper_collar", "lower_collar", "ipo_price", "min_allowable_price", "max_allowable_price",
    "near_execution_price", "lower_price_range_collar", "upper_price_range_collar",
})
PRICE8 = frozenset({"level1", "level2", "level3"})

#: 256-entry table: message size by type byte, 0 for an unknown type (handed to the C splitter).
SIZE_TABLE = np.zeros(256, dtype=np.uint8)
for _t, _n in SIZES.items():
    SIZE_TABLE[ord(_t)] = _n

_TYPE_CODES = np.array([ord(t) for t in TYPES], dtype=np.uint8)


def timestamps(records: np.ndarray) -> np.ndarray:
    """Nanoseconds since midnight (uint64) for an array of any ITCH record dtype."""
    return (records["ts_hi"].astype(np.uint64) << np.uint64(32)) | records["ts_lo"].astype(np.uint64)


def _set_field(rec: np.ndarray, name: str, value: Any) -> None:
    kind = rec.dtype[name]
    if kind.kind == "S":
        raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
        if len(raw) > kind.itemsize:
            raise ValueError(f"{name}={value!r} is longer than {kind.itemsize} bytes")
        rec[name] = raw.ljust(kind.itemsize, b" ")
    else:
        if isinstance(value, Decimal | float | str):
            scale = 10**8 if name in PRICE8 else 10**4
            value = int(Decimal(value) * scale)
        rec[name] = int(value)


def encode_record(msg_type: str, **fields: Any) -> np.ndarray:
    """One ITCH message as a 1-element record array (unset alpha fields are spaces, numbers 0)."""
    if msg_type not in DTYPES:
        raise ValueError(f"unknown ITCH message type {msg_type!r}: use one of {''.join(TYPES)}")
    dt = DTYPES[msg_type]
    rec = np.zeros(1, dtype=dt)
    for name in dt.names:
        if dt[name].kind == "S":
            rec[name] = b" " * dt[name].itemsize
    rec["type"] = msg_type.encode()
    ts = int(fields.pop("timestamp", 0))
    if not 0 <= ts < 1 << 48:
        raise ValueError(f"timestamp {ts} does not fit 48 bits (ns since midnight)")
    rec["ts_hi"], rec["ts_lo"] = ts >> 32, ts & 0xFFFFFFFF
    for name, value in fields.items():
        if name not in dt.names or name in ("type", "ts_hi", "ts_lo"):
            raise ValueError(f"{msg_type} has no field {name!r}: fields are {', '.join(field_names(msg_type))}")
        _set_field(rec, name, value)
    return rec


def encode_message(msg_type: str, **fields: Any) -> bytes:
    """The wire bytes of one ITCH message; prices may be ints (raw) or Decimal/str (scaled)."""
    return encode_record(msg_type, **fields).tobytes()


def field_names(msg_type: str) -> list[str]:
    """User-facing fields of a type: header (locate, tracking, timestamp) then body."""
    return ["locate", "tracking", "timestamp"] + [n for n, _ in SPECS[msg_type][1]]


def _py(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").rstrip(" ")
    v = int(value)
    if name in PRICE4:
        return Decimal(v).scaleb(-4)
    if name in PRICE8:
        return Decimal(v).scaleb(-8)
    return v


def record_to_dict(rec: np.void) -> dict[str, Any]:
    """One record as Python values: alpha fields stripped, prices as ``Decimal``, timestamp in ns."""
    t = rec["type"].decode()
    out: dict[str, Any] = {
        "type": t, "locate": int(rec["locate"]), "tracking": int(rec["tracking"]),
        "timestamp": (int(rec["ts_hi"]) << 32) | int(rec["ts_lo"]),
    }
    for name, _ in SPECS[t][1]:
        out[name] = _py(name, rec[name])
    return out


def decode_message(data: bytes) -> dict[str, Any]:
    """Decode one message from bytes (debugging helper; raises ValueError on unknown type/bad size)."""
    if not data:
        raise ValueError("empty ITCH message: a message starts with its type letter")
    t = chr(data[0])
    if t not in SIZES:
        raise ValueError(f"unknown ITCH message type {t!r}: expected one of {''.join(TYPES)}")
    if len(data) != SIZES[t]:
        raise ValueError(f"ITCH {t} must be {SIZES[t]} bytes, got {len(data)}: check the block length")
    return record_to_dict(np.frombuffer(data, dtype=DTYPES[t])[0])
