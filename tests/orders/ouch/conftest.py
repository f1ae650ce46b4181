"""Fixtures for the OUCH tests: a simulator on a free loopback port, always stopped."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from xdpgw.orders.ouch.connector import OuchConnector
from xdpgw.orders.ouch.simulator import Exchange, VenueServer
from xdpgw.orders.venue import SessionEvent


@pytest.fixture
def venue() -> Iterator[VenueServer]:
    server = VenueServer("127.0.0.1", 0, Exchange(cross_at={"CROSS": 1_000_000}), heartbeat_interval=0.2,
                         timeout=5.0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connector(server_port: int, user: str = "U1", **kw) -> OuchConnector:
    kw.setdefault("heartbeat_interval", 0.2)
    kw.setdefault("timeout", 5.0)
    return OuchConnector(f"sim-{user}", "127.0.0.1", server_port, user=user, password="pw", **kw)


def of(events: list, kind: type, cid: str | None = None) -> list:
    """The events of one kind (for one order id when given)."""
    return [e for e in events if isinstance(e, kind) and (cid is None or getattr(e, "cl_ord_id", None) == cid)]


def kinds(events: list) -> list[str]:
    """The session events' kinds, without "replayed" (it follows a login once the venue heartbeats,
    so whether it is in a list depends on timing; tests of it look for it by name)."""
    return [e.kind for e in of(events, SessionEvent) if e.kind != "replayed"]


def ended(events: list) -> bool:
    return "ended" in kinds(events)


def collect(conn, until: Callable[[list], bool], timeout: float = 30.0) -> list:
    """Poll ``conn`` until ``until(events so far)`` holds; fail after ``timeout`` s (a bound for a hung
    run, generous under load: not a speed check)."""
    events: list = []
    deadline = time.monotonic() + timeout
    while not until(events):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s; events: {events}")
        events += conn.poll(0.05)
    return events


def wait(cond: Callable[[], bool], timeout: float = 5.0, step: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        if step is not None:
            step()
        else:
            time.sleep(0.01)


@contextlib.contextmanager
def raw_venue(serve: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A hand-made peer on a free loopback port (yields the port): ``serve(conn, stop)`` runs for
    each connection in turn on one thread; thread, connections and listener are gone afterwards."""
    stop = threading.Event()
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(0.05)
    conns: list[socket.socket] = []

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = lst.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            conns.append(conn)
            with contextlib.suppress(OSError):
                serve(conn, stop)

    thread = threading.Thread(target=run, name="raw-venue")
    thread.start()
    try:
        yield lst.getsockname()[1]
    finally:
        stop.set()
        thread.join(15)
        for conn in conns:
            conn.close()
        lst.close()
