"""``ouch://HOST:PORT?user=U&password=P``: the OUCH 5.0 / SoupBinTCP 4.0 venue connector.

One non-blocking TCP socket (TCP_NODELAY; SO_BUSY_POLL with ``busy_poll=US``), driven only from
``poll()`` on the caller's thread: reads, heartbeats, the dead-peer timeout and reconnects all happen
there. Protocol work is sans-IO (``soupbin.ClientSession``, ``messages``); this module only moves bytes.

Sequencing: ``next_sequence`` is the next sequenced message we expect. A connector that has applied
nothing asks for message 1 (the whole day: it learns every UserRefNum and order the session holds);
a reconnect or a :meth:`OuchConnector.restore` asks for the next one, and messages the server
replays from earlier than asked are dropped, so every ack and fill is applied exactly once.
UserRefNums are strictly increasing per session and never reused: ``next_user_ref_num`` is what the
journal saves (with ``next_sequence`` and the ref → order id map, :meth:`session_state`) and hands
back through :meth:`restore` after a restart.

URL parameters: ``user``, ``password``, ``session`` (blank: the current one), ``firm`` (Firm
appendage on Enter Order and Mass Cancel), ``seq`` (first requested sequence, default 1), ``ref``
(first UserRefNum, default 1), ``heartbeat`` (s, default 1), ``timeout`` (s of silence, default 15),
``reconnect`` (1/0), ``busy_poll`` (µs, default 0 = off), ``display`` (Y), ``capacity`` (A),
``tx_stamps`` (1: kernel TX software timestamps, read with :meth:`OuchConnector.tx_stamps`),
``sndbuf`` (bytes, default 0 = the kernel's autotuning: SO_SNDBUF; a small one bounds what a dead link
swallows, since requests the kernel took are in doubt until the venue's replay while those still in
our outbox are known unsent).

Requests in the outbox when the link breaks never reached the venue: with a reconnect coming they
stay as sent (their ids and UserRefNums kept), and the router's recovery sends them again once the
venue has replayed (:mod:`xdpgw.orders.recovery`); with none coming (closed, ended, refused,
``reconnect=0``) they are reported Rejected / CancelRejected, so nobody waits for an answer.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xdpgw.errors import GatewayError
from xdpgw.orders.batch import ENTER_ORDER, OrderBatch, encode_enter_orders
from xdpgw.orders.model import Order
from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch import soupbin as sb
from xdpgw.orders.venue import (
    Accepted,
    Cancelled,
    CancelRejected,
    Event,
    Expired,
    Filled,
    Rejected,
    Replaced,
    SessionEvent,
    TradeBroken,
)

SO_BUSY_POLL = getattr(socket, "SO_BUSY_POLL", 46)
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
# SOF_TIMESTAMPING_TX_SOFTWARE | SOFTWARE | OPT_ID | OPT_TSONLY: one software stamp per send, named
# by the offset of its last byte in the stream, with no copy of the data
_TX_FLAGS = (1 << 1) | (1 << 4) | (1 << 7) | (1 << 11)
_SCM_TIMESTAMPING = SO_TIMESTAMPING
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err: errno, origin, type, code, pad, info, data
_SO_EE_ORIGIN_TIMESTAMPING = 4
_TIMESPEC3 = struct.Struct("=qqqqqq")
_CANCEL = struct.Struct(">HccII")  # SoupBinTCP length + 'U' + Cancel Order
_RECV_SIZE = 1 << 16
_ACCEPTED, _EXECUTED, _CANCELED = m.ACCEPTED_FIELDS, m.EXECUTED_FIELDS, m.CANCELED_FIELDS
_ACTIVE = sb.ClientState.ACTIVE


@dataclass(slots=True)
class SessionState:
    """What a journal keeps to resume an OUCH session after a restart."""

    next_user_ref_num: int
    next_sequence: int  # the next sequenced message not yet applied (1: none applied)
    session: str  # the SoupBinTCP session name ("" until the first login)
    refs: dict[int, str] = field(default_factory=dict)  # UserRefNum → cl_ord_id


class OuchConnector:
    """A :class:`~xdpgw.orders.venue.Connector` for one OUCH account (see the module docstring)."""

    def __init__(self, name: str, host: str, port: int, *, user: str = "", password: str = "",
                 session: str = "", firm: str = "", sequence: int = 1, first_user_ref_num: int = 1,
                 heartbeat_interval: float = 1.0, timeout: float = 15.0, reconnect: bool = True,
                 reconnect_delay: float = 0.05, reconnect_max_delay: float = 2.0, busy_poll_us: int = 0,
                 display: str = "Y", capacity: str = "A", tx_timestamps: bool = False, sndbuf: int = 0) -> None:
        for what, value, width in (("user", user, 6), ("password", password, 10), ("session", session, 10),
                                   ("firm", firm, 4)):
            if len(value) > width or not value.isascii():
                raise GatewayError(f"OUCH {what} {value!r} does not fit SoupBinTCP/OUCH ({width} ASCII characters)",
                                   f"give a {what} of at most {width} characters in the venue URL")
        if not 0 < heartbeat_interval < timeout:
            raise GatewayError(f"heartbeat {heartbeat_interval} s must be positive and below timeout {timeout} s",
                               "e.g. heartbeat=1&timeout=15")
        self.name = name
        self.host, self.port = host, port
        self.user, self.password, self.firm = user, password, firm
        self.heartbeat_interval, self.timeout = heartbeat_interval, timeout
        self.reconnect_enabled = reconnect
        self.reconnect_delay, self.reconnect_max_delay = reconnect_delay, reconnect_max_delay
        self.busy_poll_us = busy_poll_us
        self.tx_timestamps = tx_timestamps
        self.sndbuf = sndbuf
        self._tx_bytes = 0  # bytes handed to this socket (the kernel's OPT_ID counts the same)
        self._tx_pending: dict[int, int] = {}  # offset of a request's last byte → its send time
        self._tx_stamps: list[tuple[int, int]] = []
        self._display = display
        self._session_name = session
        self._next_seq = sequence
        self._next_ref = first_user_ref_num
        self._refs: dict[int, str] = {}
        self._ref_of: dict[str, int] = {}
        self._replacing: dict[int, str] = {}  # new UserRefNum → the order it replaces
        appendage = m.encode_appendage(firm=firm) if firm else b""
        self._enc = m.EnterOrderEncoder(appendage, display=display, capacity=capacity)
        self._display_b, self._capacity_b = display.encode(), capacity.encode()
        self._frames = np.empty(0, ENTER_ORDER)  # send_rows' frames, reused
        self._sock: socket.socket | None = None
        self._poller: select.poll | None = None
        self._soup: sb.ClientSession | None = None
        self._connecting = False
        self._logged_in_once = False
        self._outbox = bytearray()
        self._queued: deque[tuple[int, str, Sequence[str]]] = deque()  # requests (partly) in the outbox
        self._rbuf = bytearray(_RECV_SIZE)
        self._rview = memoryview(self._rbuf)
        self._events: list[Event] = []
        self._closed = True
        self._ended = False
        self._refused = ""
        self._last_error = ""
        self._connect_started = 0.0
        self._reconnect_at: float | None = None
        self._backoff = reconnect_delay
        self._stats = dict.fromkeys(
            ("sent", "cancels", "replaces", "mass_cancels", "events", "reconnects", "disconnects",
             "heartbeats_sent", "heartbeats_received", "messages", "replayed_skipped", "gaps",
             "malformed", "unknown_types", "unknown_refs", "unexpected", "bytes_sent", "bytes_received",
             "tx_stamps", "tx_stamp_errors", "unsent", "writes"), 0)

    # --- state for the journal -----------------------------------------------------------------

    @property
    def next_user_ref_num(self) -> int:
        return self._next_ref

    @property
    def next_sequence(self) -> int:
        return self._next_seq

    def user_ref_num(self, cl_ord_id: str) -> int | None:
        return self._ref_of.get(cl_ord_id)

    def session_state(self) -> SessionState:
        return SessionState(self._next_ref, self._next_seq, self._session_name, dict(self._refs))

    def restore(self, state: SessionState) -> None:
        """Resume where a journal left the session (before ``connect``): UserRefNums continue after
        ``state.next_user_ref_num`` (never lower than what this connector already used), and the
        login asks for ``state.next_sequence``."""
        if self.connected:
            raise GatewayError(f"venue {self.name}: restore() on a live session", "call restore() before connect()")
        self._next_ref = max(self._next_ref, state.next_user_ref_num, max(state.refs, default=0) + 1)
        self._next_seq = state.next_sequence
        if state.session:
            self._session_name = state.session
        for ref, cid in state.refs.items():
            self._refs[ref] = cid
            self._ref_of[cid] = ref

    def forget(self, cl_ord_id: str) -> bool:
        """Drop an order the venue has shown it never received (its replay is over and has no
        answer to it), so that it may be sent again under a new UserRefNum (the old one stays used).
        Always True: SoupBinTCP has no resend of client messages, so nothing else will deliver it."""
        ref = self._ref_of.pop(cl_ord_id, None)
        if ref is not None:
            self._refs.pop(ref, None)
            self._replacing.pop(ref, None)
        return True

    def forget_cancel(self, cl_ord_id: str) -> bool:
        """A cancel or reduction of the order the venue has not answered after its replay never
        reached it: always True (nothing else will deliver it; it is sent again under its order's
        UserRefNum)."""
        return True

    # --- the Connector interface ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._soup is not None and self._soup.state is sb.ClientState.ACTIVE

    def connect(self, timeout: float = 5.0) -> None:
        if self.connected:
            return
        if self._ended:
            raise GatewayError(f"venue {self.name}: the session has ended for the day", "connect again tomorrow")
        self._closed = False
        self._refused = ""
        deadline = time.monotonic() + timeout
        if self._sock is None:  # else a reconnect is already under way: finish that one
            self._start_connect()
        while not self.connected:
            now = time.monotonic()
            if self._refused:
                self._closed = True
                raise GatewayError(f"venue {self.name} ({self.host}:{self.port}) refused the login: {self._refused}",
                                   "check user, password and session in the venue URL")
            if now >= deadline or (self._sock is None and self._reconnect_at is None):
                reason = self._last_error or "no Login Accepted"
                self._drop_socket()
                self._closed = True
                raise GatewayError(f"venue {self.name}: cannot log in to {self.host}:{self.port} within {timeout} s "
                                   f"({reason})", "check that the venue runs (e.g. xdpgw venue --port P) and the URL")
            self._step(min(deadline - now, 0.05))

    def send(self, order: Order) -> int:
        """One Enter Order, one ``send(2)``. The hot path: only what must precede the write (the
        session and id checks, the UserRefNum, the frame) comes before it; the bookkeeping after."""
        soup, cid = self._soup, order.cl_ord_id
        if soup is None or soup.state is not _ACTIVE:
            self._need_session(cid)
        if cid in self._ref_of:
            raise GatewayError(f"order id {cid} was already sent to {self.name}",
                               "give every order a new id (ids are unique for the day)")
        ref = self._next_ref
        t = self._write(self._enc.frame(order, ref), "new", (cid,), ref)
        self._stats["sent"] += 1
        return t

    def send_batch(self, orders: Sequence[Order]) -> int:
        """Several new orders in one write (frames packed back to back, one ``send`` call); returns the
        send time they share. Not in the Connector interface: the router's batch path uses it when
        present. Every id is checked before anything is sent."""
        ids = self._new_ids(orders)
        t = self._write(self._enc.frames(orders, self._next_ref), "new", ids, self._next_ref)
        self._stats["sent"] += len(orders)
        return t

    def send_rows(self, batch: OrderBatch, rows: Sequence[int], orders: Sequence[Order]) -> int:
        """``send_batch`` for orders that are rows of an :class:`~xdpgw.orders.batch.OrderBatch`
        (``orders``: those rows as Orders, for their ids): the frames are encoded from the columns in
        one vectorised pass (:func:`~xdpgw.orders.batch.encode_enter_orders`, byte-identical to the
        Enter Order encoder) into a buffer kept for the next batch, and leave in one write."""
        if self._enc.size != ENTER_ORDER.itemsize:  # an appendage (firm): the columns do not carry it
            return self.send_batch(orders)
        ids = self._new_ids(orders)
        n = len(ids)
        if len(self._frames) < n:
            self._frames = np.empty(max(n, 2 * len(self._frames)), ENTER_ORDER)
        f = encode_enter_orders(batch, np.asarray(rows, np.intp), self._next_ref, self._display_b,
                                self._capacity_b, out=self._frames)
        t = self._write(memoryview(f.view(np.uint8)), "new", ids, self._next_ref)
        self._stats["sent"] += n
        return t

    def _new_ids(self, orders: Sequence[Order]) -> list[str]:
        """The ids of a burst, each checked new (here and within the burst) before anything is sent."""
        self._need_session(f"{len(orders)} orders")
        ids = [o.cl_ord_id for o in orders]
        used = self._ref_of
        if any(cid in used for cid in ids) or len(set(ids)) != len(ids):
            cid = next(c for k, c in enumerate(ids) if c in used or c in ids[:k])
            raise GatewayError(f"order id {cid} was already sent to {self.name} (or twice in the batch)",
                               "give every order a new id (ids are unique for the day); nothing was sent")
        return ids

    def cancel(self, cl_ord_id: str, qty: int = 0) -> int:
        self._need_session(cl_ord_id)
        ref = self._known(cl_ord_id)
        t = self._write(_CANCEL.pack(10, b"U", b"X", ref, qty), "cancel", (cl_ord_id,))
        self._stats["cancels"] += 1
        return t

    def replace(self, orig_cl_ord_id: str, new: Order) -> int:
        self._need_session(orig_cl_ord_id)
        orig = self._known(orig_cl_ord_id)
        if new.cl_ord_id in self._ref_of:
            raise GatewayError(f"replacement id {new.cl_ord_id} was already used at {self.name}",
                               "give the replacement a new order id")
        ref = self._next_ref
        self._next_ref = ref + 1
        msg = m.ReplaceOrder(orig, ref, new.qty, new.price, new.tif.value, self._display, "N", new.cl_ord_id)
        self._refs[ref] = new.cl_ord_id
        self._ref_of[new.cl_ord_id] = ref
        self._replacing[ref] = orig_cl_ord_id
        t = self._write(sb.encode_unsequenced(m.encode(msg)), "new", (new.cl_ord_id,))
        self._stats["replaces"] += 1
        return t

    def mass_cancel(self, symbol: str | None = None) -> int:
        self._need_session("mass cancel")
        ref = self._next_ref
        self._next_ref = ref + 1
        t = self._write(sb.encode_unsequenced(m.encode(m.MassCancel(ref, self.firm, symbol or ""))), "mass cancel")
        self._stats["mass_cancels"] += 1
        return t

    def poll(self, timeout: float = 0.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            self._step(0.0)
            now = time.monotonic()
            if self._events or now >= deadline:
                break
            self._step(deadline - now)
            if self._events:
                break
        events, self._events = self._events, []
        self._stats["events"] += len(events)
        return events

    def stats(self) -> dict[str, int]:
        s = dict(self._stats)
        soup = self._soup
        if soup is not None:
            s["malformed"] += soup.malformed
            s["unexpected"] += soup.unexpected
            s["replayed_skipped"] += soup.skipped
            s["heartbeats_sent"] += soup.heartbeats_sent
            s["heartbeats_received"] += soup.heartbeats_received
        s["outbox_bytes"] = len(self._outbox)  # taken by us, not yet by the kernel
        s["next_user_ref_num"] = self._next_ref
        s["next_sequence"] = self._next_seq
        s["connected"] = int(self.connected)
        return s

    def close(self) -> None:
        if self._sock is not None and self._soup is not None:
            bye = self._soup.logout(time.monotonic())
            if bye:
                with contextlib.suppress(OSError):
                    self._flush()
                    self._sock.send(bye)
        self._drop_socket()
        self._closed = True
        self._reconnect_at = None

    def __enter__(self) -> OuchConnector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- I/O -----------------------------------------------------------------------------------

    def _need_session(self, what: str) -> None:
        if not self.connected:
            raise GatewayError(f"venue {self.name} is not connected ({what} not sent)",
                               "wait for its 'connected' session event, or route to another venue")

    def _known(self, cl_ord_id: str) -> int:
        ref = self._ref_of.get(cl_ord_id)
        if ref is None:
            raise GatewayError(f"order {cl_ord_id} is unknown at venue {self.name}",
                               "cancel or replace only orders sent through this connector (or restored)")
        return ref

    def _start_connect(self) -> None:
        self._reconnect_at = None
        self._last_error = ""
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            self._connect_failed(str(exc))
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.busy_poll_us:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_BUSY_POLL, self.busy_poll_us)
        if self.sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)

        code = sock.connect_ex((self.host, self.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._connect_failed(errno.errorcode.get(code, str(code)))
            return
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLOUT)
        self._connecting = True
        self._connect_started = time.monotonic()
        self._outbox.clear()

    def _connect_failed(self, reason: str) -> None:
        self._last_error = reason
        self._schedule_reconnect()

    def _will_reconnect(self) -> bool:
        return self.reconnect_enabled and not self._closed and not self._ended and not self._refused

    def _schedule_reconnect(self) -> None:
        if self._will_reconnect():
            self._reconnect_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.reconnect_max_delay)
        else:
            self._reconnect_at = None

    def _login(self) -> None:
        now = time.monotonic()
        self._connecting = False
        self._soup = sb.ClientSession(self.user, self.password, self._session_name, self._next_seq,
                                      self.heartbeat_interval, self.timeout, now)
        self._soup.skip_below = self._next_seq
        self._poller.modify(self._sock, select.POLLIN)
        self._tx_bytes = 0
        self._tx_pending.clear()
        if self.tx_timestamps:  # a TCP socket takes OPT_ID once connected: offsets count from here
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _TX_FLAGS)
            except OSError as exc:
                self._stats["tx_stamp_errors"] += 1
                self._last_error = f"SO_TIMESTAMPING: {exc}"
                self.tx_timestamps = False
        self._write(self._soup.login(now))

    def _unsent(self, reason: str, resend: bool = False) -> str:
        """Requests that never reached the kernel whole when the connection broke (the venue cannot
        have read them). ``resend`` (a reconnect is coming): they stay as sent, ids and UserRefNums
        kept, for the router's recovery to send again after the venue's replay (a mass cancel, the
        router sends again at the login under the kill switch). Otherwise new orders and replacements
        are reported Rejected, cancels CancelRejected, so nobody waits for an answer that cannot come.
        Returns a note for the disconnect event."""
        ts = time.monotonic_ns()
        why = f"not sent: the connection to {self.name} broke before it left ({reason})"
        counts = dict.fromkeys(("new", "cancel", "mass cancel"), 0)
        for _, kind, ids in self._queued:
            counts[kind] += 1
            if resend:
                continue
            for cid in ids:
                if kind == "cancel":
                    self._events.append(CancelRejected(cid, why, ts))
                    continue
                ref = self._ref_of.pop(cid, None)
                self._refs.pop(ref, None)
                self._replacing.pop(ref, None)
                self._events.append(Rejected(cid, why, ts))
        self._queued.clear()
        self._stats["unsent"] += sum(counts.values())
        return "; not sent: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + (
            " (sent again after the venue's replay)" if resend else
            " (send the mass cancel again)" if counts["mass cancel"] else "")

    def _drop_socket(self) -> None:
        soup = self._soup
        if soup is not None:  # keep the counters of the finished connection
            for key, value in (("malformed", soup.malformed), ("unexpected", soup.unexpected),
                               ("replayed_skipped", soup.skipped), ("heartbeats_sent", soup.heartbeats_sent),
                               ("heartbeats_received", soup.heartbeats_received)):
                self._stats[key] += value
        self._soup = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._poller = None
        self._connecting = False
        if self._queued:
            self._unsent("the session closed")
        self._outbox.clear()

    def _lost(self, reason: str, was_active: bool | None = None) -> None:
        if was_active is None:
            was_active = self.connected
        if self._queued:
            reason += self._unsent(reason, resend=self._will_reconnect())
        self._drop_socket()
        self._last_error = reason
        if was_active:
            self._stats["disconnects"] += 1
            self._events.append(SessionEvent("disconnected", f"{self.name}: {reason}", time.monotonic_ns()))
        self._schedule_reconnect()

    def _write(self, data: bytes | memoryview, kind: str = "", ids: Sequence[str] = (), first_ref: int = 0) -> int:
        """Hand ``data`` (a request of ``kind`` for orders ``ids``, or session bytes) to the socket;
        what it cannot take now waits in the outbox for ``poll``. ``first_ref``: new orders ``ids``
        take UserRefNums from there on (in ``data``'s frames), recorded once the bytes are taken. A
        broken connection raises GatewayError and records nothing for ``ids``: they were not sent and
        may be sent again. Requests still in the outbox when the connection breaks are reported by
        :meth:`_unsent`. The send time is taken right before the ``send(2)``, the bookkeeping after."""
        sock = self._sock
        t = time.monotonic_ns()
        if self._outbox:
            self._outbox += data
            n = 0
        else:
            try:
                n = sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                if first_ref:  # their UserRefNums stay used
                    self._next_ref = first_ref + len(ids)
                else:  # a cancel's or a replace's ids: forgotten, as before
                    for cid in ids:
                        ref = self._ref_of.pop(cid, None)
                        self._refs.pop(ref, None)
                        self._replacing.pop(ref, None)
                self._lost(f"send failed: {exc}")
                raise GatewayError(f"venue {self.name}: connection lost while sending ({exc})",
                                   "the request was not sent; send it again after the 'connected' event") from None
            if n < len(data):
                self._outbox += data[n:]
                self._poller.modify(sock, select.POLLIN | select.POLLOUT)
        if first_ref:
            refs, ref_of = self._refs, self._ref_of
            for ref, cid in enumerate(ids, first_ref):
                refs[ref] = cid
                ref_of[cid] = ref
            self._next_ref = first_ref + len(ids)
        size = len(data)
        stats = self._stats
        stats["writes"] += 1
        stats["bytes_sent"] += size
        self._tx_bytes += size
        if self._outbox and kind:
            self._queued.append((self._tx_bytes, kind, ids))
        if self.tx_timestamps:
            self._tx_pending[self._tx_bytes - 1] = t
        self._soup.sent(t / 1e9)
        return t

    def _flush(self) -> None:
        if not self._outbox or self._sock is None:
            return
        try:
            n = self._sock.send(self._outbox)
        except BlockingIOError:
            return
        del self._outbox[:n]
        left = self._tx_bytes - len(self._outbox)  # bytes the kernel has taken
        while self._queued and self._queued[0][0] <= left:
            self._queued.popleft()
        if not self._outbox and self._poller is not None:
            self._poller.modify(self._sock, select.POLLIN)

    def _step(self, wait: float) -> None:
        """One round of I/O and timers, waiting up to ``wait`` s for the socket."""
        now = time.monotonic()
        if self._sock is None:
            if self._reconnect_at is not None and now >= self._reconnect_at:
                self._start_connect()
            elif wait > 0:
                nap = wait if self._reconnect_at is None else min(wait, max(0.0, self._reconnect_at - now))
                time.sleep(nap)
                return
            if self._sock is None:
                return
        if wait > 0 and self._soup is not None:
            wait = max(0.0, min(wait, self._soup.heartbeats.next_deadline() - now))
        try:
            ready = self._poller.poll(wait * 1000.0 if wait > 0 else 0)
        except InterruptedError:
            ready = []
        if self._connecting:
            if ready:
                code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    self._lost(f"connect: {errno.errorcode.get(code, code)}")
                    return
                self._login()
            elif time.monotonic() - self._connect_started > self.timeout:
                self._lost(f"connect: no answer from {self.host}:{self.port} in {self.timeout} s")
            return
        if ready:
            flags = ready[0][1]
            if flags & select.POLLERR and self.tx_timestamps:
                self._read_tx_stamps()
            if flags & select.POLLOUT:
                try:
                    self._flush()
                except OSError as exc:
                    self._lost(f"send failed: {exc}")
                    return
            if flags & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._read()
        soup = self._soup
        if soup is not None:
            active = soup.state is sb.ClientState.ACTIVE
            out, evs = soup.tick(time.monotonic())
            if evs:
                self._lost(f"venue silent for {evs[0].silent_s:.1f} s (dead peer)", active)
            elif out:
                with contextlib.suppress(GatewayError):
                    self._write(out)

    def tx_stamps(self) -> list[tuple[int, int]]:
        """``(send time, kernel TX software stamp)`` pairs (both CLOCK_MONOTONIC ns) of the writes
        stamped since the last call (orders, cancels, and session packets such as the login and
        heartbeats; match them by the send time ``send()`` returned), with ``tx_timestamps=True``
        (URL ``tx_stamps=1``): the stamp is
        taken when the kernel hands the segment to the device (SO_TIMESTAMPING), so ``stamp - send``
        is our send path inside the kernel and a feed stamp → ``stamp`` is tick-to-trade."""
        if self.tx_timestamps and self._sock is not None and self._tx_pending:
            self._read_tx_stamps()
        out, self._tx_stamps = self._tx_stamps, []
        return out

    def _read_tx_stamps(self) -> None:
        sock = self._sock
        offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.monotonic_ns()
        while True:
            try:
                _, anc, _, _ = sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            stamp = key = None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPING and len(data) >= _TIMESPEC3.size:
                    sec, nsec = _TIMESPEC3.unpack_from(data)[:2]
                    stamp = sec * 1_000_000_000 + nsec - offset
                elif len(data) >= _EXTENDED_ERR.size:
                    err = _EXTENDED_ERR.unpack_from(data)
                    if err[1] == _SO_EE_ORIGIN_TIMESTAMPING:
                        key = err[6]
            if stamp is not None and key is not None:
                sent = self._tx_pending.pop(key, None)
                if sent is not None:
                    self._tx_stamps.append((sent, stamp))
                    self._stats["tx_stamps"] += 1
            if len(self._tx_pending) > 4096:  # stamps the kernel never gave: forget the oldest
                for k in sorted(self._tx_pending)[:2048]:
                    del self._tx_pending[k]

    def _read(self) -> None:
        sock, rbuf, view = self._sock, self._rbuf, self._rview
        while sock is self._sock and sock is not None:
            try:
                n = sock.recv_into(rbuf)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(f"receive failed: {exc}")
                return
            if n == 0:
                self._lost("the venue closed the connection")
                return
            self._stats["bytes_received"] += n
            self._on_bytes(view[:n])
            if n < _RECV_SIZE:
                return

    def _on_bytes(self, data: memoryview) -> None:
        ts = time.monotonic_ns()
        soup = self._soup
        try:
            events = soup.receive(data, ts / 1e9)
        except sb.SoupError as exc:
            self._stats["malformed"] += 1
            self._lost(f"malformed SoupBinTCP from the venue ({exc})")
            return
        for ev in events:
            if type(ev) is sb.Message:
                if ev.sequence:
                    self._next_seq = ev.sequence + 1
                self._stats["messages"] += 1
                self._apply(ev.data, ts)
            elif type(ev) is sb.Accepted:
                self._on_login(ev, ts)
            elif type(ev) is sb.Refused:
                self._refused = ev.text
                self._events.append(SessionEvent("rejected", f"{self.name}: login refused: {ev.text}", ts))
                self._drop_socket()
                self._reconnect_at = None
                return
            elif type(ev) is sb.CaughtUp:
                self._events.append(SessionEvent("replayed", f"{self.name}: the venue has replayed everything "
                                                 f"before message {ev.next_sequence}", ts))
            elif type(ev) is sb.Ended:
                self._ended = True
                self._events.append(SessionEvent("ended", f"{self.name}: end of session", ts))
                self._drop_socket()
                self._reconnect_at = None
                return

    def _on_login(self, ev: sb.Accepted, ts: int) -> None:
        if self._next_seq and ev.sequence > self._next_seq:
            self._stats["gaps"] += ev.sequence - self._next_seq  # the venue cannot replay them
        if not self._next_seq or ev.sequence > self._next_seq:
            self._next_seq = ev.sequence
        self._session_name = ev.session
        self._backoff = self.reconnect_delay
        if self._logged_in_once:
            self._stats["reconnects"] += 1
        self._logged_in_once = True
        self._events.append(SessionEvent("connected", f"{self.name}: session {ev.session!r}, next message "
                                         f"{ev.sequence}, asked for {self._soup.requested}", ts))

    def _apply(self, payload: bytes, ts: int) -> None:
        """One sequenced OUCH message → at most one event (acks, fills and cancels by a fast path)."""
        kind, n = payload[0], len(payload)
        if kind == 0x45 and n >= 36:  # E Order Executed
            ref, qty, price, flag, match, app = _EXECUTED.unpack_from(payload)
            if n == 36 + app:
                cid = self._cid(ref)
                if cid:
                    self._events.append(Filled(cid, qty, price, str(match), flag.decode("latin-1"), ts))
                return
        elif kind == 0x41 and n >= 64:  # A Order Accepted
            ref, qty, price, order_ref, raw, app = _ACCEPTED.unpack_from(payload)
            if n == 64 + app:
                cid = raw.decode("latin-1").rstrip(" \x00") or self._refs.get(ref)
                if cid:
                    self._learn(ref, cid)
                    self._events.append(Accepted(cid, str(order_ref), qty, price, ts))
                else:
                    self._stats["unknown_refs"] += 1
                return
        elif kind == 0x43 and n == 18:  # C Order Canceled
            ref, qty, reason = _CANCELED.unpack_from(payload)
            cid = self._cid(ref)
            if cid:
                self._events.append(Expired(cid, ts) if reason == b"T" else
                                    Cancelled(cid, qty, m.cancel_text(reason.decode("latin-1")), ts))
            return
        self._apply_slow(payload, ts)

    def _apply_slow(self, payload: bytes, ts: int) -> None:
        try:
            msg = m.decode(payload, inbound=False)
        except m.OuchError:
            known = payload[:1] in m.OUTBOUND_TYPES
            self._stats["malformed" if known else "unknown_types"] += 1
            return
        kind = type(msg)
        if kind is m.OrderAccepted:
            cid = msg.cl_ord_id or self._refs.get(msg.user_ref_num)
            self._learn(msg.user_ref_num, cid)
            ev = Accepted(cid, str(msg.order_reference_number), msg.quantity, msg.price, ts)
        elif kind is m.OrderExecuted:
            cid = self._cid(msg.user_ref_num)
            ev = cid and Filled(cid, msg.quantity, msg.price, str(msg.match_number), msg.liquidity_flag, ts)
        elif kind is m.OrderCanceled:
            cid = self._cid(msg.user_ref_num)
            if cid and msg.reason == "T":
                ev = Expired(cid, ts)
            else:
                ev = cid and Cancelled(cid, msg.quantity, m.cancel_text(msg.reason), ts)
        elif kind is m.OrderReplaced:
            orig = self._cid(msg.orig_user_ref_num)
            cid = msg.cl_ord_id or self._refs.get(msg.user_ref_num)
            self._learn(msg.user_ref_num, cid)
            self._replacing.pop(msg.user_ref_num, None)
            ev = orig and Replaced(orig, cid, str(msg.order_reference_number), msg.quantity, msg.price, ts)
        elif kind is m.OrderRejected:
            cid = msg.cl_ord_id or self._cid(msg.user_ref_num)
            self._replacing.pop(msg.user_ref_num, None)
            ev = cid and Rejected(cid, m.reject_text(msg.reason), ts)
        elif kind is m.CancelReject:
            cid = self._cid(msg.user_ref_num)
            ev = cid and CancelRejected(cid, "the venue refused the cancel (order not open)", ts)
        elif kind is m.BrokenTrade:
            cid = msg.cl_ord_id or self._cid(msg.user_ref_num)
            ev = cid and TradeBroken(cid, str(msg.match_number), msg.reason, ts)
        else:  # System Event, Cancel Pending, Order Modified, Mass Cancel Response: nothing to report
            return
        if ev:
            self._events.append(ev)

    def _learn(self, ref: int, cid: str) -> None:
        self._refs[ref] = cid
        self._ref_of[cid] = ref
        if ref >= self._next_ref:
            self._next_ref = ref + 1

    def _cid(self, ref: int) -> str | None:
        cid = self._refs.get(ref)
        if cid is None:
            self._stats["unknown_refs"] += 1
        return cid


def _number(params: dict[str, str], key: str, default: float, kind: type = int) -> float:
    text = params.get(key)
    if text is None or text == "":
        return default
    try:
        return kind(text)
    except ValueError:
        raise GatewayError(f"venue URL parameter {key}={text!r} is not a number", f"e.g. {key}={default}") from None


def from_url(name: str, host: str, port: int, params: dict[str, str]) -> OuchConnector:
    """The factory ``ouch://`` URLs resolve to (``xdpgw.orders.venue.SCHEMES``)."""
    return OuchConnector(
        name, host, port, user=params.get("user", ""), password=params.get("password", ""),
        session=params.get("session", ""), firm=params.get("firm", ""),
        sequence=int(_number(params, "seq", 1)), first_user_ref_num=int(_number(params, "ref", 1)),
        heartbeat_interval=float(_number(params, "heartbeat", 1.0, float)),
        timeout=float(_number(params, "timeout", 15.0, float)),
        reconnect=params.get("reconnect", "1") not in ("0", "false", "no"),
        busy_poll_us=int(_number(params, "busy_poll", 0)),
        display=params.get("display", "Y") or "Y", capacity=params.get("capacity", "A") or "A",
        tx_timestamps=params.get("tx_stamps", "0") in ("1", "true", "yes"),
        sndbuf=int(_number(params, "sndbuf", 0)))
