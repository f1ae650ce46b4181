"""The O(1) in-order path (``Decoded.facts``) and the lossy line's path (a burst all beyond the
high-water mark) must behave exactly like the general path.

Each scenario runs twice: as decoded (shortcuts wherever they apply) and with ``facts`` cleared and
``Sequencer.shortcuts`` off (general path only); deliveries, counters and state must agree, on gaps,
duplicates, reorders, heartbeats, end of session, session changes and malformed packets.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import builders
from tests.helpers import ReplayReceiver
from xdpgw.batch import Batch
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.protocol import itch
from xdpgw.protocol.arbiter import Arbiter
from xdpgw.protocol.decode import Decoded, decode_payloads
from xdpgw.protocol.moldudp64 import HEADER_SIZE, encode_end_of_session, encode_heartbeat, encode_packet
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.tools.synth import synth_packets


def pkt(seq: int, n: int, session: str = "FAST") -> bytes:
    return builders.pkt(seq, n, session, kinds="DAAA")  # every fourth message a delete


def scenario(seed: int) -> list[list[bytes]]:
    """Bursts of an in-order feed with random drops, repeats, swaps, heartbeats and junk."""
    rng = np.random.default_rng(seed)
    packets, seq, session = [], 1, "FAST"
    for _ in range(120):
        r = rng.random()
        if r < 0.02:  # session change: sequences restart at 1
            packets.append(encode_end_of_session(session, seq))
            session, seq = "FAST2", 1
            continue
        if r < 0.06:
            packets.append(encode_heartbeat(session, seq))
            continue
        n = int(rng.integers(1, 4))
        packets.append(pkt(seq, n, session))
        seq += n
    out: list[bytes] = []
    for p in packets:
        r = rng.random()
        if r < 0.05:
            continue  # dropped
        if r < 0.10:
            out += [p, p]  # repeated
        elif r < 0.13 and out:
            out.insert(len(out) - 1, p)  # swapped with the previous one
        elif r < 0.15:
            out += [b"junk", p]
        else:
            out.append(p)
    bursts, i = [], 0
    while i < len(out):
        k = int(rng.integers(1, 6))
        bursts.append(out[i : i + k])
        i += k
    return bursts


def _slow(dec: Decoded) -> Decoded:
    dec.facts = None
    return dec


def delivered(dec: Decoded | None) -> list[tuple]:
    if dec is None:
        return []
    return [(m["seq"], m["type"], m.get("order_ref")) for m in dec.messages()]


def test_simple_bursts_carry_facts_and_derived_ones_do_not():
    dec = decode_payloads([pkt(5, 2), encode_heartbeat("FAST", 7), pkt(7, 1)])
    f = dec.facts
    assert f is not None and (f.session, f.start, f.end, f.heartbeats) == (b"FAST      ", 5, 8, 1)
    assert decode_payloads([pkt(5, 2), pkt(8, 1)]).facts is None  # a hole
    assert decode_payloads([pkt(5, 2), pkt(5, 2)]).facts is None  # a repeat
    assert decode_payloads([pkt(1, 1), b"junk"]).facts is None  # a short packet
    assert decode_payloads([pkt(1, 1), pkt(2, 1, "OTHER")]).facts is None  # two sessions
    assert decode_payloads([encode_packet("FAST", 1, [b"Zz"])]).facts is None  # an invalid message
    assert decode_payloads([pkt(1, 2)[:-3]]).facts is None  # a cut block
    assert dec.take(np.arange(2)).facts is None and Decoded.concat([dec, dec]).facts is None


@pytest.mark.parametrize("seed", range(12))
def test_sequencer_fast_path_equals_general_path(seed):
    fast, slow = Sequencer(give_up_after=0.05), Sequencer(give_up_after=0.05)
    slow.shortcuts = False
    for k, burst in enumerate(scenario(seed)):
        now = k * 0.01
        a = fast.on_decoded(decode_payloads(burst), now)
        b = slow.on_decoded(_slow(decode_payloads(burst)), now)
        assert delivered(a) == delivered(b)
        assert fast.last_accepted == slow.last_accepted
        assert (fast.stats(), fast.next, fast.high, fast.sure, fast.ended) == \
            (slow.stats(), slow.next, slow.high, slow.sure, slow.ended)
        assert fast.holes == slow.holes
    assert delivered(fast.poll(99.0)) == delivered(slow.poll(99.0))
    assert fast.stats() == slow.stats()


@pytest.mark.parametrize("seed", range(6))
def test_arbiter_fast_path_equals_general_path(seed):
    fast, slow = Arbiter(Sequencer(give_up_after=0.05)), Arbiter(Sequencer(give_up_after=0.05))
    slow.sequencer.shortcuts = False
    lines = [scenario(seed), scenario(seed + 100)]
    for k in range(max(map(len, lines))):
        for line in (0, 1):
            if k < len(lines[line]):
                burst, now = lines[line][k], k * 0.01
                a = fast.on_decoded(decode_payloads(burst), line, now)
                b = slow.on_decoded(_slow(decode_payloads(burst)), line, now)
                assert delivered(a) == delivered(b)
        assert fast.stats() == slow.stats() and fast.sequencer.stats() == slow.sequencer.stats()


@pytest.mark.parametrize("lines", [1, 2])
def test_feed_handler_fast_path_equals_general_path(lines):
    t = [0.0]
    fast = FeedHandler(clock=lambda: t[0], lines=lines, locates=None)
    slow = FeedHandler(clock=lambda: t[0], lines=2)
    slow.sequencer.shortcuts = False
    decode = slow.decoder.decode
    slow.decoder.decode = lambda batch: _slow(decode(batch))
    for k, burst in enumerate(scenario(42)):
        t[0] = k * 0.01
        assert delivered(fast.on_batch(Batch.from_payloads(burst))) == \
            delivered(slow.on_batch(Batch.from_payloads(burst)))
    t[0] += 10
    assert delivered(fast.poll()) == delivered(slow.poll())
    assert fast.stats() == slow.stats()
    assert fast.detail() == slow.detail()


def test_synthetic_small_bursts_take_the_fast_path_and_deliver_everything():
    feed, seq, total = FeedHandler(lines=1, first_seq=1, clock=lambda: 0.0), 1, 0
    for i in range(20):
        batch, codes = synth_packets(2, first_seq=seq, seed=i)
        dec = feed.decoder.decode(batch)
        assert dec.facts is not None and (dec.facts.start, dec.facts.end) == (seq, seq + len(codes))
        out = feed.on_batch(batch)
        assert list(out.seq) == list(range(seq, seq + len(codes)))
        seq += len(codes)
        total += len(codes)
    st = feed.stats()
    assert st["messages"] == total and st["gaps"] == st["duplicates"] == st["missing"] == 0


# --- the C fast path (xdpgw.protocol.fastpath) against the general path, property-tested ---------------

_STOCKS = ("AB", "CD", "EF")


def itch_msg(seq: int, kind: int) -> bytes:
    """A message of a small universe: directory entries (R) that assign locates, adds by symbol, deletes
    by locate, a system event (market-wide)."""
    loc = 1 + seq % 4
    if kind == 0:
        return itch.encode_message("R", locate=loc, stock=_STOCKS[seq % 3])
    if kind == 1:
        return itch.encode_message("A", locate=loc, order_ref=seq, side="B", shares=seq, stock=_STOCKS[seq % 3],
                                   price=seq)
    if kind == 2:
        return itch.encode_message("D", locate=loc, order_ref=seq)
    return itch.encode_message("S", locate=0, event_code="O")


@st.composite
def feeds(draw) -> list[list[bytes]]:
    """Bursts of a feed with everything that knocks it off the common case: drops, repeats, swaps, junk,
    cut blocks, unknown types, heartbeats, a foreign session's packets, ends of session (the session
    changes), a far jump, and retransmitted copies arriving late."""
    ops = draw(st.lists(st.tuples(st.integers(0, 199), st.integers(1, 4), st.integers(0, 3)), min_size=8,
                        max_size=80))
    session, seq, packets, sent = "FEED1", 1, [], []
    for op, n, kind in ops:
        if op < 3:
            packets.append(encode_end_of_session(session, seq))
            session, seq = f"FEED{len(packets) % 7 + 2}", 1
        elif op < 9:
            packets.append(encode_heartbeat(session, seq))
        elif op < 12:
            packets.append(pkt(1 + op, 1, "OTHER"))  # a foreign session
        elif op < 14:
            packets.append(encode_packet(session, seq + (1 << 21), [itch_msg(seq, kind)]))  # far ahead
        elif op < 16 and sent:
            packets.append(sent[op % len(sent)])  # a retransmitted copy, late
        else:
            p = encode_packet(session, seq, [itch_msg(seq + i, (kind + i) % 4) for i in range(n)])
            seq += n
            sent.append(p)
            if op < 19:
                packets.append(p[:-3])  # a cut block
                continue
            if op < 21:
                bad = bytearray(p)
                bad[HEADER_SIZE + 2] = ord("?")  # an unknown type
                packets.append(bytes(bad))
                continue
            if op < 26:
                continue  # dropped
            packets.append(p)
            if op < 30:
                packets.append(p)  # repeated
            elif op < 33 and len(packets) > 1:
                packets[-1], packets[-2] = packets[-2], packets[-1]  # swapped
            elif op < 35:
                packets.append(b"junk")
    return draw(cut_into_bursts(packets))


@st.composite
def cut_into_bursts(draw, packets: list[bytes]) -> list[list[bytes]]:
    """``packets`` in order, cut into bursts of 1-6."""
    cuts = draw(st.lists(st.integers(1, 6), min_size=len(packets), max_size=len(packets)))
    bursts, i = [], 0
    for k in cuts:
        if i >= len(packets):
            break
        bursts.append(packets[i : i + k])
        i += k
    return bursts


def contents(dec) -> list[tuple]:
    """What a delivery carries, byte for byte: (sequence, session, record bytes) per message."""
    if dec is None:
        return []
    return [(int(dec.seq[i]), bytes(dec.pkt_session[dec.pkt[i]]), rec.tobytes()) for i, rec in dec.records()]


def pair(symbols, lines: int, retransmit: bool):
    t = [0.0]
    fast = FeedHandler(clock=lambda: t[0], lines=lines, symbols=symbols)
    slow = FeedHandler(clock=lambda: t[0], lines=lines, symbols=symbols, fast=False)
    slow.sequencer.shortcuts = False  # the general path only, as the reference
    decode = slow.decoder.decode
    slow.decoder.decode = lambda batch: _slow(decode(batch))
    for f in (fast, slow):
        f.sequencer.retransmit = retransmit  # requests queue up in sequencer.actions (no client)
    return t, fast, slow


def same_state(fast: FeedHandler, slow: FeedHandler) -> None:
    assert fast.stats() == slow.stats()
    assert fast.detail() == slow.detail()
    assert fast.sequencer.actions == slow.sequencer.actions
    assert (fast.sequencer.high, fast.sequencer.sure) == (slow.sequencer.high, slow.sequencer.sure)
    assert np.array_equal(fast.subscription.wanted, slow.subscription.wanted)


_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(feeds(), st.sampled_from([None, ["AB"], ["CD", "EF"]]), st.booleans())
def test_c_fast_path_equals_general_path(bursts, symbols, retransmit):
    t, fast, slow = pair(symbols, 1, retransmit)
    for k, burst in enumerate(bursts):
        t[0] = k * 0.001
        batch = Batch.from_payloads(burst, 1000 + k)
        assert contents(fast.on_batch(batch)) == contents(slow.on_batch(batch))
        if k % 5 == 0:
            same_state(fast, slow)
    t[0] += 10
    assert contents(fast.poll()) == contents(slow.poll())
    same_state(fast, slow)


@_SETTINGS
@given(feeds(), feeds(), st.sampled_from([None, ["AB"]]))
def test_c_fast_path_equals_general_path_on_ab_lines(line_a, line_b, symbols):
    t, fast, slow = pair(symbols, 2, False)
    for k in range(max(len(line_a), len(line_b))):
        for line, bursts in ((0, line_a), (1, line_b)):
            if k < len(bursts):
                t[0] = k * 0.001
                batch = Batch.from_payloads(bursts[k])
                assert contents(fast.on_batch(batch, line)) == contents(slow.on_batch(batch, line))
    t[0] += 10
    assert contents(fast.poll()) == contents(slow.poll())
    same_state(fast, slow)


def test_the_c_fast_path_takes_in_order_bursts_of_the_confirmed_session_only():
    feed = FeedHandler(lines=1, clock=lambda: 0.0)
    assert feed.on_batch(Batch.from_payloads([pkt(1, 2)])) is None  # one packet: not believed yet
    assert not feed.fast.armed
    assert len(feed.on_batch(Batch.from_payloads([pkt(3, 1)]))) == 3  # confirmed: both delivered
    assert feed.fast.armed
    out = feed.on_batch(Batch.from_payloads([pkt(4, 2), encode_heartbeat("FAST", 6), pkt(6, 1)]))
    assert type(out).__name__ == "InOrderBurst" and list(out.seq) == [4, 5, 6]
    assert feed.on_batch(Batch.from_payloads([pkt(7, 1, "OTHER")])) is None  # foreign: general path
    assert feed.fast.armed  # ... which holds it while it may prove itself; ours stays on the fast path
    assert type(feed.on_batch(Batch.from_payloads([pkt(7, 1)]))).__name__ == "InOrderBurst"
    stats = feed.stats()
    assert (stats["messages"], stats["received"], feed.sequencer.next) == (7, 8, 8)
    assert feed.sequencer.counters["heartbeats"] == 1 and stats["held"]


def test_steady_state_allocates_nothing():
    """A million in-order bursts through the C fast path: no Python object is left behind."""
    import sys

    from xdpgw._native._xsk import ffi

    feed = FeedHandler(lines=1, clock=lambda: 0.0, symbols=["AB"])
    payloads = [pkt(s, 1) for s in (1, 2)]
    feed.on_batch(Batch.from_payloads(payloads))  # confirms the session: armed
    frame = np.frombuffer(bytearray(pkt(3, 1)), np.uint8).copy()
    offs, lens, ts = np.zeros(1, np.int64), np.full(1, len(frame), np.uint32), np.ones(1, np.uint64)
    c = [ffi.from_buffer(t, a) for t, a in zip(("uint8_t[]", "int64_t[]", "uint32_t[]", "uint64_t[]"),
                                               (frame, offs, lens, ts), strict=True)]
    seq_at = frame[10:18].view(">u8")
    run = feed.on_burst

    def bursts(n: int, first: int) -> None:
        for s in range(first, first + n):
            seq_at[0] = s  # the next packet of the feed, in place
            run(c[0], c[1], c[2], c[3], 1)

    bursts(1000, 3)
    before = sys.getallocatedblocks()
    bursts(1_000_000, 1003)
    assert sys.getallocatedblocks() - before <= 2
    assert feed.fast.armed and feed.stats()["messages"] == 1_000_000 + 1002


# --- the cases the fast path now serves too: A/B copies, a retransmission client, held sessions --------

@st.composite
def ab_copies(draw) -> tuple[list[list[bytes]], list[list[bytes]]]:
    """Two lines carrying copies of one feed, each losing, repeating and delaying its own packets (line B
    is mostly behind line A: the usual duplicate burst)."""
    packets = [p for burst in draw(feeds()) for p in burst]
    lines = []
    for _ in (0, 1):
        keep = draw(st.lists(st.integers(0, 19), min_size=len(packets), max_size=len(packets)))
        line = [p for p, k in zip(packets, keep, strict=True) if k]  # 0: lost on this line
        lines.append(draw(cut_into_bursts(line)))
    return lines[0], lines[1]


def interleave(line_a: list, line_b: list, lag: int) -> list[tuple[int, list[bytes]]]:
    """(line, burst) in arrival order: line B's bursts ``lag`` bursts behind line A's."""
    out = [(0, b) for b in line_a]
    for k, b in enumerate(line_b):
        out.insert(min(len(out), 2 * k + lag), (1, b))
    return out


@_SETTINGS
@given(ab_copies(), st.integers(0, 3), st.sampled_from([None, ["AB"]]))
def test_c_fast_path_equals_general_path_on_ab_copies(lines, lag, symbols):
    t, fast, slow = pair(symbols, 2, False)
    for k, (line, burst) in enumerate(interleave(*lines, lag)):
        t[0] = k * 0.001
        batch = Batch.from_payloads(burst)
        assert contents(fast.on_batch(batch, line)) == contents(slow.on_batch(batch, line))
        if k % 5 == 0:
            same_state(fast, slow)
    t[0] += 10
    assert contents(fast.poll()) == contents(slow.poll())
    same_state(fast, slow)


def test_line_b_copies_behind_the_front_are_counted_in_c():
    """A clean A/B feed: line A's bursts are delivered and line B's copies counted as duplicates, all
    without leaving the fast path."""
    feed = FeedHandler(lines=2, clock=lambda: 0.0)
    bursts = [[pkt(s, 2)] for s in range(1, 41, 2)]
    for line in (0, 1):  # both lines confirm the session through the general path
        feed.on_batch(Batch.from_payloads(bursts[0] + bursts[1]), line)
    fast_before = feed.fast.s.bursts
    for b in bursts[2:]:
        assert len(feed.on_batch(Batch.from_payloads(b), 0)) == 2
        assert feed.on_batch(Batch.from_payloads(b), 1) is None
        assert feed.fast.armed  # nothing fell back to the general path
    assert feed.fast.s.bursts - fast_before == 2 * len(bursts[2:])
    st_ = feed.stats()
    assert (st_["messages"], st_["duplicates"]) == (40, 40)
    assert [ln["first"] for ln in st_["lines"]] == [40, 0] and [ln["messages"] for ln in st_["lines"]] == [40, 40]


class _Server:
    """The test's MoldUDP64 re-request server on loopback: answers what the client asked for (and, when
    told, an old packet unasked), each answer read back only once it is on the client's socket."""

    def __init__(self, history: list[bytes]) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.history = history

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def serve(self, client, extra: int | None) -> None:
        import select

        from xdpgw.protocol.moldudp64 import HEADER_SIZE as H

        answers = []
        while True:
            try:
                req, addr = self.sock.recvfrom(64)
            except BlockingIOError:
                break
            first, n = int.from_bytes(req[10:18], "big"), int.from_bytes(req[18:20], "big")
            for p in self.history:  # the first packet of that session holding the first sequence asked for
                if len(p) >= H and p[:10] == req[:10] and int.from_bytes(p[10:18], "big") <= first < \
                        int.from_bytes(p[10:18], "big") + max(1, int.from_bytes(p[18:20], "big")) and n:
                    answers.append((p, addr))
                    break
        if extra is not None and self.history:
            answers.append((self.history[extra % len(self.history)], ("127.0.0.1", client.rx.port)))
        for p, addr in answers[-1:]:  # one per round: then it is certainly there before the next burst
            self.sock.sendto(p, addr)
            assert select.select([client], [], [], 5)[0], "the answer did not arrive"

    def close(self) -> None:
        self.sock.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds(), st.data())
