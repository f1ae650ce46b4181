"""Books in the feed path: a :class:`BookFeed` wraps a ``FeedHandler`` for the Gateway.

It has the feed handler's interface (``on_batch``, ``poll``, ``stats``, ``fileno``, ``close``), runs
every delivered burst through :class:`~xdpgw.book.engine.Books` and hands handlers a
:class:`BookBatch` (the decoded messages plus that burst's BBO and trade records). A gap the
sequencer gives up (its ``missing`` counter grows) marks the books stale; a new session starts them
over (locates and order references are per session).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from xdpgw.batch import Batch
from xdpgw.book.engine import Books
from xdpgw.protocol.decode import Decoded


@dataclass(slots=True)
class BookBatch:
    """What a handler gets with ``--book``: ``decoded`` as without it, ``bbo`` and ``trades`` records
    (:data:`~xdpgw.book.records.BBO`, :data:`~xdpgw.book.records.TRADE`; views valid until the next
    burst, copy to keep) and ``books`` to query (``books.depth("AAPL", 10)``)."""

    decoded: Decoded
    bbo: np.ndarray
    trades: np.ndarray
    books: Books


class BookFeed:
    """A feed handler (``FeedHandler``) with books on top."""

    def __init__(self, feed: Any, books: Books | None = None, clock=time.monotonic) -> None:
        self.feed = feed
        self.books = books if books is not None else Books()
        self.clock = clock
        self._missing = 0
        self._session: bytes | None = None
        self._rate_mark = (clock(), 0)
        self.bbo_per_s = 0.0

    def on_batch(self, batch: Batch, line: int = 0) -> BookBatch | None:
        return self._book(self.feed.on_batch(batch, line))

    def poll(self) -> BookBatch | None:
        return self._book(self.feed.poll())

    def _book(self, dec: Decoded | None) -> BookBatch | None:
        seq = self.feed.sequencer
        missing = seq.counters["missing"]
        if missing != self._missing:  # given up: what was lost may have changed any book
            self._missing = missing
            self.books.gap()
        if seq.session != self._session:
            if self._session is not None:
                self.books.reset()
            self._session = seq.session
        if dec is None:
            return None
        upd = self.books.apply(dec)
        return BookBatch(dec, upd.bbo, upd.trades, self.books)

    def stats(self) -> dict[str, Any]:
        out = self.feed.stats()
        books = self.books.summary()
        now, (then, before) = self.clock(), self._rate_mark
        if now - then >= 0.5:
            self.bbo_per_s = (books["bbo"] - before) / (now - then)
            self._rate_mark = (now, books["bbo"])
        books["bbo_per_s"] = round(self.bbo_per_s, 1)
        out["books"] = books
        return out

    def fileno(self) -> int | None:
        return self.feed.fileno()

    def close(self) -> None:
        self.feed.close()

    def __enter__(self) -> BookFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:  # sequencer, subscription, detail(), ... of the feed handler
        if name == "feed":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.feed, name)


def status_part(books: dict[str, Any]) -> str:
    """The status line's books part: how many, the BBO rate, errors and stale books."""
    rate = books.get("bbo_per_s", 0.0)
    text = f"books {books['count']} bbo {rate / 1e3:.1f}k/s" if rate >= 1e3 else f"books {books['count']} bbo {rate:.0f}/s"
    errs = sum(books["errors"].values())
    if errs:
        text += f" book errors {errs}"
    if books.get("stale_all"):
        text += " STALE (all, gap)"
    elif books.get("stale"):
        text += f" STALE {len(books['stale'])}"
    return text
