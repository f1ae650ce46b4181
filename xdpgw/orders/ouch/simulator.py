"""An OUCH 5.0 / SoupBinTCP 4.0 venue: price-time matching per symbol (``xdpgw venue``).

Two layers, as everywhere in xdpgw: :class:`Exchange` is sans-IO (OUCH messages in, each account's
sequenced stream out: accepts, executions, cancels, replaces, rejects, mass cancel, end of day);
:class:`VenueServer` is one selectors loop (one thread) that speaks SoupBinTCP to clients: login with
replay of the account's sequenced messages from the requested number, heartbeats both ways, logout,
End of Session. One SoupBinTCP session per user name; a new login for a user replaces its old
connection.

Execution rules: an incoming order matches resting orders of the other side at their price (price 0
is a market order), oldest first at each price; then, if ``cross_at`` gives the symbol a reference
price and the order crosses it, the rest fills at that price with no counterparty (so a basket can
be filled by the simulator alone); an IOC remainder is cancelled, anything else rests.
Rejects: unknown symbol (when ``symbols`` is given), quantity 0 or above ``max_qty``, a UserRefNum
that is not above the account's last one (duplicate or decreasing), a replace of an order not open.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from xdpgw.errors import GatewayError
from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch import soupbin as sb

REJECT_SYMBOL = 0x17
REJECT_QTY = 0x13
REJECT_SHARES = 0x1E
REJECT_REF = 0x30
REJECT_REPLACE = 0x15


def ns_since_midnight() -> int:
    return time.time_ns() % 86_400_000_000_000


@dataclass(slots=True, eq=False)
class Resting:
    user: str
    ref: int
    side: str
    symbol: str
    price: int
    qty: int
    tif: str
    display: str
    capacity: str
    cl_ord_id: str
    order_ref: int  # the venue's OrderReferenceNumber
    arrival: int = 0

    @property
    def buy(self) -> bool:
        return self.side == "B"


@dataclass(slots=True)
class Book:
    """One symbol: bids best (highest) first, asks best (lowest) first, oldest first at a price."""

    bids: list[tuple[tuple[int, int], Resting]] = field(default_factory=list)
    asks: list[tuple[tuple[int, int], Resting]] = field(default_factory=list)

    def add(self, o: Resting) -> None:
        side = self.bids if o.buy else self.asks
        key = (-o.price if o.buy else o.price, o.arrival)
        bisect.insort(side, (key, o), key=lambda e: e[0])

    def remove(self, o: Resting) -> None:
        side = self.bids if o.buy else self.asks
        for i, (_, r) in enumerate(side):
            if r is o:
                del side[i]
                return

    def opposite(self, buy: bool) -> list[tuple[tuple[int, int], Resting]]:
        return self.asks if buy else self.bids


@dataclass(slots=True)
class Account:
    """One user's SoupBinTCP session: its sequenced stream (message n is ``stream[n - 1]``)."""

    user: str
    stream: list[bytes] = field(default_factory=list)
    last_ref: int = 0
    live: dict[int, Resting] = field(default_factory=dict)  # UserRefNum → open order


