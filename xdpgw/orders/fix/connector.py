"""``fix://`` venues: the Connector interface on a QuickFIX SocketInitiator.

The engine runs the session on its own thread (logon, heartbeats, test requests, sequence numbers,
resend and gap fill, a FileStore under the state directory so a restart resumes the session). Its
callbacks only stamp what arrived and queue it; ``poll()`` turns the queue into events on the
caller's thread (messages → events: :mod:`xdpgw.orders.fix.messages`).

URL: ``fix://HOST:PORT?sender=OURID&target=THEIRID[&version=FIX.4.2][&heartbeat=30][&dir=PATH]
[&mass_cancel=native][&reset=1]``; ``dir`` holds the settings, store and logs (default
``$XDG_STATE_HOME/xdpgw/fix/SENDER-TARGET``); ``mass_cancel=native`` sends OrderMassCancelRequest
instead of one cancel per open order; ``reset=1`` starts the session over at sequence number 1
(ResetSeqNumFlag on logon: a new trading day, or a venue that lost its store).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from xdpgw.errors import GatewayError
from xdpgw.orders.fix import engine, messages, wire
from xdpgw.orders.model import Order
from xdpgw.orders.venue import Cancelled, Event, MemoryStore, Replaced, SessionEvent, SessionStore

qf = engine.quickfix()
_NEXT_IN = "fix_next_in"  # the store key
_OWN_ID = re.compile(r"X[CRM][0-9A-Z]{12}")  # ids of our own cancel requests, reductions, mass cancels


@dataclass(slots=True)
class _Live:
    """An open order as this session knows it."""

    order: Order  # its current terms (after replaces and reductions)
    leaves: int
    wire_id: str  # the ClOrdID the venue knows it by now (ours, or our last reduction's)


class _Application(qf.Application):
    """The engine's callbacks (on its thread, or the sender's for toApp): stamp, queue, return.
    An exception escaping a callback would make the SWIG layer exit the process: none may escape."""

    def __init__(self, owner: FixConnector) -> None:
        super().__init__()
        self.owner = owner

    def onCreate(self, session_id):  # noqa: N802 (QuickFIX's names)
        pass

    def onLogon(self, session_id):  # noqa: N802
        self.owner._guarded(self.owner._session_change, "connected", "logged on")

    def onLogout(self, session_id):  # noqa: N802
        self.owner._guarded(self.owner._session_change, "disconnected", "logged out or connection lost")

    def toAdmin(self, message, session_id):  # noqa: N802
        self.owner._guarded(self.owner._admin_out, message)

    def fromAdmin(self, message, session_id):  # noqa: N802
        self.owner._guarded(self.owner._arrived, message)

    def toApp(self, message, session_id):  # noqa: N802
        self.owner._guarded(self.owner._sending, message)

    def fromApp(self, message, session_id):  # noqa: N802
        self.owner._guarded(self.owner._arrived, message)


class FixConnector:
    """One FIX session with one venue (see the module docstring)."""

    def __init__(self, name: str, host: str, port: int, *, sender: str, target: str,
                 version: str = "FIX.4.4", heartbeat: int = 30, state_dir: str | Path | None = None,
                 native_mass_cancel: bool = False, reset: bool = False) -> None:
        self.name = name
        self.host, self.port = host, port
        self.version = version
        self.state_dir = Path(state_dir) if state_dir else _default_dir(sender, target)
        self.session_id = qf.SessionID(version, sender, target)
        self._heartbeat = heartbeat
        self._native_mass_cancel = native_mass_cancel
        self._reset = reset  # start the day: both sides back to sequence number 1 at logon (141=Y)
        self._mass: dict[str, str | None] = {}  # OrderMassCancelRequest ClOrdID → its symbol (None: all)
        self._inbox: deque[tuple[int, str, object]] = deque()  # (ts_ns, kind, payload) from engine threads
        self._wake = threading.Event()
        self._logged_on = threading.Event()
        self._initiator = None
        self._live: dict[str, _Live] = {}  # open orders by our id
        self._used: set[str] = set()  # every ClOrdID this connector sent (unique for the day)
        self._alias: dict[str, str] = {}  # ClOrdIDs of our cancel requests / reductions → the order's id
        self._reductions: set[str] = set()  # ClOrdIDs of replaces that only reduce (cancel with qty > 0)
        self._replacing: dict[str, Order] = {}  # new id → the replacement we asked for
        #: ClOrdIDs of cancel requests / reductions the engine took and the venue has not answered → the order
        self._cancelling: dict[str, str] = {}
        self._replay_due = False  # a logon handed out whose catch-up is not yet reported (caller's thread)
        self._by_seq: dict[int, tuple[str, str]] = {}  # our MsgSeqNum → (MsgType, order id)
        self._last_id = 0
        #: where the next incoming sequence number we handed out is kept (the router gives its journal):
        #: on a restart the engine asks the venue to resend from there, so nothing the engine took in
        #: but the router never journaled (a kill -9 in between) is lost
        self.store: SessionStore = MemoryStore()
        self._next_in = 0  # after the messages poll() handed out
        self._stored_in = 0
        self._logon_seq = 0  # the MsgSeqNum of the venue's last Logon
        self._counts = dict.fromkeys(("sent", "cancels", "replaces", "events", "reconnects", "heartbeats_sent",
                                      "logons", "resent_received", "subtick_prices", "ignored",
                                      "callback_errors", "mass_cancel_fallbacks", "resumed_from",
                                      "catch_up_timeouts"), 0)
        self.last_callback_error = ""

    # --- the engine's side (its threads) ------------------------------------------------------------

    def _session_change(self, kind: str, detail: str) -> None:
        if kind == "connected":
            self._counts["logons"] += 1
            self._counts["reconnects"] = self._counts["logons"] - 1
            self._logged_on.set()
        else:
            self._logged_on.clear()
        self._inbox.append((time.monotonic_ns(), "session", (kind, detail)))
        self._wake.set()

    def _guarded(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # counted and kept: the engine's thread must never see it
            self._counts["callback_errors"] += 1
            self.last_callback_error = repr(exc)

    def _arrived(self, message) -> None:
        ts = time.monotonic_ns()
        raw = message.toString()
        if "\x0135=A\x01" in raw:  # the venue's Logon: what it has sent before it is ours to catch up on
            self._logon_seq = int(wire.fields(raw).get(34) or 0)
        self._inbox.append((ts, "message", raw))
        self._wake.set()

    def _admin_out(self, message) -> None:
        if message.getHeader().getField(35) == "0":
            self._counts["heartbeats_sent"] += 1

    def _sending(self, message) -> None:
        """toApp: remember which order each sequence number carried (a Reject names only that)."""
        header = message.getHeader()
        msg_type = header.getField(35)
        if msg_type in ("D", "F", "G", "q"):
            key = 41 if msg_type in ("F", "G") else 11
            self._by_seq[int(header.getField(34))] = (msg_type, self._resolve(message.getField(key)))

    # --- the Connector interface (the caller's thread) ------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._logged_on.is_set()

    def connect(self, timeout: float = 5.0) -> None:
        if self._initiator is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._recover()
            default = engine.common_settings(self.state_dir, self.version, self._heartbeat)
            default.update(ConnectionType="initiator", ReconnectInterval=1, LogonTimeout=max(int(timeout), 1),
                           # a report must not be refused (and lost) for an extra field or field order
                           # the venue's dialect has: framing, BodyLength and CheckSum stay checked
                           AllowUnknownMsgFields="Y", ValidateFieldsOutOfOrder="N",
                           ResetOnLogon="Y" if self._reset else "N")
            path = engine.write_settings(self.state_dir / "session.cfg", default, {
                "BeginString": self.version, "SenderCompID": self.session_id.getSenderCompID().getValue(),
                "TargetCompID": self.session_id.getTargetCompID().getValue(),
                "SocketConnectHost": self.host, "SocketConnectPort": self.port})
            # the engine keeps references to these: they live as long as the initiator
            self._settings = qf.SessionSettings(str(path))
            self._app = _Application(self)
            self._stores = qf.FileStoreFactory(self._settings)
            self._logs = qf.FileLogFactory(self._settings)
            self._initiator = qf.SocketInitiator(self._app, self._stores, self._settings, self._logs)
            self._resume_from_store()
            self._initiator.start()
        deadline = time.monotonic() + timeout
        if self._logged_on.wait(timeout):
            self._catch_up(deadline)
            if self._logged_on.is_set() and self._caught_up():  # else poll() reports it once caught up
                self._inbox.append((time.monotonic_ns(), "session", ("replayed", "the venue resent what we missed")))
                self._wake.set()
        else:
            detail = engine.last_event(self.state_dir)
            self.close()
            raise GatewayError(f"FIX venue {self.name} at {self.host}:{self.port} did not log on within {timeout} s"
                               f" (engine: {detail})",
                               "check the venue is up and sender/target match its session settings; if the "
                               "venue started a new day (sequence numbers too low), add reset=1 to the URL once")

    #: the engine's store resends every request it took when the venue asks (ResendRequest)
    session_resends = True

    def forget(self, cl_ord_id: str) -> bool:
        """After the catch-up: may an order (or a replacement, by its new id) the venue has not
        answered be sent again? Only if it never reached the engine (a kill between the router's
        journal and the engine's store): what the engine took, its resend delivers."""
        return cl_ord_id not in self._used

    def forget_cancel(self, cl_ord_id: str) -> bool:
        """As :meth:`forget` for a cancel or reduction of the order: True unless the engine took
        one the venue has not answered yet."""
        return cl_ord_id not in self._cancelling.values()

    def send(self, order: Order) -> int:
        self._require_session(order.cl_ord_id)
        if order.cl_ord_id in self._used:
            raise GatewayError(f"order id {order.cl_ord_id} is already in use on {self.name}",
                               "give every order a new id (FIX ClOrdIDs are unique for the day)")
        body = messages.new_order_single(order)
        self._used.add(order.cl_ord_id)
        self._live[order.cl_ord_id] = _Live(order, order.qty, order.cl_ord_id)
        try:
            ts = self._send("D", body)
        except GatewayError:
            del self._live[order.cl_ord_id]
            raise
        self._counts["sent"] += 1
        return ts

    def cancel(self, cl_ord_id: str, qty: int = 0) -> int:
        live = self._open(cl_ord_id)
        request_id = self._new_id("R" if qty > 0 else "C")
        self._alias[request_id] = cl_ord_id
        if qty <= 0:
            ts = self._send("F", messages.cancel_request(request_id, live.wire_id, live.order))
        else:  # FIX has no partial cancel: a replace that only lowers the quantity
            self._reductions.add(request_id)
            done = live.order.qty - live.leaves
            smaller = replace(live.order, cl_ord_id=request_id, qty=done + min(qty, live.leaves))
            ts = self._send("G", messages.replace_request(live.wire_id, smaller))
        self._cancelling[request_id] = cl_ord_id
        self._counts["cancels"] += 1
        return ts

    def replace(self, orig_cl_ord_id: str, new: Order) -> int:
        live = self._open(orig_cl_ord_id)
        if new.cl_ord_id in self._used:
            raise GatewayError(f"order id {new.cl_ord_id} is already in use on {self.name}",
                               "give the replacement a new id")
        self._replacing[new.cl_ord_id] = new
        self._used.add(new.cl_ord_id)
        ts = self._send("G", messages.replace_request(live.wire_id, new))
        self._counts["replaces"] += 1
        return ts

    def mass_cancel(self, symbol: str | None = None) -> int:
        """One OrderCancelRequest per open order (many FIX venues do not take OrderMassCancelRequest);
        with ``mass_cancel=native`` one OrderMassCancelRequest (35=q), and one cancel per open order
        after all if the venue refuses it (Reject, BusinessMessageReject or a rejected report)."""
        if self._native_mass_cancel:
            self._require_session("mass cancel")
            request_id = self._new_id("M")
            self._mass[request_id] = symbol
            scope = [(530, "1"), (55, symbol)] if symbol else [(530, "7")]
            return self._send("q", [(11, request_id), *scope, (60, messages.transact_time())])
        first = time.monotonic_ns()
        for cl_ord_id in [k for k, v in self._live.items() if symbol is None or v.order.symbol == symbol]:
            self.cancel(cl_ord_id)
        return first

    def poll(self, timeout: float = 0.0) -> list[Event]:
        if not self._inbox and timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()
        # a logon the engine made by itself (a reconnect): "replayed" once it has what the venue
        # resent, as connect() reports it; checked before the queue is read, so all of it is in there
        replayed = self._replay_due and self._caught_up()
        out: list[Event] = []
        while self._inbox:
            ts, kind, payload = self._inbox.popleft()
            if kind == "session":
                event = SessionEvent(payload[0], payload[1], ts)
                self._replay_due = payload[0] == "connected"  # connect()'s own "replayed", or a drop: not due
                replayed = False
            else:
                event = self._decode(payload, ts)
            if event is not None:
                out.append(event)
        if replayed and self._replay_due:
            self._replay_due = False
            out.append(SessionEvent("replayed", "the venue resent what we missed", time.monotonic_ns()))
        self._counts["events"] += len(out)
        if self._next_in and self._next_in != self._stored_in:
            self.store.put(_NEXT_IN, str(self._next_in))
            self._stored_in = self._next_in
        return out

    def stats(self) -> dict[str, int]:
        return {**self._counts, "open": len(self._live)}

    def open_orders(self) -> list[str]:
        """Ids of the orders this session believes open (sent and not yet final)."""
        return list(self._live)

    def close(self) -> None:
        initiator, self._initiator = self._initiator, None
        if initiator is not None:
            initiator.stop()  # logs out, joins the engine's thread
            self._logged_on.clear()

    def __enter__(self) -> FixConnector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- inside -------------------------------------------------------------------------------------

    def _catch_up(self, deadline: float) -> None:
        """After logon, wait (until ``deadline``) for what the venue resends to fill the gap before its
        Logon, so a resumed session's missed reports are in the first poll() (not after the caller
        already thinks every order is settled)."""
        while not self._caught_up():
            if time.monotonic() > deadline:
                self._counts["catch_up_timeouts"] += 1
                return
            time.sleep(0.002)

    def _caught_up(self) -> bool:
        """The engine has taken in everything the venue sent before its last Logon."""
        session = qf.Session.lookupSession(self.session_id)
        return session is None or session.getExpectedTargetNum() > self._logon_seq

    def _resume_from_store(self) -> None:
        """Make the engine expect the first message the router has not journaled: the venue's Logon
        then shows a gap and the engine asks for the rest again (they come back as PossDup resends)."""
        kept = None if self._reset else self.store.get(_NEXT_IN)
        session = qf.Session.lookupSession(self.session_id)
        if kept and session is not None and 0 < int(kept) < session.getExpectedTargetNum():
            session.setNextTargetMsgSeqNum(int(kept))
            self._counts["resumed_from"] = int(kept)

    def _recover(self) -> None:
        """After a restart: what this session sent and heard (the engine's message log) tells which
        orders are open, their terms and the ids in use, so cancels and mass cancel reach orders
        sent before the restart. Reports the venue resends on logon are applied on top as usual."""
        log = engine.message_log(self.state_dir)
        if log is None or self._used or self._reset:  # reset: a new day, yesterday's orders are gone
            return
        ours = self.session_id.getSenderCompID().getValue()
        for raw in wire.frames(log.read_bytes()):
            f = wire.fields(raw)
            if f.get(49) != ours:
                self._decode(raw.decode("ascii", "replace"), 0)
                continue
            msg_type, wire_id = f.get(35), f.get(11, "")
            if f.get(43) == "Y" or msg_type not in ("D", "F", "G", "q"):
                continue
            self._by_seq[int(f.get(34, 0))] = (msg_type, self._resolve(f.get(41 if msg_type in "FG" else 11, "")))
            self._used.add(wire_id)
            if msg_type == "D":
                self._live[wire_id] = _Live(messages.order_from_fields(f), int(f[38]), wire_id)
            elif msg_type == "F" or _OWN_ID.fullmatch(wire_id):  # our cancel request or reduction
                self._alias[wire_id] = self._resolve(f.get(41, ""))
                self._cancelling[wire_id] = self._alias[wire_id]
                if msg_type == "G":
                    self._reductions.add(wire_id)
            elif msg_type == "G":
                self._replacing[wire_id] = messages.order_from_fields(f)
        self._counts = dict.fromkeys(self._counts, 0)  # counters are this run's
        self._next_in = 0

    def _require_session(self, what: str) -> None:
        if not self._logged_on.is_set():
            raise GatewayError(f"FIX venue {self.name} is not logged on (order {what} not sent)",
                               "connect() first, or route to another venue until it reconnects")

    def _open(self, cl_ord_id: str) -> _Live:
        self._require_session(cl_ord_id)
        live = self._live.get(cl_ord_id)
        if live is None:
            raise GatewayError(f"order {cl_ord_id} is not open on {self.name}",
                               "cancel or replace only orders this session sent and that are still open")
        return live

    def _new_id(self, kind: str) -> str:
        """A ClOrdID for a cancel request (``kind`` "C"), a reduction ("R") or a mass cancel ("M"):
        "X" + kind + increasing wall-clock ns in base 36 (14 characters, unique across restarts)."""
        self._last_id = max(time.time_ns(), self._last_id + 1)
        n, digits = self._last_id, []
        while n:
            n, r = divmod(n, 36)
            digits.append("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r])
        return "X" + kind + "".join(reversed(digits))

    def _send(self, msg_type: str, body: list[tuple[int, str]]) -> int:
        message = qf.Message()
        message.getHeader().setField(35, msg_type)
        for tag, value in body:
            message.setField(tag, value)
        ts = time.monotonic_ns()
        try:
            ok = qf.Session.sendToTarget(message, self.session_id)
        except qf.SessionNotFound:
            ok = False
        if not ok:
            raise GatewayError(f"the FIX engine refused to send {msg_type} to {self.name}",
                               f"connect() first; the engine's log is under {self.state_dir / 'log'}")
        return ts

    def _resolve(self, wire_id: str) -> str:
        return self._alias.get(wire_id, wire_id)

    def _decode(self, raw: str, ts: int) -> Event | None:
        f = wire.fields(raw)
        if f.get(43) == "Y":
            self._counts["resent_received"] += 1
        seq, msg_type = int(f.get(34) or 0), f.get(35)
        if msg_type == "A" and f.get(141) == "Y":  # the venue reset the sequence numbers
            self._next_in = seq + 1
        else:
            self._next_in = max(self._next_in, int(f.get(36) or 0) if msg_type == "4" else seq + 1)
        if msg_type in ("8", "9"):
            self._cancelling.pop(f.get(11, ""), None)  # a cancel or reduction of ours answered
        if msg_type == "8":
            return self._report(f, ts)
        if msg_type == "9":  # the request is dead: forget what it would have changed
            self._replacing.pop(f.get(11, ""), None)
            self._reductions.discard(f.get(11, ""))
            return messages.cancel_reject_event(f, ts, self._resolve)
        if msg_type == "r" and f.get(531) == "0":  # OrderMassCancelReport: rejected
            return self._mass_cancel_refused(f.get(11, ""))
        if msg_type in ("3", "j"):
            sent = self._by_seq.get(int(f.get(45) or 0))
            if msg_type == "j" and f.get(379):
                sent = (f.get(372, "D"), self._resolve(f[379]))
            if sent is not None and sent[0] == "q":
                return self._mass_cancel_refused(sent[1])
            event = messages.reject_event(f, ts, sent)
            if event is not None and sent[0] == "D":
                self._live.pop(sent[1], None)
            return event
        if msg_type == "5" and not self._logged_on.is_set() and f.get(58):
            return SessionEvent("rejected", f[58], ts)
        return None

    def _mass_cancel_refused(self, request_id: str) -> None:
        if request_id in self._mass and self._logged_on.is_set():
            symbol = self._mass.pop(request_id)
            self._counts["mass_cancel_fallbacks"] += 1
            for cl_ord_id in [k for k, v in self._live.items() if symbol is None or v.order.symbol == symbol]:
                self.cancel(cl_ord_id)

    def _report(self, f: dict[int, str], ts: int) -> Event | None:
        wire_id, kind = f.get(11, ""), f.get(150)
        for tag in (31, 44):
            if f.get(tag) and not messages.ticks_of(f[tag])[1]:
                self._counts["subtick_prices"] += 1
        if kind == "5" and wire_id in self._reductions:  # our cancel-with-quantity, done as a replace
            self._reductions.discard(wire_id)
            cl_ord_id = self._resolve(wire_id)
            live = self._live.get(cl_ord_id)
            leaves = int(f.get(151) or 0)
            before = live.leaves if live else leaves
            if live:
                live.wire_id, live.leaves = wire_id, leaves
                live.order = replace(live.order, qty=int(f.get(38) or live.order.qty))
            return Cancelled(cl_ord_id, max(before - leaves, 0), f.get(58, "reduced"), ts)
        event = messages.execution_event(f, ts, self._resolve)
        if event is None:
            self._counts["ignored"] += 1
            return None
        if isinstance(event, Replaced):
            self._live.pop(event.orig_cl_ord_id, None)
            new = self._replacing.pop(event.cl_ord_id, None)
            if new is not None and f.get(39) not in messages.FINAL_STATUS:
                self._live[event.cl_ord_id] = _Live(new, event.qty, event.cl_ord_id)
            return event
        live = self._live.get(event.cl_ord_id)
        if live is not None:
            if f.get(151):
                live.leaves = int(f[151])
            if f.get(39) in messages.FINAL_STATUS:
                del self._live[event.cl_ord_id]
        return event


def _default_dir(sender: str, target: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base, "xdpgw", "fix", f"{sender}-{target}")


def from_url(name: str, host: str, port: int, params: dict[str, str]) -> FixConnector:
    """The factory behind ``fix://HOST:PORT?sender=X&target=Y[&version=FIX.4.2][&heartbeat=S][&dir=PATH]``."""
    missing = [k for k in ("sender", "target") if not params.get(k)]
    if missing:
        raise GatewayError(f"fix:// URL for {name} lacks {' and '.join(missing)}",
                           "write it as fix://HOST:PORT?sender=OURCOMPID&target=THEIRCOMPID")
    try:
        heartbeat = int(params.get("heartbeat", "30"))
    except ValueError:
        raise GatewayError(f"heartbeat={params['heartbeat']!r} is not a number of seconds",
                           "use e.g. heartbeat=30") from None
    version = params.get("version", "FIX.4.4")
    engine.data_dictionary(version)  # a clear error now rather than at connect
    reset = params.get("reset", "0")
    if reset not in ("0", "1", "Y", "N"):
        raise GatewayError(f"reset={reset!r} is not 0 or 1", "use reset=1 to start at sequence number 1 on logon")
    mass = params.get("mass_cancel", "each")
    if mass not in ("each", "native"):
        raise GatewayError(f"mass_cancel={mass!r} is not a mass cancel mode",
                           "use mass_cancel=each (one cancel per order, the default) or mass_cancel=native")
    return FixConnector(name, host, port, sender=params["sender"], target=params["target"], version=version,
                        heartbeat=heartbeat, state_dir=params.get("dir"), native_mass_cancel=mass == "native",
                        reset=reset in ("1", "Y"))