def test_c_fast_path_equals_general_path_with_a_retransmission_client(bursts, data):
    """A real client on loopback: requests go out, answers (and unasked old copies) come back between
    bursts; the clock sometimes jumps past a held session's give-up time."""
    t = [0.0]
    history = [p for b in bursts for p in b]
    servers = [_Server(history), _Server(history)]
    fast, slow = (FeedHandler(clock=lambda: t[0], lines=1, retransmit=("127.0.0.1", s.port), give_up_after=0.02,
                              fast=f) for s, f in zip(servers, (True, False), strict=True))
    try:
        slow.sequencer.shortcuts = False
        for k, burst in enumerate(bursts):
            t[0] += data.draw(st.sampled_from([0.001, 0.001, 0.001, 0.03, 1.5]))
            batch = Batch.from_payloads(burst, 1000 + k)
            assert contents(fast.on_batch(batch)) == contents(slow.on_batch(batch))
            extra = data.draw(st.one_of(st.none(), st.integers(0, 1000)))
            for s, f in zip(servers, (fast, slow), strict=True):
                s.serve(f.client, extra)
            if data.draw(st.booleans()):
                assert contents(fast.poll()) == contents(slow.poll())
            same_state(fast, slow)
        t[0] += 10
        assert contents(fast.poll()) == contents(slow.poll())
        same_state(fast, slow)
    finally:
        for closing in (fast, slow, *servers):
            closing.close()


