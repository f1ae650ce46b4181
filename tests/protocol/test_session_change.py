"""What proves a session change (issue 9, item 0): another session's packets never take over or end the
session we follow; a real change (our own end-of-session, or silence) does, and nothing is lost.

Sans-IO: the sequencer and the feed handler over decoded bursts, time passed in.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdpgw.batch import Batch
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.pipeline.summary import accounted
from xdpgw.protocol import itch
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


# --- the property: any hostile mix of other sessions' packets costs ours nothing -----------------------
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
def test_any_mix_of_other_sessions_costs_nothing_and_everything_is_accounted_for(case):
    clock = [0.0]
    feed = FeedHandler(clock=lambda: clock[0], lines=1)
    got: list[int] = []
    for t, burst in case:
        clock[0] = t
        out = feed.on_batch(Batch.from_payloads(burst))
        got += [] if out is None else out.seq.tolist()
        st_ = feed.stats()
        assert accounted(st_) == st_["received"], st_
    clock[0] = case[-1][0] + 0.2
    out = feed.poll()
    got += [] if out is None else out.seq.tolist()
    want = sorted({s for _, b in case for p in b for s in decode_payloads([p]).seq.tolist()
                   if p[:10] == A.encode().ljust(10) and len(p) == len(pkt(1))})
    assert got == want, (sorted(set(want) - set(got)), sorted(set(got) - set(want)), feed.sequencer.stats())
    assert feed.sequencer.session.rstrip() == A.encode()
    st_ = feed.stats()
    assert accounted(st_) == st_["received"] and st_["missing"] == 0, st_
