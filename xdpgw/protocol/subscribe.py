"""Subscriptions (sans-IO): keep only the messages of chosen symbols and/or stock locates, vectorised.

Messages with a ``stock`` field match by symbol or locate. Messages without one (E, X, D, U, C, ...)
match by locate; the locate of a subscribed symbol is learnt from Stock Directory (``R``) messages as
they stream by. Market-wide messages (locate 0: system events, MWCB) are kept unless asked otherwise.
Locate codes are assigned per session (per day): what was learnt is forgotten when the session of the
messages changes, so yesterday's code of a subscribed symbol never selects today's messages.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from xdpgw.protocol.decode import Decoded, one_session


def _sym(s: str | bytes) -> bytes:
    raw = s.encode("ascii") if isinstance(s, str) else bytes(s)
    if len(raw) > 8:
        raise ValueError(f"symbol {s!r} is longer than the 8-byte ITCH stock field: check the spelling")
    return raw.upper().ljust(8, b" ")


_NONE = Decoded.empty()  # what a filter that keeps nothing returns


class Subscription:
    """A filter over decoded messages; ``None`` for both symbols and locates means everything."""

    def __init__(self, symbols: Iterable[str | bytes] | None = None, locates: Iterable[int] | None = None,
                 market_wide: bool = True) -> None:
        self.all = symbols is None and locates is None
        self.symbols = np.array(sorted({_sym(s) for s in symbols or ()}), dtype="S8")
        self._few = [np.uint64(s) for s in self.symbols.view(np.uint64)] if len(self.symbols) <= 8 else None
        self.wanted = np.zeros(1 << 16, dtype=bool)  # by locate
        for loc in locates or ():
            if not 0 <= int(loc) < 1 << 16:
                raise ValueError(f"stock locate {loc} is not a u16: use 0..65535")
            self.wanted[int(loc)] = True
        self.wanted[0] = market_wide
        self.base = self.wanted.copy()  # what was asked for, before anything was learnt
        self.names = np.full(1 << 16, b"", dtype="S8")  # locate -> symbol, learnt from R
        self.session: bytes | None = None  # the session whose locates were learnt

    def reset(self) -> None:
        """Forget the learnt locates (a new session assigns new ones)."""
        self.names[:] = b""
        np.copyto(self.wanted, self.base)

    def follow(self, session: bytes) -> None:
        """Messages of ``session`` come next: reset when it is not the one learnt so far."""
        if session != self.session:
            if self.session is not None:
                self.reset()
            self.session = session

    def learn(self, dec: Decoded) -> None:
        """Learn locate -> symbol from the Stock Directory messages in ``dec``."""
        r = dec.records_of("R")
        if r is None or not len(r):
            return
        loc = r["locate"].astype(np.intp)
        self.names[loc] = r["stock"]
        if len(self.symbols):
            self.wanted[loc[self._ours(r["stock"])]] = True

    def symbol(self, locate: int) -> str | None:
        """The symbol learnt for ``locate`` (None before its ``R`` message)."""
        name = self.names[locate]
        return name.decode().rstrip() if name else None

    def _ours(self, stock: np.ndarray) -> np.ndarray:
        """Per S8 stock field: is it one of our symbols? (A few: 8-byte integer compares, half what
        ``np.isin`` costs per call.)"""
        if self._few is None:
            return np.isin(stock, self.symbols)
        v = stock.view(np.uint64)
        hit = v == self._few[0]
        for s in self._few[1:]:
            hit |= v == s
        return hit

    def mask(self, dec: Decoded) -> np.ndarray:
        """Per message of ``dec``: is it wanted? (invalid messages never are)."""
        keep = np.zeros(len(dec), dtype=bool)
        for t, recs in dec.by_type.items():
            hit = self.wanted[recs["locate"].astype(np.intp)]
            if "stock" in recs.dtype.names and len(self.symbols) and not hit.all():
                hit |= self._ours(recs["stock"])
            keep[dec.index_by_type[t]] = hit
        return keep

    def filter(self, dec: Decoded) -> Decoded:
        """Learn from ``dec`` then keep the wanted, valid messages (order preserved), session by session."""
        f = dec.facts
        if f is not None:  # a simple burst: one session, no invalid message
            if f.session != self.session:
                self.follow(f.session)
            self.learn(dec)
            return dec if self.all else self._wanted(dec)
        if not len(dec):
            return dec
        if dec._clean is not None:  # the sequencer's word: one session, every message valid
            self.follow(dec._clean)
            self.learn(dec)
            return dec if self.all else self._wanted(dec)
        ps = dec.pkt_session
        if one_session(ps):
            self.follow(ps[0])
            return self._filter(dec)
        ms = ps[dec.pkt]  # messages of several sessions (a session change): one part per session, in order
        cut = np.flatnonzero(ms[1:] != ms[:-1]) + 1
        parts = []
        for a, b in zip(np.r_[0, cut].tolist(), np.r_[cut, len(ms)].tolist(), strict=True):
            self.follow(ms[a])
            parts.append(self._filter(dec.take(np.arange(a, b))))
        return Decoded.concat(parts)

    def _filter(self, dec: Decoded) -> Decoded:
        self.learn(dec)
        if self.all:
            return dec if dec.valid.all() else dec.take(dec.valid)
        return self._wanted(dec)

    def _wanted(self, dec: Decoded) -> Decoded:
        """The wanted, valid messages of ``dec``: ``dec`` itself when that is all of them, an empty one
        (shared: never edit it) when none is (no copy either way)."""
        keep = self.mask(dec)
        return dec if keep.all() else dec.take(keep) if keep.any() else _NONE
