"""Order-rate throttle: never more than N orders in ANY one-second window, per venue and in total.

Venues enforce their rate limits over every window, not per calendar second, so the throttle keeps
a ring of the last N send times (:class:`SlidingWindow`): a new order may go when the oldest of
those N is at least one window old. Then any N+1 consecutive sends span at least a window, so no
window (wherever it starts) holds more than N. The usual shortcuts fail this: a token bucket that
starts full lets N through at once and N more as it refills within the same second; a counter
reset every second lets N through at the end of one second and N more at the start of the next.

Policy ``queue`` (default) holds an order until both its venue's window and the total window have
room (the router risk-checks it again when it leaves); ``reject`` denies it at once. Message
throttles are one of the FIA's recommended pre-trade controls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from xdpgw.errors import GatewayError

SECOND_NS = 1_000_000_000
POLICIES = ("queue", "reject")


class SlidingWindow:
    """At most ``n`` events in any ``window_ns``: a ring of the last ``n`` event times."""

    __slots__ = ("n", "window_ns", "_ring", "_i")

    def __init__(self, n: int, window_ns: int = SECOND_NS) -> None:
        if n < 1:
            raise GatewayError(f"rate limit {n} per window", "use at least 1 order per second (or no limit)")
        self.n, self.window_ns = n, window_ns
        self._ring = [-window_ns - 1] * n  # "long ago": the first n may go at once
        self._i = 0  # the oldest of the last n

    def allows(self, now_ns: int) -> bool:
        return now_ns - self._ring[self._i] >= self.window_ns

    def record(self, now_ns: int) -> None:
        self._ring[self._i] = now_ns
        self._i = (self._i + 1) % self.n

    def free_at(self) -> int:
        """The earliest time the next event may happen."""
        return self._ring[self._i] + self.window_ns

    def available(self, now_ns: int) -> int:
        """How many events may happen at ``now_ns`` (the ring is in time order from the oldest)."""
        ring, i, n, w = self._ring, self._i, self.n, self.window_ns
        k = 0
        while k < n and now_ns - ring[(i + k) % n] >= w:
            k += 1
        return k

    def record_many(self, now_ns: int, k: int) -> None:
        for _ in range(min(k, self.n)):
            self.record(now_ns)


class Throttle:
    """Per-venue and total sliding windows plus the queue of held orders (one FIFO per venue)."""

    def __init__(self, total: int | None = None, per_venue: int | dict[str, int] | None = None,
                 policy: str = "queue", window_ns: int = SECOND_NS) -> None:
        if policy not in POLICIES:
            raise GatewayError(f"unknown throttle policy {policy!r}", f"use one of {', '.join(POLICIES)}")
        self.policy = policy
        self.window_ns = window_ns
        self.total = SlidingWindow(total, window_ns) if total else None
        self._per_venue = per_venue
        self.venues: dict[str, SlidingWindow | None] = {}
        self.queues: dict[str, deque[Any]] = {}
        self.active: bool  # a limit is set (kept up to date as ``total`` or ``_per_venue`` change)
        self.throttled = 0  # orders held or refused at least once
        self.rejected = 0

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in ("total", "_per_venue"):  # ``active``: a plain attribute, read once per order
            d = self.__dict__
            object.__setattr__(self, "active", d.get("total") is not None or bool(d.get("_per_venue")))

    def _window(self, venue: str) -> SlidingWindow | None:
        try:
            return self.venues[venue]
        except KeyError:
            pv = self._per_venue
            n = pv.get(venue, pv.get("*")) if isinstance(pv, dict) else pv
            w = self.venues[venue] = SlidingWindow(n, self.window_ns) if n else None
            return w

    def try_acquire(self, venue: str, now_ns: int) -> bool:
        """Take a slot in the venue's and the total window if both have one (nothing queued ahead)."""
        if self.queues.get(venue):
            return False  # keep the FIFO: orders already waiting go first
        return self._take(venue, now_ns)

    def _take(self, venue: str, now_ns: int) -> bool:
        w, t = self._window(venue), self.total
        if (w is not None and not w.allows(now_ns)) or (t is not None and not t.allows(now_ns)):
            return False
        if w is not None:
            w.record(now_ns)
        if t is not None:
            t.record(now_ns)
        return True

    def available(self, venue: str, now_ns: int) -> int:
        """How many orders to ``venue`` may go right now (a large number when unthrottled)."""
        w, t = self._window(venue), self.total
        k = 1 << 62
        if w is not None:
            k = min(k, w.available(now_ns))
        if t is not None:
            k = min(k, t.available(now_ns))
        return 0 if self.queues.get(venue) else k

    def take_many(self, venue: str, now_ns: int, k: int) -> None:
        for w in (self._window(venue), self.total):
            if w is not None:
                w.record_many(now_ns, k)

    def hold(self, venue: str, item: Any) -> bool:
        """An order that found no slot: queue it (True) or, with policy reject, refuse it (False)."""
        self.throttled += 1
        if self.policy == "reject":
            self.rejected += 1
            return False
        self.queues.setdefault(venue, deque()).append(item)
        return True

    def release(self, now_ns: int) -> Iterator[tuple[str, Any]]:
        """Queued orders whose slot has come, oldest first per venue (round robin across venues)."""
        progress = True
        while progress:
            progress = False
            for venue, q in self.queues.items():
                if q and self._take(venue, now_ns):
                    progress = True
                    yield venue, q.popleft()

    def next_release(self) -> int | None:
        """When the next queued order may leave (CLOCK_MONOTONIC ns), None when nothing waits."""
        times = []
        for venue, q in self.queues.items():
            if q:
                w = self._window(venue)
                ts = [x.free_at() for x in (w, self.total) if x is not None]
                times.append(max(ts) if ts else 0)
        return min(times) if times else None

    def drop_all(self) -> list[tuple[str, Any]]:
        """Empty every queue (the kill switch): what was waiting, never sent."""
        out = [(v, x) for v, q in self.queues.items() for x in q]
        for q in self.queues.values():
            q.clear()
        return out

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self.queues.values())
