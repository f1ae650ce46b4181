"""Append-only journal of what the router sent and what came back, so a restart knows every order.

One record per line, tab-separated, first field the kind:

    O  ts id symbol side qty price tif venue parent           an order about to be sent
    D  ts id symbol side qty price tif venue parent reason    an order denied (never sent)
    X  ts id qty                                              a cancel request about to be sent
    R  ts orig id symbol side qty price tif venue parent      a replace request about to be sent
    E  EventClass field...                                    a venue event (xdpgw.orders.venue)
    K  scope key value                                        a connector's session value (SessionStore)
    S  ts on|off reason                                       the kill switch

**Durability policy.** Every record is handed to the kernel with one ``write(2)`` as soon as it is
made (nothing is buffered in the process), so a ``kill -9`` loses nothing already recorded. Before
any request leaves for a venue (order, cancel, replace) the journal is ``fdatasync``-ed: an id that
may be on the wire is on disk, so even after a power loss an id is never sent twice. Venue events are
not synced one by one (they are made durable by the next sync before a send, at close, or every
``sync_interval_s``): an event lost to a power cut is asked for again, because the connector's
sequence number is journaled *after* the events it covers (:class:`JournalStore`) and the venue
replays from there at re-login. A line cut short by a crash (no newline) is dropped and counted.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from xdpgw.errors import GatewayError
from xdpgw.orders import venue as _venue
from xdpgw.orders.model import Order, Side, Tif

_EVENTS = {cls.__name__: cls for cls in (_venue.Accepted, _venue.Filled, _venue.Cancelled, _venue.Replaced,
                                         _venue.Rejected, _venue.CancelRejected, _venue.Expired,
                                         _venue.TradeBroken, _venue.SessionEvent)}
_FIELDS = {name: [(f.name, f.type in ("int", int)) for f in dataclasses.fields(cls)]
           for name, cls in _EVENTS.items()}
_CLEAN = str.maketrans({"\t": " ", "\n": " ", "\r": " ", "\\": "/"})


def _s(x: object) -> str:
    return str(x).translate(_CLEAN)


def _order_fields(o: Order, venue: str | None = None) -> list[str]:
    return [o.cl_ord_id, o.symbol, o.side.value, str(o.qty), str(o.price), o.tif.value, venue or o.venue or "",
            o.parent_id or ""]


def _order_of(f: list[str]) -> Order:
    return Order(f[0], f[1], Side(f[2]), int(f[3]), int(f[4]), Tif(f[5]), f[6] or None, f[7] or None)


@dataclass(slots=True, frozen=True)
class Record:
    kind: str  # O D X R E K S
    ts_ns: int = 0
    order: Order | None = None  # O, D, R (the new order)
    cl_ord_id: str = ""  # X, R (the original)
    qty: int = 0  # X
    reason: str = ""  # D, S
    event: _venue.Event | None = None  # E
    scope: str = ""  # K
    key: str = ""
    value: str = ""
    on: bool = False  # S


class Journal:
    """The journal file (created if missing). ``records()`` reads back what an earlier run wrote."""

    def __init__(self, path: str, sync_interval_s: float = 0.1, fsync: bool = True) -> None:
        self.path = path
        self.sync_interval_s = sync_interval_s
        self.fsync = fsync
        self.torn = 0  # lines cut short by a crash, dropped
        self.bad = 0  # lines that did not parse, skipped
        self.syncs = 0
        self._dirty = False
        self._last_sync = time.monotonic()
        self._pending_kv: list[str] | None = None  # puts held while a connector polls
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise GatewayError(f"cannot open journal {path} ({e.strerror})",
                               "pass a --journal path in a writable directory") from e
        self._repair_tail()

    # --- writing ----------------------------------------------------------------------------------

    def _write(self, lines: list[str]) -> None:
        if lines:
            os.write(self._fd, ("\n".join(lines) + "\n").encode())
            self._dirty = True

    def orders(self, orders: list[tuple[str, Order]], ts_ns: int) -> None:
        """Record (venue, order) pairs about to be sent (one write; :meth:`sync` before they leave)."""
        t = str(ts_ns)
        self._write(["\t".join(["O", t, *_order_fields(o, v)]) for v, o in orders])

    def denied(self, order: Order, reason: str, ts_ns: int, venue: str | None = None) -> None:
        self._write(["\t".join(["D", str(ts_ns), *_order_fields(order, venue), _s(reason)])])

    def cancel(self, cl_ord_id: str, qty: int, ts_ns: int) -> None:
        self._write([f"X\t{ts_ns}\t{cl_ord_id}\t{qty}"])

    def replace(self, orig_id: str, new: Order, ts_ns: int, venue: str | None = None) -> None:
        self._write(["\t".join(["R", str(ts_ns), orig_id, *_order_fields(new, venue)])])

    def events(self, events: list[_venue.Event]) -> None:
        lines = []
        for ev in events:
            name = type(ev).__name__
            lines.append("\t".join(["E", name, *(_s(getattr(ev, f)) for f, _ in _FIELDS[name])]))
        self._write(lines)

    def kill_switch(self, on: bool, reason: str, ts_ns: int) -> None:
        self._write([f"S\t{ts_ns}\t{'on' if on else 'off'}\t{_s(reason)}"])

    def put(self, scope: str, key: str, value: str) -> None:
        line = f"K\t{_s(scope)}\t{_s(key)}\t{_s(value)}"
        if self._pending_kv is not None:
            self._pending_kv.append(line)
        else:
            self._write([line])

    def hold_puts(self) -> None:
        """From now until :meth:`flush_puts`, session values wait (they must follow the events)."""
        if self._pending_kv is None:
            self._pending_kv = []

    def flush_puts(self) -> None:
        lines, self._pending_kv = self._pending_kv or [], None
        self._write(lines)

    def sync(self) -> None:
        """Make everything written so far durable (fdatasync) if anything is new."""
        if self._dirty:
            if self.fsync:
                os.fdatasync(self._fd)
            self._dirty = False
            self.syncs += 1
        self._last_sync = time.monotonic()

    def maybe_sync(self) -> None:
        if self._dirty and time.monotonic() - self._last_sync >= self.sync_interval_s:
            self.sync()

    def close(self) -> None:
        if self._fd >= 0:
            self.flush_puts()
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ----------------------------------------------------------------------------------

    def _repair_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if not size:
            return
        tail = os.pread(self._fd, min(size, 1 << 16), max(0, size - (1 << 16)))
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 1 << 16 else None)
        if keep is None:
            raise GatewayError(f"journal {self.path} ends in a line over 64 KiB",
                               "the file is not an xdpgw journal: pass another --journal path")
        os.ftruncate(self._fd, keep)
        self.torn += 1

    def records(self) -> Iterator[Record]:
        """Every record in the file, in the order written (unparseable lines counted in ``bad``)."""
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = _parse(line.rstrip("\n").split("\t"))
                except (ValueError, KeyError, IndexError):
                    rec = None
                if rec is None:
                    self.bad += 1
                else:
                    yield rec

    def session_values(self, scope: str) -> dict[str, str]:
        return {r.key: r.value for r in self.records() if r.kind == "K" and r.scope == scope}


def _parse(f: list[str]) -> Record | None:
    kind = f[0]
    if kind == "O":
        return Record("O", int(f[1]), order=_order_of(f[2:10]))
    if kind == "D":
        return Record("D", int(f[1]), order=_order_of(f[2:10]), reason=f[10])
    if kind == "X":
        return Record("X", int(f[1]), cl_ord_id=f[2], qty=int(f[3]))
    if kind == "R":
        return Record("R", int(f[1]), cl_ord_id=f[2], order=_order_of(f[3:11]))
    if kind == "E":
        cls, fields = _EVENTS[f[1]], _FIELDS[f[1]]
        if len(f) != 2 + len(fields):
            return None
        args = {name: int(v) if is_int else v for (name, is_int), v in zip(fields, f[2:], strict=True)}
        return Record("E", event=cls(**args))
    if kind == "K":
        return Record("K", scope=f[1], key=f[2], value=f[3])
    if kind == "S":
        return Record("S", int(f[1]), on=f[2] == "on", reason=f[3])
    return None


class JournalStore:
    """A connector's persistent session values (next UserRefNum, next expected sequence number, ...)
    kept in the journal under the connector's name: the :class:`xdpgw.orders.venue.SessionStore`
    a router hands its connectors. A value put while the connector polls is journaled right after the
    events that poll returns, so a restart never resumes past an event it did not journal."""

    def __init__(self, journal: Journal, scope: str, values: dict[str, str] | None = None) -> None:
        self.journal, self.scope = journal, scope
        self.values = dict(values or {})

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def put(self, key: str, value: str) -> None:
        if self.values.get(key) != value:
            self.values[key] = value
            self.journal.put(self.scope, key, value)