class Exchange:
    """The matching engine and every account's sequenced stream (sans-IO)."""

    def __init__(self, symbols: set[str] | None = None, cross_at: dict[str, int] | None = None,
                 max_qty: int = 1_000_000, clock: Callable[[], int] = ns_since_midnight) -> None:
        self.symbols = {s.upper() for s in symbols} if symbols else None
        self.cross_at = dict(cross_at or {})
        self.max_qty = max_qty
        self.clock = clock
        self.books: dict[str, Book] = {}
        self.accounts: dict[str, Account] = {}
        self._order_refs = itertools.count(1)
        self._matches = itertools.count(1)
        self._arrivals = itertools.count(1)
        self.ended = False
        self.counts = dict.fromkeys(("orders", "accepted", "executions", "cancels", "replaces", "rejects",
                                     "cancel_rejects", "mass_cancels", "modifies", "bad_messages"), 0)

    def account(self, user: str) -> Account:
        acc = self.accounts.get(user)
        if acc is None:
            acc = self.accounts[user] = Account(user)
            self._emit(acc, m.SystemEvent(self.clock(), "S"))
        return acc

    def _emit(self, acc: Account, msg) -> None:
        acc.stream.append(m.encode(msg))

    def end_of_day(self) -> None:
        """System Event E to every account; afterwards orders are refused."""
        for acc in self.accounts.values():
            self._emit(acc, m.SystemEvent(self.clock(), "E"))
        self.ended = True

    def handle(self, user: str, payload: bytes) -> None:
        """One client message (the payload of a SoupBinTCP Unsequenced Data packet)."""
        acc = self.account(user)
        try:
            msg = m.decode(payload, inbound=True)
        except m.OuchError:
            self.counts["bad_messages"] += 1  # OUCH messages we cannot read (SoupBinTCP ones: "malformed")
            return
        kind = type(msg)
        if kind is m.EnterOrder:
            self._enter(acc, msg)
        elif kind is m.CancelOrder:
            self._cancel(acc, msg.user_ref_num, msg.quantity)
        elif kind is m.ReplaceOrder:
            self._replace(acc, msg)
        elif kind is m.MassCancel:
            self._mass_cancel(acc, msg)
        elif kind is m.ModifyOrder:
            self._modify(acc, msg)

    # --- orders --------------------------------------------------------------------------------

    def _reject(self, acc: Account, ref: int, code: int, cl_ord_id: str) -> None:
        self.counts["rejects"] += 1
        self._emit(acc, m.OrderRejected(self.clock(), ref, code, cl_ord_id))

    def _check(self, acc: Account, ref: int, symbol: str, qty: int, cl_ord_id: str) -> bool:
        if ref <= acc.last_ref:
            self._reject(acc, ref, REJECT_REF, cl_ord_id)
            return False
        acc.last_ref = ref
        if self.ended:
            self._reject(acc, ref, 0x02, cl_ord_id)
            return False
        if self.symbols is not None and symbol not in self.symbols:
            self._reject(acc, ref, REJECT_SYMBOL, cl_ord_id)
            return False
        if qty <= 0:
            self._reject(acc, ref, REJECT_QTY, cl_ord_id)
            return False
        if qty > self.max_qty:
            self._reject(acc, ref, REJECT_SHARES, cl_ord_id)
            return False
        return True

    def _enter(self, acc: Account, msg: m.EnterOrder) -> None:
        self.counts["orders"] += 1
        if not self._check(acc, msg.user_ref_num, msg.symbol, msg.quantity, msg.cl_ord_id):
            return
        if msg.side not in "BSTE" or len(msg.side) != 1:
            self._reject(acc, msg.user_ref_num, 0x09, msg.cl_ord_id)
            return
        o = Resting(acc.user, msg.user_ref_num, msg.side, msg.symbol, msg.price, msg.quantity,
                    msg.time_in_force, msg.display, msg.capacity, msg.cl_ord_id, next(self._order_refs),
                    next(self._arrivals))
        self.counts["accepted"] += 1
        self._emit(acc, m.OrderAccepted(self.clock(), o.ref, o.side, o.qty, o.symbol, o.price, o.tif, o.display,
                                        o.order_ref, o.capacity, msg.inter_market_sweep, msg.cross_type, "L",
                                        o.cl_ord_id, msg.appendage))
        self._work(acc, o)

    def _work(self, acc: Account, o: Resting) -> None:
        """Match ``o`` against the book, then the reference price; rest or cancel what is left."""
        book = self.books.setdefault(o.symbol, Book())
        opp = book.opposite(o.buy)
        while o.qty and opp:
            r = opp[0][1]
            if o.price and (r.price > o.price if o.buy else r.price < o.price):
                break
            self._execute(acc, o, r.qty, r.price, "R", partner=r)
            if not r.qty:
                del opp[0]
                self.accounts[r.user].live.pop(r.ref, None)
        ref_price = self.cross_at.get(o.symbol)
        if o.qty and ref_price is not None and (not o.price or (o.price >= ref_price if o.buy else o.price <= ref_price)):
            self._execute(acc, o, o.qty, ref_price, "R")
        if not o.qty:
            return
        if o.tif == "3" or not o.price:  # IOC, or a market order with nothing left to take
            self.counts["cancels"] += 1
            self._emit(acc, m.OrderCanceled(self.clock(), o.ref, o.qty, "I"))
            o.qty = 0
            return
        acc.live[o.ref] = o
        book.add(o)

    def _execute(self, acc: Account, o: Resting, qty: int, price: int, flag: str, partner: Resting | None = None) -> None:
        q = min(qty, o.qty)
        match = next(self._matches)
        now = self.clock()
        self.counts["executions"] += 1
        if partner is not None:
            partner.qty -= q
            self._emit(self.accounts[partner.user], m.OrderExecuted(now, partner.ref, q, price, "A", match))
        o.qty -= q
        self._emit(acc, m.OrderExecuted(now, o.ref, q, price, flag, match))

    def _cancel(self, acc: Account, ref: int, qty: int, reason: str = "U") -> None:
        o = acc.live.get(ref)
        if o is None or qty >= o.qty:
            self.counts["cancel_rejects"] += 1
            self._emit(acc, m.CancelReject(self.clock(), ref))
            return
        self.counts["cancels"] += 1
        gone = o.qty - qty
        o.qty = qty
        if not qty:
            del acc.live[ref]
            self.books[o.symbol].remove(o)
        self._emit(acc, m.OrderCanceled(self.clock(), ref, gone, reason))

    def _replace(self, acc: Account, msg: m.ReplaceOrder) -> None:
        old = acc.live.get(msg.orig_user_ref_num)
        if old is None and msg.user_ref_num > acc.last_ref:
            acc.last_ref = msg.user_ref_num
            self._reject(acc, msg.user_ref_num, REJECT_REPLACE, msg.cl_ord_id)
            return
        if not self._check(acc, msg.user_ref_num, old.symbol if old else "", msg.quantity, msg.cl_ord_id):
            return
        self.counts["replaces"] += 1
        del acc.live[old.ref]
        self.books[old.symbol].remove(old)
        new = Resting(acc.user, msg.user_ref_num, old.side, old.symbol, msg.price, msg.quantity, msg.time_in_force,
                      msg.display, old.capacity, msg.cl_ord_id, next(self._order_refs), next(self._arrivals))
        self._emit(acc, m.OrderReplaced(self.clock(), old.ref, new.ref, new.side, new.qty, new.symbol, new.price,
                                        new.tif, new.display, new.order_ref, new.capacity, msg.inter_market_sweep,
                                        "N", "L", new.cl_ord_id, msg.appendage))
        self._work(acc, new)

    def _modify(self, acc: Account, msg: m.ModifyOrder) -> None:
        o = acc.live.get(msg.user_ref_num)
        sells = "STE"
        if o is None or msg.quantity > o.qty or (o.side != msg.side and not (o.side in sells and msg.side in sells)):
            self.counts["cancel_rejects"] += 1
            self._emit(acc, m.CancelReject(self.clock(), msg.user_ref_num))
            return
        self.counts["modifies"] += 1
        o.side, o.qty = msg.side, msg.quantity
        if not o.qty:
            del acc.live[o.ref]
            self.books[o.symbol].remove(o)
        self._emit(acc, m.OrderModified(self.clock(), o.ref, o.side, o.qty))

    def _mass_cancel(self, acc: Account, msg: m.MassCancel) -> None:
        if msg.user_ref_num > acc.last_ref:
            acc.last_ref = msg.user_ref_num
        self.counts["mass_cancels"] += 1
        for ref, o in list(acc.live.items()):
            if not msg.symbol or o.symbol == msg.symbol:
                self._cancel(acc, ref, 0)
        self._emit(acc, m.MassCancelResponse(self.clock(), msg.user_ref_num, msg.firm, msg.symbol))