def test_with_a_retransmission_client_in_order_bursts_stay_fast_until_an_answer_waits():
    import select
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        feed = FeedHandler(lines=1, clock=lambda: 0.0, retransmit=server.getsockname())
        try:
            feed.on_batch(Batch.from_payloads([pkt(1, 1), pkt(2, 1)]))  # confirms the session
            assert feed.fast.armed and feed.poll() is None
            bursts = feed.fast.s.bursts
            assert type(feed.on_batch(Batch.from_payloads([pkt(3, 1)]))).__name__ == "InOrderBurst"
            assert feed.fast.s.bursts == bursts + 1
            server.sendto(pkt(1, 1), ("127.0.0.1", feed.client.rx.port))  # a late answer: a duplicate
            assert select.select([feed.client], [], [], 5)[0]
            assert not feed.fast.idle(0.0)  # an idle poll would read it
            out = feed.on_batch(Batch.from_payloads([pkt(4, 1)]))  # the general path reads it first
            assert type(out).__name__ != "InOrderBurst" and list(out.seq) == [4]
            assert feed.stats()["duplicates"] == 1 and feed.client.received == 1 and feed.fast.armed
        finally:
            feed.close()


def test_the_first_session_is_proven_in_c_as_the_sequencer_proves_it():
    """Start-up: a lone first packet is held in C (the sequencer would hold it), the next burst that continues
    it proves the session and both are delivered in one C call; read in between, the sequencer has it."""
    feed = FeedHandler(lines=1, clock=lambda: 0.0)
    assert feed.fast.s.proving and feed.on_batch(Batch.from_payloads([pkt(1, 2)])) is None
    assert feed.fast.s.hold_len and not feed.sequencer.candidates  # held in C, nothing handed over yet
    out = feed.on_batch(Batch.from_payloads([pkt(3, 1), pkt(4, 2)]))
    assert type(out).__name__ == "InOrderBurst" and list(out.seq) == [1, 2, 3, 4, 5]
    assert list(out.pkt_seq) == [1, 3, 4] and contents(out)[0][1] == b"FAST      "
    st_ = feed.stats()
    assert (st_["received"], st_["messages"], feed.sequencer.session, feed.sequencer.next) == (5, 5, b"FAST      ", 6)
    assert feed.sequencer.counters["sessions"] == 1 and feed.fast.armed and not feed.fast.s.proving

    feed = FeedHandler(lines=1, clock=lambda: 0.0)
    feed.on_batch(Batch.from_payloads([pkt(1, 2)]))
    assert feed.stats()["held"] == {"unconfirmed_session": 2}  # a reader sees it held: the sequencer holds it now
    assert feed.sequencer.candidates and not feed.fast.s.hold_len and not feed.fast.s.proving
    out = feed.on_batch(Batch.from_payloads([pkt(3, 1)]))  # the general path proves it, as before
    assert type(out).__name__ != "InOrderBurst" and list(out.seq) == [1, 2, 3]


