"""The strategy hook: feed batches in, orders out through the router, on the consumer's thread.

``xdpgw attach|listen ... --strategy mypkg.strat:on_batch --venue ouch://HOST:PORT`` calls
``on_batch(decoded, ctx)`` for every decoded batch; ``ctx.router`` is a connected
:class:`~xdpgw.orders.router.Router` (its risk checks, routing, throttle and journal apply) and
``ctx.rx_ns`` the receive stamps (CLOCK_MONOTONIC ns: XDP metadata or SO_TIMESTAMPING) of the batch's
packets, the start of tick-to-trade. After each call the router polls its venues once (no waiting),
so acks and fills are taken in between batches. With ``--book`` the router's price collar takes the
live book's mid as its reference (:func:`book_reference`; configured prices when a book has none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xdpgw.orders.router import Router


class StrategyContext:
    """What a strategy function gets besides the decoded batch."""

    __slots__ = ("router", "rx_ns", "calls", "errors")

    def __init__(self, router: Router) -> None:
        self.router = router
        self.rx_ns: np.ndarray = np.zeros(0, np.int64)
        self.calls = 0
        self.errors = 0


class StrategyHandler:
    """A Gateway tap (notes each raw batch's receive stamps) and handler (runs the strategy)."""

    def __init__(self, fn: Callable[[Any, StrategyContext], None], router: Router) -> None:
        self.fn = fn
        self.ctx = StrategyContext(router)

    def attach_feed(self, feed: Any) -> None:
        """With books in the feed path (``--book``), the collar's reference is the live book's mid,
        unless the router was given a reference of its own."""
        books = getattr(feed, "books", None)
        risk = self.ctx.router.risk
        if books is not None and risk.reference is None:
            risk.reference = book_reference(books)

    def tap(self, batch, _rx) -> None:
        self.ctx.rx_ns = batch.ts_ns[:batch.count]

    def __call__(self, decoded) -> None:
        ctx = self.ctx
        ctx.calls += 1
        try:
            self.fn(decoded, ctx)
        finally:
            ctx.router.poll(0)


def book_reference(books: Any) -> Callable[[str], int | None]:
    """A :class:`~xdpgw.orders.risk.RiskEngine` reference from live books: the mid (in ticks: ITCH
    prices have four decimals, as ``PRICE_SCALE``) of a two-sided book that is not stale; None for an
    unknown, one-sided or stale book, so the configured price applies."""
    from xdpgw.book.records import STALE

    def mid(symbol: str) -> int | None:
        try:
            top = books.top(books.locate(symbol))
        except KeyError:
            return None
        bid, ask = int(top["bid_price"]), int(top["ask_price"])
        if not bid or not ask or int(top["flags"]) & STALE:
            return None
        return (bid + ask) // 2

    return mid


def make_strategy(spec: str, venues: tuple[str, ...], config: str | None, journal: str | None = None,
                  timeout: float = 5.0) -> StrategyHandler:
    """The handler for ``--strategy``: loads the function, builds and connects the router."""
    from xdpgw.cli.orders import build_router
    from xdpgw.pipeline.assembly import load_handler

    fn = load_handler(spec, "strategy")
    router = build_router(venues, config, journal=journal)
    try:
        router.connect(timeout)
    except BaseException:
        router.close()
        raise
    return StrategyHandler(fn, router)
