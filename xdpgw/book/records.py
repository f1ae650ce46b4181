"""numpy dtypes of the book engine's records, laid out from ``xdpgw/_native/book.h`` through cffi.

The structs are declared once (in the header); here each becomes a numpy dtype with the C offsets, so
an output buffer the C fills is a record array without copying.
"""

from __future__ import annotations

import numpy as np

from xdpgw._native._book import ffi, lib

_FIELDS = {
    "struct xbk_bbo": (("seq", "u8"), ("ts", "u8"), ("bid_size", "u8"), ("ask_size", "u8"), ("bid_price", "u4"),
                       ("ask_price", "u4"), ("bid_count", "u4"), ("ask_count", "u4"), ("locate", "u2"),
                       ("flags", "u1"), ("symbol", "S8")),
    "struct xbk_trade": (("seq", "u8"), ("ts", "u8"), ("shares", "u8"), ("order_ref", "u8"), ("match", "u8"),
                         ("price", "u4"), ("locate", "u2"), ("kind", "S1"), ("side", "S1"), ("symbol", "S8")),
    "struct xbk_level": (("shares", "u8"), ("price", "u4"), ("count", "u4")),
    "struct xbk_order": (("ref", "u8"), ("price", "u4"), ("shares", "u4"), ("side", "S1")),
    "struct xbk_top": (("bid_size", "u8"), ("ask_size", "u8"), ("bid_price", "u4"), ("ask_price", "u4"),
                       ("bid_count", "u4"), ("ask_count", "u4"), ("orders", "u4"), ("levels", "u4"),
                       ("locate", "u2"), ("flags", "u1"), ("state", "S1"), ("symbol", "S8")),
}


def _dtype(struct: str) -> np.dtype:
    names, formats = zip(*_FIELDS[struct], strict=True)
    return np.dtype({"names": list(names), "formats": list(formats),
                     "offsets": [ffi.offsetof(struct, n) for n in names], "itemsize": ffi.sizeof(struct)})


#: One record per change of a book's best bid or offer (prices Price(4), 0 for an empty side).
BBO = _dtype("struct xbk_bbo")
#: One record per trade: E (resting price), printable C (its price), P, Q.
TRADE = _dtype("struct xbk_trade")
#: One price level of a depth query.
LEVEL = _dtype("struct xbk_level")
#: One resting order of an orders query.
ORDER = _dtype("struct xbk_order")
#: The top of one book (summaries).
TOP = _dtype("struct xbk_top")

#: Error causes, in the order of ``struct xbk_stats.errors`` (enum xbk_error).
ERRORS = ("unknown_order", "oversized_execution", "crossed_book", "duplicate_order", "rejected_order",
          "oversized_cancel")
assert len(ERRORS) == lib.XBK_NERRORS

#: Book flag bits (enum xbk_flag), by name.
FLAGS = {"stale": lib.XBK_FLAG_STALE, "unknown_order": lib.XBK_FLAG_UNKNOWN_ORDER,
         "oversized_execution": lib.XBK_FLAG_OVERSIZED_EXECUTION, "crossed": lib.XBK_FLAG_CROSSED,
         "duplicate_order": lib.XBK_FLAG_DUPLICATE_ORDER, "rejected_order": lib.XBK_FLAG_REJECTED_ORDER,
         "oversized_cancel": lib.XBK_FLAG_OVERSIZED_CANCEL}
STALE = lib.XBK_FLAG_STALE


def flag_names(flags: int) -> list[str]:
    """The names of the bits set in ``flags``."""
    return [name for name, bit in FLAGS.items() if flags & bit]
