"""What the FIX tests share: a venue + connector pair on loopback, a link the test can break, waits,
and leak checks (no listening socket, no engine thread left)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.orders.helpers import wait_for  # noqa: F401 (the FIX tests take their waits from here)
from tests.orders.ouch.conftest import collect as wait_events  # noqa: F401 (the FIX tests' name for it)
from xdpgw.orders.fix.acceptor import FixVenue, free_port
from xdpgw.orders.fix.connector import FixConnector
from xdpgw.orders.model import price_to_ticks
from xdpgw.orders.venue import connect_url

REFS = {"AAPL": price_to_ticks("190"), "MSFT": price_to_ticks("410"), "CVLT": price_to_ticks("63.02")}


def threads() -> int:
    """Every thread of this process, the engines' native ones included."""
    return len(os.listdir("/proc/self/task"))


def listening(port: int) -> bool:
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return any(int(r[1].split(":")[1], 16) == port and r[3] == "0A" for r in rows)


@contextlib.contextmanager
def fix_pair(tmp: Path, *, link: bool = False, **venue_kw) -> Iterator[tuple[FixVenue, FixConnector, Link | None]]:
    """A started venue and a logged-on connector (stores and logs under ``tmp``), with a breakable
    :class:`Link` between them when asked; all stopped on the way out, whatever happened."""
    before = threads()
    venue = FixVenue(references=dict(REFS), state_dir=tmp / "venue", **venue_kw).start()
    conn = relay = None
    try:
        relay = Link(venue.port) if link else None
        url = venue.url(tmp / "us")
        conn = connect_url(url.replace(f":{venue.port}?", f":{relay.port}?") if relay else url, name="fixv")
        conn.connect(timeout=10)
        yield venue, conn, relay
    finally:
        if conn is not None:
            conn.close()
        if relay is not None:
            relay.close()
        venue.close()
    assert not listening(venue.port), "the venue's listening socket outlived it"
    assert threads() <= before, "an engine thread outlived its session"


class Link:
    """A TCP relay between the connector and the venue that a test can black-hole (bytes dropped both
    ways, as on a dead link) and cut (both sockets closed); it keeps listening for the reconnect."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.black_hole = False
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self.accepted += 1
            self._pairs.append((down, up))
            self._sockets += [down, up]
            for a, b in ((down, up), (up, down)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self.black_hole:
                    dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for pair in self._pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self._pairs.clear()

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        for t in self._threads:
            t.join(timeout=5)
        self._listener.close()
        for s in self._sockets:
            s.close()