@_SETTINGS
@given(feeds(), st.sampled_from([None, 1, 2]), st.sampled_from([None, ["AB"]]),
       st.lists(st.sampled_from(["", "", "stats", "poll"]), min_size=8, max_size=8),
       st.sampled_from([[], [encode_heartbeat("FEED1", 1)], [pkt(1, 1, "OTHER")], [b"junk"]]))
def test_c_proves_the_first_session_as_the_general_path_does(bursts, first_seq, symbols, reads, lead):
    """From start-up, bursts of one packet or several (the first maybe a heartbeat, a foreign session, junk),
    with the feed's first sequence given or not, and readers (stats, idle polls) between bursts."""
    t = [0.0]
    fast = FeedHandler(clock=lambda: t[0], lines=1, symbols=symbols, first_seq=first_seq)
    slow = FeedHandler(clock=lambda: t[0], lines=1, symbols=symbols, first_seq=first_seq, fast=False)
    slow.sequencer.shortcuts = False
    decode = slow.decoder.decode
    slow.decoder.decode = lambda batch: _slow(decode(batch))
    for k, burst in enumerate(([lead] if lead else []) + bursts):
        t[0] = k * 0.001
        batch = Batch.from_payloads(burst, 1000 + k)
        assert contents(fast.on_batch(batch)) == contents(slow.on_batch(batch))
        what = reads[k % len(reads)]
        if what == "stats":
            same_state(fast, slow)
        elif what == "poll":
            assert contents(fast.poll()) == contents(slow.poll())
    t[0] += 10
    assert contents(fast.poll()) == contents(slow.poll())
    same_state(fast, slow)


