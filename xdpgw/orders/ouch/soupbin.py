"""SoupBinTCP 4.0 framing and session state, sans-IO (bytes in, bytes and events out; no sockets).

Every packet is ``u16 length`` (type byte + payload) · type · payload. :class:`PacketDecoder` splits a
byte stream into packets across partial reads; the ``encode_*`` functions build every packet type;
:class:`Heartbeats` is the idle/silence timer both ends keep; :class:`ClientSession` is the client's
state machine (login with requested session and sequence, heartbeats both ways, sequenced and
unsequenced data, logout, end of session). The server side (``simulator``) uses the same pieces.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

HEADER = struct.Struct(">Hc")

# packet types
DEBUG = b"+"
LOGIN_ACCEPTED = b"A"
LOGIN_REJECTED = b"J"
SEQUENCED = b"S"
SERVER_HEARTBEAT = b"H"
END_OF_SESSION = b"Z"
LOGIN_REQUEST = b"L"
UNSEQUENCED = b"U"
CLIENT_HEARTBEAT = b"R"
LOGOUT_REQUEST = b"O"

SERVER_TYPES = frozenset((DEBUG, LOGIN_ACCEPTED, LOGIN_REJECTED, SEQUENCED, SERVER_HEARTBEAT, END_OF_SESSION))
CLIENT_TYPES = frozenset((DEBUG, LOGIN_REQUEST, UNSEQUENCED, CLIENT_HEARTBEAT, LOGOUT_REQUEST))

REJECT_NOT_AUTHORIZED = "A"
REJECT_SESSION_UNAVAILABLE = "S"
REJECT_TEXT = {REJECT_NOT_AUTHORIZED: "not authorized (user or password)",
               REJECT_SESSION_UNAVAILABLE: "session not available"}

_LOGIN_REQUEST = struct.Struct(">Hc6s10s10s20s")
_LOGIN_ACCEPTED = struct.Struct(">Hc10s20s")


class SoupError(ValueError):
    """A malformed SoupBinTCP packet or a packet that is illegal in the session's state."""


def alpha(text: str, width: int, error: type[ValueError] = SoupError) -> bytes:
    """An alpha field: ASCII, left-justified, space-padded to ``width`` (SoupBinTCP and OUCH alike)."""
    raw = text.encode("ascii")
    if len(raw) > width:
        raise error(f"{text!r} is longer than its {width}-character field")
    return raw.ljust(width, b" ")


def _number(raw: bytes) -> int:
    """An ASCII numeric field, left- or right-justified, space (or NUL) padded; blank is 0."""
    text = raw.strip(b" \x00")
    if not text:
        return 0
    if not text.isdigit():
        raise SoupError(f"numeric field {raw!r} is not a number")
    return int(text)


# --- encoders ------------------------------------------------------------------------------------


def packet(kind: bytes, payload: bytes | memoryview = b"") -> bytes:
    if len(payload) > 0xFFFE:
        raise SoupError(f"payload of {len(payload)} bytes does not fit a SoupBinTCP packet (max 65534)")
    return HEADER.pack(len(payload) + 1, kind) + bytes(payload)


def encode_login_request(user: str, password: str, session: str = "", sequence: int = 0) -> bytes:
    """Requested sequence 0 = from now, 1 = from the start of the session, n = from message n.
    The number is sent left-justified (as Nasdaq's own nasdaq-protocols does); both justifications decode."""
    return _LOGIN_REQUEST.pack(47, LOGIN_REQUEST, alpha(user, 6), alpha(password, 10), alpha(session, 10),
                               alpha(str(sequence), 20))


def encode_login_accepted(session: str, sequence: int) -> bytes:
    """``sequence``: the number of the next sequenced message the client will receive."""
    return _LOGIN_ACCEPTED.pack(31, LOGIN_ACCEPTED, alpha(session, 10), str(sequence).rjust(20).encode())


def encode_login_rejected(reason: str) -> bytes:
    return packet(LOGIN_REJECTED, reason.encode("ascii"))


def encode_sequenced(message: bytes | memoryview) -> bytes:
    return packet(SEQUENCED, message)


def encode_unsequenced(message: bytes | memoryview) -> bytes:
    return packet(UNSEQUENCED, message)


def encode_debug(text: str) -> bytes:
    return packet(DEBUG, text.encode("ascii", "replace"))


SERVER_HEARTBEAT_PACKET = packet(SERVER_HEARTBEAT)
CLIENT_HEARTBEAT_PACKET = packet(CLIENT_HEARTBEAT)
END_OF_SESSION_PACKET = packet(END_OF_SESSION)
LOGOUT_REQUEST_PACKET = packet(LOGOUT_REQUEST)


