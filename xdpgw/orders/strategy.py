"""The strategy hook: feed batches in, orders out through the router, on the consumer's thread.

``xdpgw attach|listen ... --strategy mypkg.strat:on_batch --venue ouch://HOST:PORT`` calls
``on_batch(decoded, ctx)`` for every decoded batch; ``ctx.router`` is a connected
:class:`~xdpgw.orders.router.Router` (its risk checks, routing, throttle and journal apply) and
``ctx.rx_ns`` the receive stamps (CLOCK_MONOTONIC ns: XDP metadata or SO_TIMESTAMPING) of the batch's
packets, the start of tick-to-trade. The venues' answers (acks, fills, cancels, heartbeats) are taken
after the batch's orders are written, never before: one poll of the router after each call, bounded
(at most about ``POLL_EVENTS`` events per venue: a catch-up after a stall is spread over the next
calls instead of making the next tick wait for all of it), and more at the Gateway's idle moments
(:meth:`StrategyHandler.idle`: while polls find events, else every ``IDLE_POLL_NS``).
With ``--book`` the router's price collar takes the
live book's mid as its reference (:func:`book_reference`; configured prices when a book has none).
"""

from __future__ import annotations

import time
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


POLL_EVENTS = 8  # venue events a poll takes at most (~5-8 µs of Python each): its bound, under a tick gap
IDLE_POLL_NS = 200_000  # an idle feed polls at most this often once polls find nothing


class StrategyHandler:
    """A Gateway handler (runs the strategy on each batch). The receive stamps come with the batch
    (``pkt_ts_ns`` of a decoded feed batch, also inside a book batch; ``ts_ns`` of a raw one). :meth:`tap` (a Gateway tap
    noting each raw burst's stamps) is kept for callers that deliver something else; a tap costs the
    consumer its one-call receive + decode path."""

    def __init__(self, fn: Callable[[Any, StrategyContext], None], router: Router) -> None:
        self.fn = fn
        self.ctx = StrategyContext(router)
        self.polled_ns = 0  # when the router last polled its venues
        self.fresh = False  # that poll found events (more may wait: the next idle moment polls again)

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
        stamps = getattr(getattr(decoded, "decoded", decoded), "pkt_ts_ns", None)  # (--book: a BookBatch)
        if stamps is not None:
            ctx.rx_ns = stamps.view(np.int64)  # (the fast path keeps them as uint64)
        elif hasattr(decoded, "ts_ns"):  # a raw receiver batch (no feed protocol)
            ctx.rx_ns = decoded.ts_ns[:decoded.count]
        try:
            self.fn(decoded, ctx)
        finally:
            self.poll()

    def idle(self) -> None:
        """The Gateway found no packet: poll the venues if the last poll found events (more may
        wait), else every ``IDLE_POLL_NS`` (heartbeats, timers, late answers)."""
        if self.fresh or time.monotonic_ns() - self.polled_ns >= IDLE_POLL_NS:
            self.poll()

    def poll(self) -> int:
        """One bounded poll of the router (no waiting; see ``POLL_EVENTS``)."""
        self.polled_ns = time.monotonic_ns()
        n = self.ctx.router.poll(0, POLL_EVENTS)
        self.fresh = n > 0
        return n


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