def test_a_held_session_keeps_the_fast_path_until_it_is_due_to_be_given_up():
    t = [0.0]
    feed = FeedHandler(lines=1, clock=lambda: t[0])
    feed.on_batch(Batch.from_payloads([pkt(1, 1), pkt(2, 1)]))
    feed.on_batch(Batch.from_payloads([pkt(1, 1, "OTHER")]))  # held: it may prove itself
    assert feed.fast.armed and feed.sequencer.candidates
    t[0] = 0.5
    assert type(feed.on_batch(Batch.from_payloads([pkt(3, 1)]))).__name__ == "InOrderBurst"
    assert feed.fast.idle(0.5) and not feed.fast.idle(1.0)  # at 1.0 s the general path gives it up
    t[0] = 1.0
    assert feed.poll() is None
    assert not feed.sequencer.candidates and feed.stats()["rejected"] == {"foreign_session": 1}
    assert feed.fast.armed and feed.fast.s.expires == 0


class _TwoLines(ReplayReceiver):
    """A receiver replaying bursts that carry both lines (as the XDP receiver's one socket gets them), each
    payload's UDP destination port in ``dports``: what ``Gateway(line_b_port=…)`` reads, on both paths."""

    PORTS = (9001, 9002)

    def __init__(self, bursts: list[list[tuple[int, bytes]]]) -> None:
        from xdpgw._native._xsk import ffi

        self.bursts, self.k = bursts, 0
        self.buf = np.zeros(1 << 16, np.uint8)
        self.offs, self.lens, self.ts = np.zeros(64, np.int64), np.zeros(64, np.uint32), np.zeros(64, np.uint64)
        self.dports = np.zeros(64, np.uint16)  # what every receiver fills (Batch.dports)
        self.c_arrays = tuple(ffi.from_buffer(t, a) for t, a in zip(
            ("uint8_t[]", "int64_t[]", "uint32_t[]", "uint64_t[]", "uint16_t[]"),
            (self.buf, self.offs, self.lens, self.ts, self.dports), strict=True))

    def recv_raw(self, max_packets: int = 256, timeout: float | None = 0.0) -> int:
        if self.k >= len(self.bursts):
            return 0
        burst, pos = self.bursts[self.k], 0
        self.k += 1
        for i, (line, p) in enumerate(burst):
            self.buf[pos : pos + len(p)] = np.frombuffer(p, np.uint8)
            self.offs[i], self.lens[i], self.ts[i], self.dports[i] = pos, len(p), 1000 + self.k, self.PORTS[line]
            pos += len(p)
        return len(burst)



