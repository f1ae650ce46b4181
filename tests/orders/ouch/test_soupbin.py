"""SoupBinTCP 4.0: every packet type, streaming decode over any read boundaries, the client's session."""

import pytest

from xdpgw.orders.ouch import soupbin as sb

PACKETS = [
    (sb.encode_debug("hello"), sb.DEBUG, b"hello"),
    (sb.encode_login_accepted("S1", 42), sb.LOGIN_ACCEPTED, b"S1".ljust(10) + b"42".rjust(20)),
    (sb.encode_login_rejected("A"), sb.LOGIN_REJECTED, b"A"),
    (sb.encode_sequenced(b"payload"), sb.SEQUENCED, b"payload"),
    (sb.SERVER_HEARTBEAT_PACKET, sb.SERVER_HEARTBEAT, b""),
    (sb.END_OF_SESSION_PACKET, sb.END_OF_SESSION, b""),
    (sb.encode_login_request("U1", "pw", "S1", 7), sb.LOGIN_REQUEST,
     b"U1".ljust(6) + b"pw".ljust(10) + b"S1".ljust(10) + b"7".ljust(20)),
    (sb.encode_unsequenced(b"O..."), sb.UNSEQUENCED, b"O..."),
    (sb.CLIENT_HEARTBEAT_PACKET, sb.CLIENT_HEARTBEAT, b""),
    (sb.LOGOUT_REQUEST_PACKET, sb.LOGOUT_REQUEST, b""),
]


def test_every_packet_type_is_covered():
    assert {kind for _, kind, _ in PACKETS} == sb.SERVER_TYPES | sb.CLIENT_TYPES


@pytest.mark.parametrize("raw, kind, payload", PACKETS, ids=lambda p: repr(p)[:12])
def test_packet_round_trip(raw, kind, payload):
    assert int.from_bytes(raw[:2], "big") == len(payload) + 1
    assert sb.PacketDecoder().feed(raw) == [(kind, payload)]


def test_login_payloads_parse_both_justifications():
    req = sb.parse_login_request(sb.encode_login_request("U1", "pw", "", 12)[3:])
    assert req == sb.LoginRequest("U1", "pw", "", 12)
    right = b"U1".ljust(6) + b"pw".ljust(10) + b" " * 10 + b"12".rjust(20)
    assert sb.parse_login_request(right) == req
    blank = b"U1".ljust(6) + b"pw".ljust(10) + b" " * 30
    assert sb.parse_login_request(blank).sequence == 0  # blank = from now
    acc = sb.parse_login_accepted(b"S1".ljust(10) + b"9".ljust(20))  # left-justified, as nasdaq-protocols
    assert acc == sb.LoginAccepted("S1", 9)
    with pytest.raises(sb.SoupError):
        sb.parse_login_accepted(b"S1".ljust(10) + b"x9".ljust(20))
    with pytest.raises(sb.SoupError):
        sb.parse_login_request(b"short")


def test_partial_reads_any_split():
    stream = b"".join(raw for raw, _, _ in PACKETS) * 3
    want = [(k, p) for _, k, p in PACKETS] * 3
    for chunk in (1, 2, 3, 5, 7, 64):
        dec = sb.PacketDecoder()
        got = []
        for i in range(0, len(stream), chunk):
            got += dec.feed(memoryview(stream)[i:i + chunk])
        assert got == want and dec.pending == 0 and dec.packets == len(want)


def test_zero_length_is_counted_and_skipped():
    dec = sb.PacketDecoder()
    assert dec.feed(b"\x00\x00" + sb.SERVER_HEARTBEAT_PACKET) == [(sb.SERVER_HEARTBEAT, b"")]
    assert dec.malformed == 1


def test_oversized_payload_refused():
    with pytest.raises(sb.SoupError):
        sb.packet(sb.UNSEQUENCED, bytes(70000))