# --- decoded payloads ----------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class LoginRequest:
    user: str
    password: str
    session: str
    sequence: int  # 0: from now


@dataclass(slots=True, frozen=True)
class LoginAccepted:
    session: str
    sequence: int  # next sequenced message


def parse_login_request(payload: bytes | memoryview) -> LoginRequest:
    if len(payload) != 46:
        raise SoupError(f"Login Request payload of {len(payload)} bytes, expected 46")
    p = bytes(payload)
    return LoginRequest(p[:6].decode("ascii", "replace").strip(), p[6:16].decode("ascii", "replace").strip(),
                        p[16:26].decode("ascii", "replace").strip(), _number(p[26:46]))


def parse_login_accepted(payload: bytes | memoryview) -> LoginAccepted:
    if len(payload) != 30:
        raise SoupError(f"Login Accepted payload of {len(payload)} bytes, expected 30")
    p = bytes(payload)
    return LoginAccepted(p[:10].decode("ascii", "replace").strip(), _number(p[10:30]))


# --- stream decoding -----------------------------------------------------------------------------


class PacketDecoder:
    """Splits a TCP byte stream into ``(type, payload)`` packets, whatever the read boundaries.

    ``feed(data)`` returns the packets completed by ``data``; a partial packet waits for the next call.
    A zero length (no type byte) is malformed: counted in ``malformed`` and skipped. Types outside
    ``allowed`` are returned too (the session decides); payloads are bytes owned by the caller.
    """

    __slots__ = ("_buf", "malformed", "packets")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.malformed = 0
        self.packets = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[bytes, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            if size == 0:
                self.malformed += 1
                pos += 2
                continue
            if end - pos - 2 < size:
                break
            out.append((bytes(buf[pos + 2:pos + 3]), bytes(buf[pos + 3:pos + 2 + size])))
            pos += 2 + size
        if pos:
            del buf[:pos]
        self.packets += len(out)
        return out


# --- timers --------------------------------------------------------------------------------------


class Heartbeats:
    """When to send a heartbeat (``interval`` s after we last sent anything) and when the peer is
    dead (``timeout`` s after we last heard anything). Times are caller-supplied seconds (monotonic)."""

    __slots__ = ("interval", "timeout", "last_sent", "last_heard")

    def __init__(self, interval: float = 1.0, timeout: float = 15.0, now: float = 0.0) -> None:
        if not 0 < interval < timeout:
            raise ValueError(f"heartbeat interval {interval} s must be positive and below the timeout {timeout} s")
        self.interval, self.timeout = interval, timeout
        self.last_sent = self.last_heard = now

    def reset(self, now: float) -> None:
        self.last_sent = self.last_heard = now

    def due(self, now: float) -> bool:
        return now - self.last_sent >= self.interval

    def dead(self, now: float) -> bool:
        return now - self.last_heard >= self.timeout

    def next_deadline(self) -> float:
        """The next time something can happen (a heartbeat to send or the peer declared dead)."""
        return min(self.last_sent + self.interval, self.last_heard + self.timeout)


# --- the client's session ------------------------------------------------------------------------


class ClientState(enum.Enum):
    IDLE = "idle"
    LOGGING_IN = "logging_in"
    ACTIVE = "active"
    ENDED = "ended"  # End of Session: nothing more today
    REJECTED = "rejected"  # Login Rejected
    CLOSED = "closed"  # we logged out, or the peer went silent


@dataclass(slots=True, frozen=True)
class Accepted:
    session: str
    sequence: int


@dataclass(slots=True, frozen=True)
class Refused:
    reason: str  # A or S

    @property
    def text(self) -> str:
        return REJECT_TEXT.get(self.reason, f"reason {self.reason!r}")


@dataclass(slots=True, frozen=True)
class Message:
    """A sequenced (``sequence`` > 0) or unsequenced (``sequence`` == 0) upper-level message."""

    sequence: int
    data: bytes


@dataclass(slots=True, frozen=True)
class Debug:
    text: str


@dataclass(slots=True, frozen=True)
class Ended:
    """End of Session."""


@dataclass(slots=True, frozen=True)
class PeerDead:
    silent_s: float


@dataclass(slots=True, frozen=True)
class CaughtUp:
    """The first Server Heartbeat after Login Accepted: a server heartbeats only when it has had
    nothing to send for its interval, so everything it replayed from the requested sequence number
    is in (``next_sequence``: the next message it will send). Once per connection."""

    next_sequence: int


SessionEvent = Accepted | Refused | Message | Debug | Ended | PeerDead | CaughtUp


class ClientSession:
    """SoupBinTCP client state machine for one TCP connection.

    ``login()`` returns the Login Request to send; ``receive(data, now)`` returns events; ``tick(now)``
    returns the bytes due (a heartbeat) and may add a :class:`PeerDead` event; ``sent(now)`` must be
    called whenever the caller puts its own bytes (unsequenced data) on the wire. ``next_sequence``
    counts sequenced messages from the Login Accepted; ``skip_below`` drops replayed messages the
    caller already has (a server that replays from earlier than asked).
    """

    def __init__(self, user: str, password: str, session: str = "", sequence: int = 0,
                 heartbeat_interval: float = 1.0, timeout: float = 15.0, now: float = 0.0) -> None:
        self.user, self.password = user, password
        self.session = session
        self.requested = sequence
        self.state = ClientState.IDLE
        self.heartbeats = Heartbeats(heartbeat_interval, timeout, now)
        self.decoder = PacketDecoder()
        self.next_sequence = 0  # known once logged in
        self.skipped = 0  # replayed messages dropped as already seen
        self.heartbeats_sent = 0
        self.heartbeats_received = 0
        self.unexpected = 0  # packets illegal here (a client type, data before login, ...)
        self.skip_below = 0  # sequenced messages below this number are dropped (already applied)
        self.caught_up = False  # a Server Heartbeat came after Login Accepted (the replay is over)

    def login(self, now: float) -> bytes:
        if self.state is not ClientState.IDLE:
            raise SoupError(f"login in state {self.state.value}: make a new ClientSession per connection")
        self.state = ClientState.LOGGING_IN
        self.heartbeats.reset(now)
        return encode_login_request(self.user, self.password, self.session, self.requested)

    def logout(self, now: float) -> bytes:
        """The Logout Request (empty when not logged in); the session is closed afterwards."""
        active = self.state is ClientState.ACTIVE
        self.state = ClientState.CLOSED
        self.heartbeats.last_sent = now
        return LOGOUT_REQUEST_PACKET if active else b""

    def sent(self, now: float) -> None:
        self.heartbeats.last_sent = now

    def tick(self, now: float) -> tuple[bytes, list[SessionEvent]]:
        if self.state not in (ClientState.ACTIVE, ClientState.LOGGING_IN):
            return b"", []
        hb = self.heartbeats
        if hb.dead(now):
            self.state = ClientState.CLOSED
            return b"", [PeerDead(now - hb.last_heard)]
        if self.state is ClientState.ACTIVE and hb.due(now):
            hb.last_sent = now
            self.heartbeats_sent += 1
            return CLIENT_HEARTBEAT_PACKET, []
        return b"", []

    def receive(self, data: bytes | bytearray | memoryview, now: float) -> list[SessionEvent]:
        self.heartbeats.last_heard = now
        events: list[SessionEvent] = []
        for kind, payload in self.decoder.feed(data):
            if kind == SEQUENCED and self.state is ClientState.ACTIVE:
                seq = self.next_sequence
                self.next_sequence = seq + 1
                if seq < self.skip_below:
                    self.skipped += 1
                    continue
                events.append(Message(seq, payload))
            elif kind == SERVER_HEARTBEAT:
                self.heartbeats_received += 1
                if self.state is ClientState.ACTIVE and not self.caught_up:
                    self.caught_up = True
                    events.append(CaughtUp(self.next_sequence))
            elif kind == LOGIN_ACCEPTED and self.state is ClientState.LOGGING_IN:
                acc = parse_login_accepted(payload)
                self.state = ClientState.ACTIVE
                self.session = acc.session
                self.next_sequence = acc.sequence
                events.append(Accepted(acc.session, acc.sequence))
            elif kind == LOGIN_REJECTED and self.state is ClientState.LOGGING_IN:
                self.state = ClientState.REJECTED
                events.append(Refused(payload.decode("ascii", "replace")))
            elif kind == END_OF_SESSION:
                self.state = ClientState.ENDED
                events.append(Ended())
            elif kind == DEBUG:
                events.append(Debug(payload.decode("ascii", "replace")))
            elif kind == UNSEQUENCED and self.state is ClientState.ACTIVE:
                events.append(Message(0, payload))
            else:
                self.unexpected += 1
        return events

    @property
    def malformed(self) -> int:
        return self.decoder.malformed