@_SETTINGS
@given(ab_copies(), st.integers(0, 3), st.sampled_from([None, ["AB"]]))
def test_gateway_line_b_fast_lane_equals_general_path(lines, lag, symbols):
    """``--line-b`` on one receiver: the fast lane splits each burst by port in C (line A, then line B,
    through the fast path) and delivers what the general route (split_lines + on_batch) delivers."""
    from xdpgw.pipeline.gateway import Gateway

    arrivals = interleave(*lines, lag)
    bursts = [[(line, p) for line, b in arrivals[i : i + 2] for p in b] for i in range(0, len(arrivals), 2)]
    bursts = [b for b in bursts if b]
    total = sum(map(len, bursts))
    runs = []
    for fast in (True, False):
        got: list = []
        feed = FeedHandler(clock=lambda: 0.0, lines=2, symbols=symbols, fast=fast)
        gw = Gateway([_TwoLines(bursts)], [lambda dec, got=got: got.append(contents(dec))], feed=feed, status=None,
                     line_b_port=_TwoLines.PORTS[1])
        summary = gw.run(count=total, duration=2)
        assert not summary["handler_errors"], summary.get("last_handler_error")
        runs.append((got, {k: v for k, v in summary.items() if k not in ("duration_s", "pps", "ns_per_packet",
                                                                          "fast_path_packets", "latency_ns")},
                     summary.get("latency_ns", {}).get("count", 0), summary["fast_path_packets"]))
    (got_f, sum_f, lat_f, fp_f), (got_s, sum_s, lat_s, fp_s) = runs
    assert got_f == got_s
    assert sum_f == sum_s
    assert lat_f == lat_s == total
    assert fp_s == 0 and 0 <= fp_f <= total
