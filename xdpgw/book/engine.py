"""Per-symbol order books (L3 → L2 → BBO) over decoded ITCH, one C call per burst.

:class:`Books` owns one C engine (``xdpgw/_native/book.c``) and its preallocated output buffers.
``apply(decoded)`` runs the burst's messages in message order and returns a :class:`BookUpdate`: the
BBO records (one per change of a book's best bid or offer) and the trades (E, printable C, P, Q) as
numpy record arrays (:data:`~xdpgw.book.records.BBO`, :data:`~xdpgw.book.records.TRADE`). Queries
(``bbo``, ``depth``, ``orders``) read the live books. No Python object exists per order or level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from xdpgw._native._book import ffi, lib
from xdpgw.book.records import BBO, ERRORS, LEVEL, ORDER, STALE, TOP, TRADE, flag_names
from xdpgw.errors import GatewayError
from xdpgw.protocol import itch
from xdpgw.protocol.decode import Decoded
from xdpgw.protocol.subscribe import _sym

_SIZES = np.ascontiguousarray(itch.SIZE_TABLE)


@dataclass(slots=True)
class BookUpdate:
    """What one burst changed: BBO and trade records (views valid until the next ``apply``; copy to keep)."""

    bbo: np.ndarray
    trades: np.ndarray

    def __len__(self) -> int:
        return len(self.bbo)


def price(raw: int) -> Decimal | None:
    """A Price(4) as a Decimal; 0 (an empty side) as None."""
    return Decimal(int(raw)).scaleb(-4) if raw else None


class Books:
    """Books for every symbol, or only ``symbols`` (messages of other stock locates are skipped)."""

    def __init__(self, symbols: Iterable[str] | None = None, burst: int = 1 << 14, orders_hint: int = 1 << 16) -> None:
        e = lib.xbk_new(ffi.from_buffer("uint8_t[]", _SIZES), orders_hint)
        if e == ffi.NULL:
            raise GatewayError("cannot allocate the order-book engine (out of memory)", "free memory and retry")
        self._e = ffi.gc(e, lib.xbk_free)
        self._out = ffi.new("struct xbk_out *")
        self._cap = 0
        self._grow(burst)
        self._stats = ffi.new("struct xbk_stats *")
        self.bad_frames = 0
        self._locates: dict[str, int] = {}
        self._top = np.zeros(1, TOP)
        self._top_c = ffi.cast("struct xbk_top *", ffi.from_buffer(self._top))
        self.symbols = sorted({_sym(s) for s in symbols}) if symbols else None
        if self.symbols:
            self._want = b"".join(self.symbols)
            lib.xbk_want(self._e, self._want, len(self.symbols))

    def _grow(self, n: int) -> None:
        self._bbo = np.zeros(n, BBO)
        self._trades = np.zeros(n, TRADE)
        self._out.bbo = ffi.cast("struct xbk_bbo *", ffi.from_buffer(self._bbo))
        self._out.trades = ffi.cast("struct xbk_trade *", ffi.from_buffer(self._trades))
        self._out.cap = self._cap = n

    # --- applying --------------------------------------------------------------------------------
    def apply(self, dec: Decoded) -> BookUpdate:
        """Apply every valid message of ``dec`` (in message order) to the books."""
        n = len(dec)
        if n > self._cap:
            self._grow(max(n, 2 * self._cap))
        self._out.nbbo = self._out.ntrades = 0
        if n:
            c = np.ascontiguousarray
            typ, err, seq = c(dec.type), c(dec.error), c(dec.seq, np.uint64)
            ptyp, perr, pseq = (ffi.from_buffer("uint8_t[]", typ), ffi.from_buffer("uint8_t[]", err),
                                ffi.from_buffer("uint64_t[]", seq))
            raw, grouped = dec._raw, dec._grouped
            if dec._pack is None and raw is not None and grouped is not None:  # the decoder's own layout
                grouped = c(grouped, np.int32)
                if lib.xbk_apply_grouped(self._e, ffi.from_buffer("uint8_t[]", raw),
                                         ffi.from_buffer("int32_t[]", grouped), len(grouped), ptyp, perr, pseq, n,
                                         self._out) < 0:
                    raise GatewayError("out of memory applying a burst to the books", "free memory and retry")
            else:
                raw, off = dec.packing()
                lib.xbk_apply(self._e, ffi.from_buffer("uint8_t[]", raw),
                              ffi.from_buffer("int64_t[]", c(off, np.int64)), ptyp, perr, pseq, n, self._out)
        return self._update()

    def apply_stream(self, buf: bytes | np.ndarray, first_seq: int = 1) -> tuple[int, int, BookUpdate]:
        """Apply length-prefixed ITCH messages (a daily file's framing: u16 big-endian length, message).

        Stops at a frame cut short or when the output buffers are full: returns ``(bytes consumed,
        messages framed, update)``; call again with the rest. Frames of unknown type or wrong length
        are skipped and counted (``stats()["bad_frames"]``).
        """
        out = self._out
        used = lib.xbk_apply_stream(self._e, ffi.from_buffer("uint8_t[]", buf), len(buf), first_seq, out)
        self.bad_frames += out.bad
        return int(used), int(out.messages), self._update()

    def _update(self) -> BookUpdate:
        return BookUpdate(self._bbo[: self._out.nbbo], self._trades[: self._out.ntrades])

    def gap(self) -> None:
        """Messages were lost (a gap given up): every book is stale until an unknown order reference
        pinpoints the book that lost them."""
        lib.xbk_gap(self._e)

    def reset(self) -> None:
        """Forget every book and order (a new session: locates and references start over)."""
        lib.xbk_reset(self._e)
        self._locates.clear()

    # --- queries ---------------------------------------------------------------------------------
    def locate(self, symbol: str) -> int:
        """The stock locate of ``symbol`` (learnt from its R message; remembered for the session)."""
        loc = self._locates.get(symbol)
        if loc is not None:
            return loc
        loc = lib.xbk_locate(self._e, _sym(symbol))
        if loc >= 0:
            self._locates[symbol] = loc
        else:
            raise KeyError(f"no book for {symbol!r}: its Stock Directory (R) message has not been seen"
                           + (" or it is not subscribed" if self.symbols else ""))
        return loc

    def depth(self, symbol: str, levels: int = 10) -> dict[str, np.ndarray]:
        """The best ``levels`` price levels per side: ``{"bids": LEVEL array, "asks": LEVEL array}``, best first."""
        loc = self.locate(symbol)
        out = {}
        for name, ask in (("bids", 0), ("asks", 1)):
            arr = np.zeros(levels, LEVEL)
            k = lib.xbk_depth(self._e, loc, ask, ffi.cast("struct xbk_level *", ffi.from_buffer(arr)), levels)
            out[name] = arr[:k]
        return out

    def orders(self, symbol: str) -> np.ndarray:
        """Every resting order of ``symbol`` in book order (bids best first, FIFO within a level, then asks)."""
        loc = self.locate(symbol)
        cap = int(self.top(loc)["orders"]) + 1
        arr = np.zeros(cap, ORDER)
        k = lib.xbk_orders(self._e, loc, ffi.cast("struct xbk_order *", ffi.from_buffer(arr)), cap)
        return arr[:k]

    def tops(self) -> np.ndarray:
        """The top of every book seen (TOP records, in first-seen order)."""
        arr = np.zeros(max(len(self), 1), TOP)
        k = lib.xbk_tops(self._e, ffi.cast("struct xbk_top *", ffi.from_buffer(arr)), len(arr))
        return arr[:k]

    def top(self, locate: int) -> np.void:
        """The top of the book of ``locate`` (a TOP record)."""
        lib.xbk_top(self._e, locate, self._top_c)
        return self._top[0].copy()

    def bbo(self, symbol: str) -> dict[str, Any]:
        """Best bid and offer of ``symbol`` (prices as Decimal, an empty side as None)."""
        return _top_dict(self.top(self.locate(symbol)))

    def __len__(self) -> int:
        return int(self.raw_stats().books)

    # --- reporting -------------------------------------------------------------------------------
    def raw_stats(self) -> Any:
        lib.xbk_stats(self._e, self._stats)
        return self._stats

    def stats(self) -> dict[str, Any]:
        """Counters: messages, bbo, trades, live orders, levels, books, stale books, gaps, errors by cause."""
        s = self.raw_stats()
        return {"messages": s.messages, "bbo": s.bbo, "trades": s.trades, "live_orders": s.live_orders,
                "levels": s.levels, "books": s.books, "stale_books": s.stale_books, "gaps": s.gaps,
                "stale_all": bool(s.suspect_all), "errors": self.errors(), "bad_frames": self.bad_frames,
                "last_system_event": s.last_event.decode().strip()}

    def errors(self) -> dict[str, int]:
        s = self.raw_stats()
        return {name: int(s.errors[i]) for i, name in enumerate(ERRORS) if s.errors[i]}

    def summary(self) -> dict[str, Any]:
        """The ``books`` object of ``--json``: per symbol ``bid_price, bid_size, ask_price, ask_size,
        orders`` (decimals; an empty side null), plus error counts by cause and the stale symbols."""
        tops = self.tops()
        stats = self.stats()
        symbols = {}
        for t in tops:
            name = t["symbol"].decode("ascii", "replace").strip() or f"locate:{int(t['locate'])}"
            symbols[name] = _top_dict(t, compact=True)
        stale = [n for n, d in symbols.items() if d.get("stale")]
        return {"symbols": symbols, "errors": stats["errors"], "stale": stale, "stale_all": stats["stale_all"],
                "count": len(symbols), "bbo": stats["bbo"], "trades": stats["trades"],
                "live_orders": stats["live_orders"], "gaps": stats["gaps"]}


def merge_books(parts: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """One ``books`` object for several queues (``--queue 0-3 --book``: each worker keeps its own books).

    Counters are summed; a symbol's top of book is never added to another's: a symbol seen on one queue
    keeps its name, one seen on several (different feeds) is listed once per queue as ``SYMBOL@qN``."""
    seen: dict[str, int] = {}
    for books in parts.values():
        for name in books.get("symbols", {}):
            seen[name] = seen.get(name, 0) + 1
    symbols: dict[str, Any] = {}
    stale: list[str] = []
    out: dict[str, Any] = {"errors": {}, "bbo": 0, "trades": 0, "live_orders": 0, "gaps": 0, "stale_all": False}
    for q, books in parts.items():
        rename = {n: (n if seen[n] == 1 else f"{n}@q{q}") for n in books.get("symbols", {})}
        symbols.update((rename[n], top) for n, top in books.get("symbols", {}).items())
        stale += [rename.get(n, n) for n in books.get("stale", [])]
        for cause, n in books.get("errors", {}).items():
            out["errors"][cause] = out["errors"].get(cause, 0) + n
        for key in ("bbo", "trades", "live_orders", "gaps"):
            out[key] += books.get(key, 0)
        out["stale_all"] = out["stale_all"] or bool(books.get("stale_all"))
    return {"symbols": symbols, **out, "stale": stale, "count": len(symbols)}


def _dec(raw: int) -> float | None:
    """A Price(4) as a JSON decimal number (the shortest float repr prints it exactly); 0 as None."""
    return int(raw) / 10_000 if raw else None


def _top_dict(t: np.void, compact: bool = False) -> dict[str, Any]:
    flags = int(t["flags"])
    bp, ap = int(t["bid_price"]), int(t["ask_price"])
    conv = _dec if compact else price
    d: dict[str, Any] = {
        "bid_price": conv(bp), "bid_size": int(t["bid_size"]) if bp else None,
        "ask_price": conv(ap), "ask_size": int(t["ask_size"]) if ap else None,
        "orders": int(t["orders"]),
    }
    if not compact:
        d.update(symbol=t["symbol"].decode("ascii", "replace").strip(), locate=int(t["locate"]),
                 bid_count=int(t["bid_count"]), ask_count=int(t["ask_count"]), levels=int(t["levels"]),
                 state=t["state"].decode("ascii", "replace").strip() or None)
    if flags & STALE:
        d["stale"] = True
    problems = [f for f in flag_names(flags) if f != "stale"]
    if problems:
        d["flags"] = problems
    return d
