"""A FIX venue for tests and the demo: a QuickFIX SocketAcceptor acting as an executor.

It acknowledges every valid order, fills limit orders that cross the symbol's reference price (at the
reference; market orders always), rests the others, honours cancels and replaces, rejects unknown
symbols, duplicate ids and impossible requests, lets IOC remainders die, and expires resting orders
on :meth:`FixVenue.end_of_day`. A resent (PossDupFlag=Y) request it has already applied is ignored,
so a request is applied once however often the session layer delivers it.

    with FixVenue(references={"AAPL": price_to_ticks("190")}, state_dir=tmp) as venue:
        url = venue.url()    # fix://127.0.0.1:PORT?sender=XDPGW&target=VENUE&dir=...

``python -m xdpgw.orders.fix.acceptor --port P --ref AAPL=190`` runs one until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from xdpgw.orders.fix import engine, messages, wire

qf = engine.quickfix()


@dataclass(slots=True)
class _Book:
    cl_ord_id: str  # current id (changes with each replace)
    order_id: str
    symbol: str
    side: str  # FIX 54
    qty: int  # total, including what is filled
    price: int  # ticks; 0 = market
    tif: str
    cum: int = 0
    notional: int = 0  # sum of fill qty × ticks, for AvgPx
    dead: bool = False  # cancelled, expired or rejected: nothing left to fill

    @property
    def leaves(self) -> int:
        return 0 if self.dead else self.qty - self.cum


class _Application(qf.Application):
    def __init__(self, venue: FixVenue) -> None:
        super().__init__()
        self.venue = venue

    def onCreate(self, session_id):  # noqa: N802 (QuickFIX's names)
        pass

    def onLogon(self, session_id):  # noqa: N802
        self.venue.counts["logons"] += 1

    def onLogout(self, session_id):  # noqa: N802
        pass

    def toAdmin(self, message, session_id):  # noqa: N802
        pass

    def fromAdmin(self, message, session_id):  # noqa: N802
        pass

    def toApp(self, message, session_id):  # noqa: N802
        pass

    def fromApp(self, message, session_id):  # noqa: N802
        f = wire.fields(message.toString())
        if f.get(35) not in ("D", "F", "G"):
            raise qf.UnsupportedMessageType()  # the engine answers with a BusinessMessageReject
        try:
            self.venue._on_request(f)
        except Exception as exc:  # escaping, it would make the SWIG layer exit the process
            self.venue.errors.append(repr(exc))


class FixVenue:
    """The executor venue (see the module docstring). ``references`` maps symbols to ticks; an
    order for a symbol without one is rejected. ``max_fill`` caps the shares filled per order on
    entry (so crossing orders larger than it rest partially filled)."""

    def __init__(self, *, references: dict[str, int], port: int = 0, sender: str = "VENUE",
                 target: str = "XDPGW", version: str = "FIX.4.4", max_fill: int | None = None,
                 heartbeat: int = 30, state_dir: str | Path | None = None) -> None:
        self.references = dict(references)
        self.port = port or free_port()
        self.sender, self.target, self.version = sender, target, version
        self.max_fill = max_fill
        self.heartbeat = heartbeat
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="xdpgw-fixvenue-")
        self.state_dir = Path(state_dir) if state_dir else Path(self._tmp.name)
        self.session_id = qf.SessionID(version, sender, target)
        self.books: dict[str, _Book] = {}  # open and closed orders by current ClOrdID
        self.seen: set[str] = set()  # every request ClOrdID applied (orders, cancels, replaces)
        self.counts = dict.fromkeys(("orders", "cancels", "replaces", "fills", "rejects", "cancel_rejects",
                                     "expired", "duplicates_ignored", "logons"), 0)
        self.errors: list[str] = []  # exceptions in request handling (a test asserts none)
        self._lock = threading.RLock()  # the engine's thread and the test's thread both change books
        self._ids = itertools.count(1)
        self._acceptor = None

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> FixVenue:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        default = engine.common_settings(self.state_dir, self.version, self.heartbeat)
        default.update(ConnectionType="acceptor", SocketAcceptAddress="127.0.0.1", SocketAcceptPort=self.port,
                       SocketReuseAddress="Y")
        path = engine.write_settings(self.state_dir / "venue.cfg", default, {
            "BeginString": self.version, "SenderCompID": self.sender, "TargetCompID": self.target})
        self._settings = qf.SessionSettings(str(path))  # the engine keeps references to these four
        self._app = _Application(self)
        self._stores = qf.FileStoreFactory(self._settings)
        self._logs = qf.FileLogFactory(self._settings)
        # the threaded acceptor: QuickFIX 1.16's SocketAcceptor.stop() races its own thread for the
        # listening socket (a use-after-free we hit: SocketServer::close after the thread deleted it)
        self._acceptor = qf.ThreadedSocketAcceptor(self._app, self._stores, self._settings, self._logs)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Log out, close the listening socket, join the engine's thread (idempotent)."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.stop()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> FixVenue:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, state_dir: str | Path | None = None) -> str:
        """The ``fix://`` URL our connector uses to reach this venue (``state_dir``: its own dir)."""
        tail = f"&dir={state_dir}" if state_dir else ""
        return f"fix://127.0.0.1:{self.port}?sender={self.target}&target={self.sender}&version={self.version}{tail}"

    def message_log(self) -> Path | None:
        return engine.message_log(self.state_dir)

    # --- what a test can make the venue do --------------------------------------------------------

    def set_reference(self, symbol: str, ticks: int) -> None:
        """Move a symbol's reference price; resting orders it now crosses are filled."""
        with self._lock:
            self.references[symbol] = ticks
            for book in list(self.books.values()):
                if book.symbol == symbol and book.leaves > 0:
                    self._execute(book)

    def end_of_day(self) -> None:
        """Every resting order expires (ExecType C)."""
        with self._lock:
            for book in self.books.values():
                if book.leaves > 0:
                    book.dead = True
                    self.counts["expired"] += 1
                    self._report(book, "C", "C")

    def open_orders(self) -> list[str]:
        with self._lock:
            return [k for k, b in self.books.items() if b.leaves > 0]

    # --- requests (the engine's thread) -------------------------------------------------------------

    def _on_request(self, f: dict[int, str]) -> None:
        with self._lock:
            request = f.get(11, "")
            if f.get(43) == "Y" and request in self.seen:
                self.counts["duplicates_ignored"] += 1
                return
            handler = {"D": self._new, "F": self._cancel, "G": self._replace}.get(f.get(35, ""))
            if handler is not None:
                handler(f)

    def _new(self, f: dict[int, str]) -> None:
        cl = f[11]
        book = _Book(cl, f"V{next(self._ids)}", f.get(55, ""), f.get(54, "1"), int(f.get(38, "0")),
                     messages.ticks_of(f.get(44))[0], f.get(59, "0"))
        self.counts["orders"] += 1
        if cl in self.seen:
            return self._reject(book, "6", f"duplicate ClOrdID {cl}")
        self.seen.add(cl)
        if book.symbol not in self.references:
            return self._reject(book, "1", f"unknown symbol {book.symbol}")
        if book.qty <= 0:
            return self._reject(book, "13", "quantity must be positive")
        self.books[cl] = book
        self._report(book, "0", "0")
        self._execute(book)

    def _cancel(self, f: dict[int, str]) -> None:
        self.seen.add(f[11])
        book = self.books.get(f.get(41, ""))
        if book is None or book.leaves == 0:
            return self._cancel_reject(f, book, "1")
        self.counts["cancels"] += 1
        book.dead = True
        self._report(book, "4", "4", cl_ord_id=f[11], orig=book.cl_ord_id)

    def _replace(self, f: dict[int, str]) -> None:
        self.seen.add(f[11])
        book = self.books.get(f.get(41, ""))
        qty = int(f.get(38, "0"))
        if book is None or book.leaves == 0 or qty <= book.cum:
            return self._cancel_reject(f, book, "2")
        self.counts["replaces"] += 1
        orig = book.cl_ord_id
        del self.books[orig]
        book.cl_ord_id, book.qty, book.price = f[11], qty, messages.ticks_of(f.get(44))[0]
        self.books[book.cl_ord_id] = book
        self._report(book, "5", "1" if book.cum else "0", orig=orig)
        self._execute(book)

    # --- outcomes -----------------------------------------------------------------------------------

    def _execute(self, book: _Book) -> None:
        ref = self.references.get(book.symbol, 0)
        crosses = book.price == 0 or (book.price >= ref if book.side == "1" else book.price <= ref)
        if crosses and book.leaves > 0:
            qty = min(book.leaves, self.max_fill or book.leaves)
            book.cum += qty
            book.notional += qty * ref
            self.counts["fills"] += 1
            self._report(book, "F", "2" if book.leaves == 0 else "1", last=(qty, ref))
        if book.tif == "3" and book.leaves > 0:  # IOC: the rest dies now
            book.dead = True
            self._report(book, "4", "4", text="IOC remainder")

    def _reject(self, book: _Book, reason: str, text: str) -> None:
        self.counts["rejects"] += 1
        book.dead = True
        self._report(book, "8", "8", text=text, extra=[(103, reason)])

    def _cancel_reject(self, f: dict[int, str], book: _Book | None, response_to: str) -> None:
        self.counts["cancel_rejects"] += 1
        status = "8" if book is None else ("2" if book.cum == book.qty else "4")
        too_late = book is not None
        self._send("9", [(37, book.order_id if book else "NONE"), (11, f[11]), (41, f.get(41, "")),
                         (39, status), (434, response_to), (102, "0" if too_late else "1"),
                         (58, "too late to cancel" if too_late else "unknown order")])

    def _report(self, book: _Book, exec_type: str, status: str, *, cl_ord_id: str | None = None,
                orig: str | None = None, last: tuple[int, int] | None = None, text: str = "",
                extra: list[tuple[int, str]] = ()) -> None:
        """One ExecutionReport (FIX 4.2 says fills as ExecType 1/2 and needs ExecTransType)."""
        if self.version == "FIX.4.2" and exec_type == "F":
            exec_type = status
        avg = book.notional // book.cum if book.cum else 0
        body = [(37, book.order_id), (11, cl_ord_id or book.cl_ord_id)]
        body += [(41, orig)] if orig else []
        body += [(17, f"{book.order_id}-{time.time_ns()}"), (150, exec_type), (39, status), (55, book.symbol),
                 (54, book.side), (38, str(book.qty)), (40, "2" if book.price else "1")]
        body += [(44, messages.price_text(book.price))] if book.price else []
        body += [(59, book.tif), (151, str(book.leaves)), (14, str(book.cum)), (6, messages.price_text(avg))]
        if last:
            body += [(32, str(last[0])), (31, messages.price_text(last[1]))]
            body += [(851, "2")] if self.version != "FIX.4.2" else []  # LastLiquidityInd is 4.3+
        if self.version == "FIX.4.2":
            body.insert(2, (20, "0"))
        body += [*extra, *([(58, text)] if text else [])]
        self._send("8", body)

    def _send(self, msg_type: str, body: list[tuple[int, str]]) -> None:
        message = qf.Message()
        message.getHeader().setField(35, msg_type)
        for tag, value in body:
            message.setField(tag, value)
        qf.Session.sendToTarget(message, self.session_id)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    import argparse

    from xdpgw.orders.model import price_to_ticks

    parser = argparse.ArgumentParser(description="a FIX 4.4 executor venue on loopback (QuickFIX acceptor)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ref", action="append", default=[], help="SYMBOL=PRICE reference (repeatable)")
    parser.add_argument("--sender", default="VENUE")
    parser.add_argument("--target", default="XDPGW")
    parser.add_argument("--dir", help="store and logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    refs = {s: price_to_ticks(p) for s, _, p in (r.partition("=") for r in args.ref)}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FixVenue(references=refs, port=args.port, sender=args.sender, target=args.target,
                  state_dir=args.dir) as venue:
        print(venue.url(), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print(json.dumps(venue.counts), flush=True)


if __name__ == "__main__":
    main()