def logged_in(seq=1, now=0.0) -> sb.ClientSession:
    s = sb.ClientSession("U1", "pw", "", seq, heartbeat_interval=1.0, timeout=15.0, now=now)
    s.login(now)
    assert s.receive(sb.encode_login_accepted("S1", seq or 5), now) == [sb.Accepted("S1", seq or 5)]
    return s


def test_client_login_and_sequenced_numbering():
    s = sb.ClientSession("U1", "pw", "", 3)
    assert s.login(0.0) == sb.encode_login_request("U1", "pw", "", 3)
    assert s.state is sb.ClientState.LOGGING_IN
    # data before the Login Accepted is illegal: counted, ignored
    assert s.receive(sb.encode_sequenced(b"early"), 0.0) == [] and s.unexpected == 1
    evs = s.receive(sb.encode_login_accepted("S1", 3) + sb.encode_sequenced(b"a") + sb.encode_sequenced(b"b")
                    + sb.encode_unsequenced(b"u") + sb.encode_debug("dbg"), 0.1)
    assert evs == [sb.Accepted("S1", 3), sb.Message(3, b"a"), sb.Message(4, b"b"), sb.Message(0, b"u"),
                   sb.Debug("dbg")]
    assert s.next_sequence == 5 and s.session == "S1"
    with pytest.raises(sb.SoupError):
        s.login(0.2)


def test_client_drops_replay_below_what_it_has():
    s = sb.ClientSession("U1", "pw", "", 3)
    s.skip_below = 3
    s.login(0.0)
    evs = s.receive(sb.encode_login_accepted("S1", 1) + b"".join(sb.encode_sequenced(bytes([i])) for i in range(4)), 0)
    assert evs[1:] == [sb.Message(3, b"\x02"), sb.Message(4, b"\x03")] and s.skipped == 2


def test_client_refused():
    s = sb.ClientSession("U1", "bad")
    s.login(0.0)
    evs = s.receive(sb.encode_login_rejected("A"), 0.0)
    assert evs == [sb.Refused("A")] and evs[0].text.startswith("not authorized")
    assert s.state is sb.ClientState.REJECTED


def test_client_heartbeats_after_idle_and_not_before():
    s = logged_in(now=0.0)
    assert s.tick(0.5) == (b"", [])
    s.sent(0.6)  # our own data counts as traffic
    assert s.tick(1.5) == (b"", [])
    assert s.tick(1.6) == (sb.CLIENT_HEARTBEAT_PACKET, [])
    assert s.tick(1.7) == (b"", []) and s.heartbeats_sent == 1
    s.receive(sb.SERVER_HEARTBEAT_PACKET, 10.0)
    assert s.heartbeats_received == 1


def test_client_declares_a_silent_peer_dead():
    s = logged_in(now=0.0)
    s.receive(sb.SERVER_HEARTBEAT_PACKET, 5.0)
    s.sent(19.0)
    assert s.tick(19.9) == (b"", [])
    out, evs = s.tick(20.0)
    assert out == b"" and evs == [sb.PeerDead(15.0)] and s.state is sb.ClientState.CLOSED
    assert s.tick(30.0) == (b"", [])


def test_login_timeout_is_a_dead_peer():
    s = sb.ClientSession("U1", "pw", heartbeat_interval=0.1, timeout=0.5)
    s.login(0.0)
    assert s.tick(0.3) == (b"", [])  # no heartbeats before login
    assert s.tick(0.5)[1] == [sb.PeerDead(0.5)]


def test_end_of_session_and_logout():
    s = logged_in()
    assert s.receive(sb.END_OF_SESSION_PACKET, 1.0) == [sb.Ended()] and s.state is sb.ClientState.ENDED
    s2 = logged_in()
    assert s2.logout(1.0) == sb.LOGOUT_REQUEST_PACKET and s2.state is sb.ClientState.CLOSED
    assert s2.logout(1.0) == b""


def test_heartbeat_settings_checked():
    with pytest.raises(ValueError):
        sb.Heartbeats(interval=2.0, timeout=1.0)
