"""What proves a session change (issue 9, item 0): another session's packets never take over or end the
session we follow; a real change (our own end-of-session, or silence) does, and nothing is lost.

Sans-IO: the sequencer and the feed handler over decoded bursts, time passed in.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from xdpgw.batch import Batch
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.pipeline.summary import accounted
from xdpgw.protocol import itch
from xdpgw.protocol.arbiter import Arbiter
from xdpgw.protocol.decode import decode_payloads
from xdpgw.protocol.moldudp64 import encode_end_of_session, encode_heartbeat, encode_packet
from xdpgw.protocol.sequencer import Sequencer

A, B = "SESSIONA", "SESSIONB"


def pkt(seq: int, session: str = A, n: int = 2) -> bytes:
    return encode_packet(session, seq, [itch.encode_message("D", order_ref=seq + i) for i in range(n)])


def feed_a(first: int, count: int) -> list[bytes]:
    """``count`` packets of session A, two messages each, from sequence ``first``."""
    return [pkt(first + 2 * k) for k in range(count)]


def run(sq: Sequencer, payloads: list[bytes], now: float) -> list[tuple[bytes, int]]:
    out = sq.on_decoded(decode_payloads(payloads), now)
    return list(zip(out.pkt_session[out.pkt].tolist(), out.seq.tolist(), strict=True))


def seqs_of(got: list[tuple[bytes, int]], session: str = A) -> list[int]:
    return [s for sess, s in got if sess.rstrip() == session.encode()]


STRAYS = {
    "end_of_session": [encode_end_of_session(B, 7)],
    "two_data_packets": [pkt(1, B), pkt(3, B)],
    "data_then_end": [pkt(1, B), pkt(3, B), encode_end_of_session(B, 5)],
    "heartbeats": [encode_heartbeat(B, 1), encode_heartbeat(B, 1), encode_heartbeat(B, 2)],
}


@pytest.mark.parametrize("stray", list(STRAYS))
def test_another_session_never_takes_over_or_ends_ours(stray):
    sq = Sequencer(give_up_after=0.002)
    got, t = [], 0.0
    packets = feed_a(1, 40)
    for k, p in enumerate(packets):
        t += 0.01
        got += run(sq, [p] + (STRAYS[stray] if k in (10, 20, 21) else []), t)
        got += run(sq, [], t)
    assert seqs_of(got) == list(range(1, 81)) and not seqs_of(got, B)
    assert sq.session.rstrip() == A.encode() and not sq.ended and sq.stats()["sessions"] == 1
    assert sq.stats()["stale_session"] == 0 and sq.stats()["missing"] == 0
    # B is held while it could still be a successor, then given up once silent
    sq.on_decoded(decode_payloads([pkt(81)]), t + sq.session_timeout)
    assert sq.held()["unconfirmed_session"] == 0
    n_b = sum(len(decode_payloads(STRAYS[stray])) for _ in range(3))
    assert sq.rejected["foreign_session"] == n_b and sq.counters["foreign_session_packets"] == 3 * len(STRAYS[stray])


@pytest.mark.parametrize("stray", ["two_data_packets", "end_of_session", "data_then_end"])
def test_strays_between_the_first_two_packets_cost_nothing(stray):
    sq = Sequencer(give_up_after=0.002)
    got = run(sq, [pkt(1)], 0.0) + run(sq, STRAYS[stray], 0.001)
    for k in range(1, 10):
        got += run(sq, [pkt(1 + 2 * k)], 0.01 * k)
    got += run(sq, [], 1.0)
    assert seqs_of(got) == list(range(1, 21)) and not seqs_of(got, B)
    assert sq.stats()["missing"] == 0 and sq.session.rstrip() == A.encode()


def test_day_rollover_follows_the_new_session_and_refuses_the_old_one():
    sq = Sequencer(give_up_after=0.002)
    got = run(sq, feed_a(1, 5) + [encode_end_of_session(A, 11)], 0.0)
    assert sq.ended and seqs_of(got) == list(range(1, 11))
    got = run(sq, [pkt(1, B)], 0.1)
    assert got == []  # one packet proves nothing yet
    got = run(sq, [pkt(3, B), pkt(5, B)], 0.2)
    assert seqs_of(got, B) == [1, 2, 3, 4, 5, 6] and sq.session.rstrip() == B.encode()
    assert run(sq, [pkt(11)], 0.3) == [] and sq.rejected["stale_session"] == 2
    assert sq.stats()["missing"] == 0 and sq.stats()["sessions"] == 2


def test_failover_by_silence_waits_for_the_timeout_and_loses_nothing():
    sq = Sequencer(give_up_after=0.002, session_timeout=1.0)
    run(sq, feed_a(1, 5), 0.0)
    assert run(sq, [pkt(1, B), pkt(3, B)], 0.5) == []  # A was heard 0.5 s ago: B waits
    assert sq.held()["unconfirmed_session"] == 4
    got = run(sq, [pkt(5, B)], 1.2)  # A silent 1.2 s, B alive: B takes over, from its sequence 1
    assert seqs_of(got, B) == [1, 2, 3, 4, 5, 6] and sq.held()["unconfirmed_session"] == 0
    # A comes back: it is a candidate again and, once B is silent, resumes where it left off
    run(sq, [pkt(11), pkt(13)], 1.3)
    got = run(sq, [pkt(15)], 2.5) + run(sq, [], 2.6)
    assert seqs_of(got) == [11, 12, 13, 14, 15, 16] and sq.stats()["duplicates"] == 0


def test_competing_sessions_at_start_up_the_one_that_keeps_chaining_wins():
    sq = Sequencer(give_up_after=0.002, prove_for=0.05)
    got = run(sq, [pkt(1), pkt(1, B), pkt(3, B), pkt(3)], 0.0)
    assert got == [] and sq.session is None  # both chain: wait for one to keep going
    got += run(sq, [pkt(5)], 0.03)
    got += run(sq, [pkt(7)], 0.06)
    assert seqs_of(got) == list(range(1, 9)) and not seqs_of(got, B)


@pytest.mark.parametrize("a_first", [True, False])
def test_competing_sessions_tied_in_one_burst_the_first_heard_wins(a_first):
    """Regression (found by the property below): A's packet 1, B's heartbeat at 1 and B's packet 1, A's
    packet 3, all in one burst at one instant. Both chained at the same time; the tie went to the session
    heard *last* (the candidates' order), so B was followed and A's messages held. With evidence equal
    (B's packet 3 carries what A's does), the session heard first wins, whichever it is, once the contest
    is over (neither kept going ``prove_for``: once both are silent ``session_timeout``); the other is
    held, never delivered, then given up."""
    a, b = [pkt(1), pkt(3)], [encode_heartbeat(B, 1), pkt(1, B), pkt(3, B)]
    burst = [a[0], *b[:2], a[1], b[2]] if a_first else [b[0], a[0], b[1], a[1], b[2]]
    sq = Sequencer(give_up_after=0.002, prove_for=0.05)
    got = run(sq, burst, 0.0)
    assert got == [] and sq.session is None  # both chain: wait
    assert sq.poll(0.2) is not None and sq.session is None  # neither kept going: still wait
    out = sq.poll(sq.session_timeout)
    got += list(zip(out.pkt_session[out.pkt].tolist(), out.seq.tolist(), strict=True))
    ours, other = (A, B) if a_first else (B, A)
    assert seqs_of(got, ours) == [1, 2, 3, 4] and not seqs_of(got, other) and sq.session.rstrip() == ours.encode()
    assert sq.held()["unconfirmed_session"] == 4
    assert sq.choice["reason"] == "heard_first" and sq.stats()["session_contests"] == 1
    if a_first:  # ours goes on delivering in order, the other is given up once silent
        got = run(sq, [pkt(5)], 1.1) + run(sq, [pkt(7)], 1.2)
        assert seqs_of(got) == [5, 6, 7, 8] and not seqs_of(got, B)
        assert sq.held()["unconfirmed_session"] == 0 and sq.rejected["foreign_session"] == 4
    acc = sq.accounts()
    assert acc["received"] == acc["delivered"] + sum(acc["rejected"].values()) + sum(acc["held"].values())


def replay(sq: Sequencer | Arbiter, arrivals: list[tuple[float, int, bytes]], until: float) -> list[tuple[bytes, int]]:
    """Packets ``(time, line, payload)`` in time order, polled every 5 ms (as the gateway polls) until ``until``;
    the accounting identity holds after every call."""
    q = sq.sequencer if isinstance(sq, Arbiter) else sq
    got, t, k = [], 0.0, 0
    while t <= until:
        while k < len(arrivals) and arrivals[k][0] <= t:
            when, line, p = arrivals[k]
            dec = decode_payloads([p])
            out = sq.on_decoded(dec, line, when) if isinstance(sq, Arbiter) else sq.on_decoded(dec, when)
            got += list(zip(out.pkt_session[out.pkt].tolist(), out.seq.tolist(), strict=True))
            k += 1
        out = sq.poll(t)
        got += list(zip(out.pkt_session[out.pkt].tolist(), out.seq.tolist(), strict=True))
        acc = q.accounts()
        assert acc["received"] == acc["delivered"] + acc["duplicates"] + sum(acc["rejected"].values()) + sum(
            acc["held"].values()), acc
        t = round(t + 0.005, 6)
    return got


STRAY_BURST = [(0.001, 0, pkt(1, B)), (0.002, 0, pkt(3, B)), (0.003, 0, pkt(5, B))]  # 3 chained, then silent
SPARSE = {  # our feed (A) at start-up, sparse, with a stray's burst of 3 chained packets (6 messages) in it
    "every_30ms": [(0.03 * k, 0, pkt(1 + 2 * k)) for k in range(10)] + STRAY_BURST,
    "slow_heartbeats": [(0.0, 0, pkt(1))] + [(0.4 * k, 0, encode_heartbeat(A, 3)) for k in (1, 2, 3, 4)]
    + [(2.0, 0, pkt(3))] + STRAY_BURST,
    "window_straddles_quiet": [(0.0, 0, pkt(1)), (0.01, 0, pkt(3))] + [(0.3 + 0.01 * k, 0, pkt(5 + 2 * k))
                                                                         for k in range(5)]
    + [(0.002, 0, pkt(1, B)), (0.012, 0, pkt(3, B)), (0.022, 0, pkt(5, B))],  # it kept going longer than ours
    "idle_then_data": [(0.4 * k, 0, encode_heartbeat(A, 1)) for k in range(5)]  # heard, not proven: idle
    + [(2.0 + 0.03 * k, 0, pkt(1 + 2 * k)) for k in range(3)] + STRAY_BURST,
}
REASONS = {"idle_then_data": "the others fell silent"}  # by then; otherwise ours kept going, the stray did not


@pytest.mark.parametrize("shape", list(SPARSE))
def test_a_burst_of_strays_never_beats_a_sparse_feed_at_start_up(shape):
    """A stray sending 3 chained packets inside the proving window beat our feed when it was sparse (it had
    more chained packets when the window closed): the stray was followed and ours held, then given up.
    Now, while sessions compete, none is followed until one kept going ``prove_for`` (a burst never does),
    and evidence is not a packet count: ours is followed, the stray's messages are held (exactly 6) and,
    once it is silent ``session_timeout``, rejected as ``foreign_session`` (exactly 6); nothing of ours
    is lost."""
    arrivals = sorted(SPARSE[shape], key=lambda a: a[0])
    sq = Sequencer(give_up_after=0.002, prove_for=0.05)
    got = replay(sq, arrivals, arrivals[-1][0] + 0.05)
    want = sorted({s for _, _, p in arrivals if p[:1] == b"S" and p[:8] == A.encode()
                   for s in decode_payloads([p]).seq.tolist()})
    assert seqs_of(got) == want and not seqs_of(got, B) and sq.session.rstrip() == A.encode()
    assert sq.stats()["sessions"] == 1 and sq.stats()["missing"] == 0 and sq.stats()["session_contests"] == 1
    assert sq.choice["reason"] == REASONS.get(shape, "kept_going") and sq.choice["evidence"][B]["messages"] == 6
    if sq.candidates:  # still held while it could be a successor ...
        assert sq.held()["unconfirmed_session"] == 6 and sq.rejected["foreign_session"] == 0
        sq.poll(arrivals[-1][0] + sq.session_timeout + 0.1)
    assert sq.held()["unconfirmed_session"] == 0 and sq.rejected["foreign_session"] == 6  # ... then given up
    assert sq.counters["foreign_session_packets"] == 3


def test_a_busy_feed_held_through_a_contest_loses_nothing():
    """Regression: one stray packet at start-up makes a contest, and our busy feed is held until it has
    kept going ``prove_for``; a candidate kept at most 64 bursts, so the rest of ours was rejected as a
    foreign session and then missing (74 of 400 messages here). Held bursts now merge (16 at a time, each
    message copied a few times at most): nothing is lost, and a broken copy among them stays broken."""
    sq = Sequencer(give_up_after=0.002, prove_for=0.05)
    got = run(sq, [pkt(1)], 0.0) + run(sq, [pkt(1, B)], 0.0001)
    for k in range(1, 300):
        cut = [pkt(3 + 2 * k)[:-3]] if k % 50 == 0 else []  # a cut copy of the next packet, ahead of it
        got += run(sq, [pkt(1 + 2 * k), *cut], 0.0001 * k)
        held = sq.candidates.get(A.encode().ljust(10))
        assert held is None or len(held.parts) < 2 * 16
    assert sq.session is None and sq.held()["unconfirmed_session"] == 600 + 5 + 2  # 5 cut copies (1 each), B
    got += run(sq, [pkt(601)], 0.06)  # ours has kept going prove_for: followed
    assert seqs_of(got) == list(range(1, 603)) and sq.session.rstrip() == A.encode()
    assert sq.stats()["missing"] == 0 and sq.rejected["foreign_session"] == 0 and sq.stats()["duplicates"] == 5


def test_the_session_heard_on_both_lines_beats_a_stray_on_one():
    """Two sessions that both keep going: the one on both configured lines (the feed is published on A and
    B) is followed, though the stray on line B alone carries more messages in more chained packets."""
    ours = [(0.02 * k + 0.001 * line, line, pkt(1 + 2 * k)) for k in range(6) for line in (0, 1)]
    stray = [(0.01 * k, 1, pkt(1 + 3 * k, B, 3)) for k in range(12)]
    arb = Arbiter(Sequencer(give_up_after=0.002, prove_for=0.05))
    got = replay(arb, sorted(ours + stray, key=lambda a: a[0]), 0.2)
    assert seqs_of(got) == list(range(1, 13)) and not seqs_of(got, B)
    assert arb.sequencer.choice["reason"] == "lines" and arb.sequencer.stats()["duplicates"] == 12


def test_a_stray_on_both_lines_that_falls_silent_never_holds_ours_back():
    """A stray's burst on both lines ranks above ours (line A only, line B down), but it did not keep going:
    once it has been silent ``session_timeout`` it drops out of the contest and ours is followed, with
    everything it sent meanwhile (held, not lost)."""
    ours = [(0.02 * k, 0, pkt(1 + 2 * k)) for k in range(80)]
    stray = [(0.001 * k + 0.0001 * line, line, pkt(1 + 2 * k, B)) for k in range(3) for line in (0, 1)]
    arb = Arbiter(Sequencer(give_up_after=0.002, prove_for=0.05))
    got = replay(arb, sorted(ours + stray, key=lambda a: a[0]), 1.6)
    sq = arb.sequencer
    assert seqs_of(got) == list(range(1, 161)) and not seqs_of(got, B) and sq.session.rstrip() == A.encode()
    assert sq.choice["reason"] == "the others fell silent" and sq.choice["evidence"][B]["lines"] == 2
    assert sq.stats()["missing"] == 0 and sq.rejected["foreign_session"] == 12  # its copies on both lines


def test_a_followed_session_never_switches_on_start_up_contention_alone():
    """Ours alone proved itself and is followed; another session then keeps going with far more evidence
    (both lines, more messages): ours is never left while it is heard (a packet every 0.5 s, under the
    silence of ``session_timeout``); the other waits, bounded, and is never delivered."""
    ours = [(0.0, 0, pkt(1)), (0.001, 0, pkt(3))] + [(0.5 * k, 0, pkt(3 + 2 * k)) for k in range(1, 5)]
    other = [(0.01 * k + 0.002, k % 2, pkt(1 + 4 * k, B, 4)) for k in range(150)]
    arb = Arbiter(Sequencer(give_up_after=0.002, prove_for=0.05))
    got = replay(arb, sorted(ours + other, key=lambda a: a[0]), 2.0)
    sq = arb.sequencer
    assert seqs_of(got) == list(range(1, 13)) and not seqs_of(got, B) and sq.session.rstrip() == A.encode()
    assert sq.stats()["sessions"] == 1 and sq.choice["reason"] == "alone" and sq.stats()["session_contests"] == 0


REPEATS = {
    "one_heartbeat_three_times": [encode_heartbeat(B, 5)] * 3,
    "data_then_its_start_twice": [pkt(1, B), encode_heartbeat(B, 1), encode_heartbeat(B, 1)],
    "heartbeat_data_heartbeat_copies": [pkt(1, B), encode_heartbeat(B, 3), pkt(1, B), encode_heartbeat(B, 3)],
    "stale_heartbeats": [pkt(5, B), encode_heartbeat(B, 3), encode_heartbeat(B, 1)],
}


@pytest.mark.parametrize("stray", list(REPEATS))
def test_repeated_heartbeats_prove_nothing_at_start_up(stray):
    """A copy proves nothing, and a heartbeat repeated (or behind what was seen) is no progress: a stray
    sending heartbeats must not out-chain our feed at start-up (it did: three heartbeats beat two packets)."""
    sq = Sequencer(give_up_after=0.002, prove_for=0.05)
    got = run(sq, [pkt(1), *REPEATS[stray], pkt(3)], 0.0)
    out = sq.poll(sq.session_timeout)  # neither kept going prove_for: decided once both fell silent
    got += list(zip(out.pkt_session[out.pkt].tolist(), out.seq.tolist(), strict=True))
    assert seqs_of(got) == [1, 2, 3, 4] and not seqs_of(got, B) and sq.session.rstrip() == A.encode()


def test_a_heartbeat_after_new_data_still_proves_a_session():
    """What a one-packet session shows before it goes idle (its data, then its heartbeat) still proves it."""
    sq = Sequencer(give_up_after=0.002)
    run(sq, feed_a(1, 2) + [encode_end_of_session(A, 5)], 0.0)
    got = run(sq, [pkt(1, B), pkt(1, B), encode_heartbeat(B, 3)], 0.1)
    assert seqs_of(got, B) == [1, 2] and sq.session.rstrip() == B.encode()


# --- the property: any hostile mix of other sessions' packets costs ours nothing -----------------------
def seqs_of_a(out) -> list[int]:
    """The sequences delivered, which must all be of session A."""
    sessions = set(out.pkt_session[out.pkt].tolist())
    assert sessions <= {A.encode().ljust(10)}, sessions
    return out.seq.tolist()


@st.composite
def hostile_feed(draw: st.DrawFn) -> list[tuple[float, list[bytes]]]:
    n = draw(st.integers(2, 30))
    good = feed_a(1, n)
    bursts: list[list[bytes]] = [[good[0]]]
    for i, p in enumerate(good[1:], 1):
        burst = [p]
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["eos", "data", "hb", "dup", "broken"]))
            other = draw(st.sampled_from([B, "STRAY2", "X"]))
            seq = draw(st.integers(1, 2 * n + 5))
            stray = {"eos": encode_end_of_session(other, seq), "data": pkt(seq, other),
                     "hb": encode_heartbeat(other, seq), "dup": draw(st.sampled_from(good[:i])),
                     "broken": draw(st.sampled_from(good[:i + 1]))[:-3]}[kind]  # copies of packets already sent
            burst.insert(draw(st.integers(0, len(burst))), stray)
        if draw(st.booleans()) or not bursts:
            bursts.append(burst)
        else:
            bursts[-1] += burst
    dt = draw(st.sampled_from([0.001, 0.01, 0.1]))
    return [(k * dt, b) for k, b in enumerate(bursts)]


@settings(max_examples=150, deadline=None)
@given(hostile_feed())
@example([(0.0, [pkt(1), encode_heartbeat(B, 1), pkt(1, B), pkt(3)])])  # a tie at start-up went to B
def test_any_mix_of_other_sessions_costs_nothing_and_everything_is_accounted_for(case):
    clock = [0.0]
    feed = FeedHandler(clock=lambda: clock[0], lines=1)
    got: list[int] = []
    for t, burst in case:
        clock[0] = t
        out = feed.on_batch(Batch.from_payloads(burst))
        got += [] if out is None else seqs_of_a(out)
        st_ = feed.stats()
        assert accounted(st_) == st_["received"], st_
    clock[0] = case[-1][0] + feed.sequencer.session_timeout + 0.2  # a short contest ends once all fall silent
    out = feed.poll()
    got += [] if out is None else seqs_of_a(out)
    want = sorted({s for _, b in case for p in b for s in decode_payloads([p]).seq.tolist()
                   if p[:10] == A.encode().ljust(10) and len(p) == len(pkt(1))})
    assert got == want, (sorted(set(want) - set(got)), sorted(set(got) - set(want)), feed.sequencer.stats())
    assert feed.sequencer.session.rstrip() == A.encode()
    st_ = feed.stats()
    assert accounted(st_) == st_["received"] and st_["missing"] == 0, st_


# --- the property: at start-up, strays never beat our feed that keeps going ----------------------------
@st.composite
def start_up(draw: st.DrawFn) -> tuple[list, list, float]:
    """Our feed on both lines from t=0 (data and heartbeats, gaps up to 0.6 s: sparse but never silent
    ``session_timeout``, at least ``prove_for`` long), and one or two strays' bursts of 1-3 chained packets
    on line A, B or both, starting anywhere in our first 0.1 s."""
    t, seq, ours = 0.0, 1, []
    while True:
        data = seq < 5 or draw(st.booleans())
        p = pkt(seq) if data else encode_heartbeat(A, seq)
        ours += [(round(t + 0.0005 * line, 6), line, p) for line in (0, 1)]
        seq += 2 * data
        if t >= 0.06 and not draw(st.booleans()):
            break
        t = round(t + draw(st.sampled_from([0.03, 0.2, 0.6, 0.01, 0.005, 0.001])), 6)
    strays = []
    for name in draw(st.lists(st.sampled_from([B, "STRAY2"]), min_size=1, max_size=2, unique=True)):
        t0, s0 = min(draw(st.sampled_from([0.0001, 0.001, 0.02, 0.045, 0.1])), t - 0.0001), draw(st.integers(1, 20))
        lines = draw(st.sampled_from([(0,), (1,), (0, 1)]))
        strays += [(round(t0 + 0.002 * k + 0.0001 * line, 6), line, pkt(s0 + 2 * k, name))
                   for k in range(draw(st.integers(1, 3))) for line in lines]
    return ours, strays, t


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start_up())
def test_strays_at_start_up_never_beat_our_feed_that_keeps_going(case):
    ours, strays, t_end = case
    arb = Arbiter(Sequencer(give_up_after=0.002, prove_for=0.05))
    got = replay(arb, sorted(ours + strays, key=lambda a: a[0]), t_end + 0.99)  # ours never silent 1 s
    sq = arb.sequencer
    want = sorted({s for _, _, p in ours for s in decode_payloads([p]).seq.tolist()})
    assert sq.session.rstrip() == A.encode() and [s for _, s in got] == want, (sq.choice, got)
    n_strays = sum(len(decode_payloads([p])) for _, _, p in strays)
    assert sq.rejected["foreign_session"] + sq.held()["unconfirmed_session"] == n_strays
    assert sq.stats()["missing"] == 0 and sq.stats()["sessions"] == 1