# --- the server ----------------------------------------------------------------------------------


class _Conn:
    __slots__ = ("sock", "decoder", "user", "sent_upto", "out", "hb", "addr", "sever_next")

    def __init__(self, sock: socket.socket, addr, now: float, interval: float, timeout: float) -> None:
        self.sock = sock
        self.addr = addr
        self.decoder = sb.PacketDecoder()
        self.user = ""  # set at login
        self.sent_upto = 0  # messages of the account's stream already written
        self.out = bytearray()
        self.hb = sb.Heartbeats(interval, timeout, now)
        self.sever_next = False


class VenueServer:
    """The SoupBinTCP side of the simulator (one thread, selectors).

    ``users``: user → password (None: anyone may log in). ``session``: the SoupBinTCP session name.
    Use as a context manager (``start()`` runs the loop in a thread, ``stop()`` closes everything) or
    call ``serve(stop_event)`` in the foreground. ``call(fn)`` runs ``fn(self)`` on the loop's thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, exchange: Exchange | None = None,
                 users: dict[str, str] | None = None, session: str = "XDPGW", heartbeat_interval: float = 1.0,
                 timeout: float = 15.0, rcvbuf: int = 0) -> None:
        if len(session) > 10:
            raise GatewayError(f"session name {session!r} is longer than 10 characters", "use a shorter --session")
        self.exchange = exchange or Exchange()
        self.users = users
        self.session = session
        self.heartbeat_interval, self.timeout = heartbeat_interval, timeout
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # accepted connections inherit it: a stalled venue (stall) takes little before it blocks
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self._listener.bind((host, port))
        except OSError as exc:
            self._listener.close()
            raise GatewayError(f"venue cannot listen on {host}:{port} ({exc.strerror})",
                               "pick a free --port (or stop what holds it)") from None
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._conns: dict[str, _Conn] = {}  # user → its logged-in connection
        self.muted: set[str] = set()  # users whose results are stored, not written (mute)
        self.deaf: set[str] = set()  # users whose requests are dropped unread (deafen)
        self.stalled: set[str] = set()  # users whose connection is not read at all (stall)
        self._calls: list[tuple[Callable, list, threading.Event]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.ended = False
        self.counts = dict.fromkeys(("connections", "logins", "login_rejects", "heartbeats_sent",
                                     "heartbeats_received", "dead_clients", "malformed", "replayed", "errors",
                                     "lost_requests"), 0)

    # --- control (any thread) ------------------------------------------------------------------

    def start(self) -> VenueServer:
        self._thread = threading.Thread(target=self.serve, args=(self._stop,), name="xdpgw-venue", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._close_all()

    def __enter__(self) -> VenueServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, fn: Callable[[VenueServer], object], timeout: float = 60.0):
        """Run ``fn(self)`` on the loop's thread and return its result (inline when not threaded)."""
        if self._thread is None or threading.current_thread() is self._thread:
            return fn(self)
        box: list = []
        done = threading.Event()
        with self._lock:
            self._calls.append((fn, box, done))
        self._wake()
        if not done.wait(timeout):
            raise TimeoutError("the venue loop did not answer")
        if box and isinstance(box[0], BaseException):
            raise box[0]
        return box[0] if box else None

    # commands for call(): what tests and the CLI do to a running venue

    def end_session(self) -> None:
        """End of day: System Event E, then End of Session to every client; logins refused after."""
        self.exchange.end_of_day()
        self._flush_streams()
        for conn in list(self._conns.values()):
            conn.out += sb.END_OF_SESSION_PACKET
            self._write(conn)
            self._close(conn)
        self.ended = True

    def drop(self, user: str) -> bool:
        """Close ``user``'s connection now, as a network failure would (nothing more is written)."""
        conn = self._conns.get(user)
        if conn is not None:
            self._close(conn)
        return conn is not None

    def sever_after_next(self, user: str) -> None:
        """The next message ``user`` sends is processed and its results are stored, but the connection
        closes before they are written: the client must get them by replay after it logs in again."""
        conn = self._conns.get(user)
        if conn is not None:
            conn.sever_next = True

    def mute(self, user: str, on: bool = True) -> None:
        """While on, what ``user``'s requests produce is processed and stored but nothing is written to
        it (no heartbeats either), as a link that stopped delivering. ``mute(user, False)`` closes
        the muted connection (the link failed): the client gets what it missed by replay at its
        next login."""
        if on:
            self.muted.add(user)
            return
        self.muted.discard(user)
        self.drop(user)

    def deafen(self, user: str, on: bool = True) -> None:
        """While on, requests from ``user`` are read and dropped unprocessed (lost on the way: the
        venue never sees them); counted in ``lost_requests``."""
        (self.deaf.add if on else self.deaf.discard)(user)

    def stall(self, user: str, on: bool = True) -> None:
        """While on, ``user``'s connection is not read at all (a venue that hangs): its requests wait in
        the kernel's buffers (small with ``rcvbuf``), then in the client's outbox. ``drop(user)`` then
        breaks the link with them unread, as a failed venue would; ``stall(user, False)`` reads on."""
        (self.stalled.add if on else self.stalled.discard)(user)
        conn = self._conns.get(user)
        if conn is not None:
            self._interest(conn)

    def connected_users(self) -> list[str]:
        return sorted(self._conns)

    # --- the loop ------------------------------------------------------------------------------

    def serve(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                for key, mask in self._sel.select(timeout=self._next_timer()):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                        self._run_calls()
                    else:
                        if mask & selectors.EVENT_WRITE:
                            self._write(key.data)
                        if mask & selectors.EVENT_READ and key.data.sock is not None:
                            self._readable(key.data)
                self._timers()
        finally:
            self._run_calls()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run_calls(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, box, done in calls:
            try:
                box.append(fn(self))
            except BaseException as exc:  # handed to the caller's thread
                box.append(exc)
            done.set()

    def _next_timer(self) -> float:
        return min(0.1, self.heartbeat_interval / 2)

    def _accept(self) -> None:
        try:
            sock, addr = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock, addr, time.monotonic(), self.heartbeat_interval, self.timeout)
        self._sel.register(sock, selectors.EVENT_READ, conn)
        self.counts["connections"] += 1

    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.hb.last_heard = time.monotonic()
        before = conn.decoder.malformed
        packets = conn.decoder.feed(data)
        self.counts["malformed"] += conn.decoder.malformed - before
        for kind, payload in packets:
            if conn.sock is None:
                return
            if not conn.user:
                if kind == sb.LOGIN_REQUEST:
                    self._login(conn, payload)
                else:
                    self.counts["malformed"] += 1
                    self._close(conn)
                    return
            elif kind == sb.UNSEQUENCED and conn.user in self.deaf:
                self.counts["lost_requests"] += 1
            elif kind == sb.UNSEQUENCED:
                try:
                    self.exchange.handle(conn.user, payload)
                except Exception:  # a bug must not take the venue down for every client: count it
                    self.counts["errors"] += 1
                if conn.sever_next:
                    self._close(conn)
                    self._flush_streams()
                    return
            elif kind == sb.CLIENT_HEARTBEAT:
                self.counts["heartbeats_received"] += 1
            elif kind == sb.LOGOUT_REQUEST:
                self._close(conn)
                return
            elif kind != sb.DEBUG:
                self.counts["malformed"] += 1
        self._flush_streams()

    def _login(self, conn: _Conn, payload: bytes) -> None:
        try:
            req = sb.parse_login_request(payload)
        except sb.SoupError:
            self.counts["malformed"] += 1
            self._close(conn)
            return
        reason = ""
        if self.users is not None and self.users.get(req.user) != req.password:
            reason = sb.REJECT_NOT_AUTHORIZED
        elif self.ended or (req.session and req.session != self.session):
            reason = sb.REJECT_SESSION_UNAVAILABLE
        if reason:
            self.counts["login_rejects"] += 1
            conn.out += sb.encode_login_rejected(reason)
            self._write(conn)
            self._close(conn)
            return
        old = self._conns.get(req.user)
        if old is not None:
            self._close(old)
        acc = self.exchange.account(req.user)
        nxt = len(acc.stream) + 1
        start = nxt if req.sequence == 0 else min(req.sequence, nxt)
        conn.user = req.user
        conn.sent_upto = start - 1
        self.counts["replayed"] += nxt - start
        self._conns[req.user] = conn
        self.counts["logins"] += 1
        conn.out += sb.encode_login_accepted(self.session, start)
        self._write(conn)

    def _flush_streams(self) -> None:
        for conn in list(self._conns.values()):
            stream = self.exchange.accounts[conn.user].stream
            if conn.sent_upto < len(stream) and conn.user not in self.muted:
                for payload in stream[conn.sent_upto:]:
                    conn.out += sb.encode_sequenced(payload)
                conn.sent_upto = len(stream)
                self._write(conn)

    def _write(self, conn: _Conn) -> None:
        if conn.sock is None or not conn.out:
            return
        try:
            n = conn.sock.send(conn.out)
        except BlockingIOError:
            n = 0
        except OSError:
            self._close(conn)
            return
        del conn.out[:n]
        conn.hb.last_sent = time.monotonic()
        self._interest(conn)

    def _interest(self, conn: _Conn) -> None:
        """Watch ``conn`` for reading (unless stalled) and, while it has output, for writing."""
        events = (0 if conn.user in self.stalled else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if conn.out else 0)
        try:
            if events:
                self._sel.modify(conn.sock, events, conn)
            else:
                self._sel.unregister(conn.sock)
        except KeyError:  # not registered (stalled with nothing to write)
            if events:
                self._sel.register(conn.sock, events, conn)

    def _timers(self) -> None:
        now = time.monotonic()
        for key in list(self._sel.get_map().values()):
            conn = key.data
            if not isinstance(conn, _Conn) or conn.sock is None:
                continue
            if conn.out:
                self._write(conn)
            if conn.hb.dead(now):
                self.counts["dead_clients"] += 1
                self._close(conn)
            elif conn.user and conn.user not in self.muted and conn.hb.due(now):
                conn.out += sb.SERVER_HEARTBEAT_PACKET
                self.counts["heartbeats_sent"] += 1
                self._write(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.sock is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()
        conn.sock = None
        if conn.user and self._conns.get(conn.user) is conn:
            del self._conns[conn.user]

    def _close_all(self) -> None:
        for key in list(self._sel.get_map().values()):
            if isinstance(key.data, _Conn):
                self._close(key.data)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self._listener)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        self._sel.close()

    def stats(self) -> dict:
        return {**self.counts, **self.exchange.counts, "users": self.connected_users()}
