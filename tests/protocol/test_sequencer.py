"""Sequencer state machine: pure logic over decoded bursts, time passed in."""

import numpy as np

from tests.builders import pkt
from xdpgw.protocol import itch
from xdpgw.protocol.decode import decode_payloads
from xdpgw.protocol.moldudp64 import encode_end_of_session, encode_heartbeat, encode_packet
from xdpgw.protocol.sequencer import Sequencer, gap_scan


def feed(sq: Sequencer, payloads: list[bytes], now: float = 0.0) -> list[int]:
    return [int(x) for x in sq.on_decoded(decode_payloads(payloads), now).seq]


def refs(dec) -> list[int]:
    return [int(x) for x in dec.by_type["D"]["order_ref"]] if "D" in dec.by_type else []


def test_gap_scan():
    before, high, gap = gap_scan(np.array([1, 3, 10, 5]), np.array([3, 5, 12, 6]), 1)
    assert list(before) == [1, 3, 5, 12] and high == 12 and list(gap) == [0, 0, 5, 0]


def test_in_order_fast_path_and_duplicates():
    sq = Sequencer()
    assert feed(sq, [pkt(1, 3), pkt(4, 2)]) == [1, 2, 3, 4, 5]
    assert feed(sq, [pkt(4, 2), pkt(6, 1)]) == [6]
    st = sq.stats()
    assert st["duplicates"] == 2 and st["gaps"] == 0 and st["delivered"] == 6 and sq.next == 7


def test_gap_without_recovery_is_skipped_and_late_packet_counted():
    sq = Sequencer()
    assert feed(sq, [pkt(1, 2), pkt(5, 2), pkt(7, 1)]) == [1, 2, 5, 6, 7]
    st = sq.stats()
    assert st["gaps"] == 1 and st["gap_messages"] == 2 and st["missing"] == 2
    assert feed(sq, [pkt(3, 2)]) == []
    assert sq.stats()["late"] == 2 and sq.stats()["duplicates"] == 0


def test_reordering_within_window_is_delivered_in_order():
    sq = Sequencer(give_up_after=0.5)
    assert feed(sq, [pkt(1, 2), pkt(5, 2)], now=0.0) == [1, 2]
    assert [(h.start, h.end) for h in sq.holes] == [(3, 5)]
    out = sq.on_decoded(decode_payloads([pkt(3, 2)]), 0.1)
    assert list(out.seq) == [3, 4, 5, 6] and refs(out) == [3, 4, 5, 6]
    st = sq.stats()
    assert st["recovered"] == 2 and st["missing"] == 0 and st["gaps"] == 1 and not sq.holes


def test_retransmission_requests_rate_limited_retried_then_given_up():
    sq = Sequencer(retransmit=True, give_up_after=1.0, retry_interval=0.2)
    feed(sq, [pkt(1, 1), pkt(4, 1), pkt(8, 2), encode_heartbeat("S1", 10)], now=0.0)
    reqs = sq.take_actions()
    assert [(r.first, r.count) for r in reqs] == [(2, 2), (5, 3)]
    assert reqs[0].session == b"S1        "
    assert list(sq.poll(0.1).seq) == [] and sq.take_actions() == []
    sq.poll(0.25)
    assert [(r.first, r.count) for r in sq.take_actions()] == [(2, 2), (5, 3)]
    # the first hole is answered by retransmission; the second never is
    assert list(sq.on_decoded(decode_payloads([pkt(2, 2)]), 0.3).seq) == [2, 3, 4]
    assert list(sq.poll(0.9).seq) == []
    assert list(sq.poll(1.01).seq) == [8, 9]
    st = sq.stats()
    assert st["missing"] == 3 and st["recovered"] == 2 and st["buffered"] == 0 and not sq.holes


def test_heartbeat_proves_liveness_and_reveals_a_trailing_gap():
    sq = Sequencer(retransmit=True, give_up_after=5.0)
    assert feed(sq, [pkt(1, 2)], now=1.0) == []  # one packet does not make a session yet
    assert feed(sq, [encode_heartbeat("S1", 3)], now=2.0) == [1, 2]  # the heartbeat confirms it
    assert sq.last_heard == 2.0 and sq.silence(2.5) == 0.5 and sq.stats()["gaps"] == 0 and sq.stats()["heartbeats"] == 1
    feed(sq, [encode_heartbeat("S1", 6)], now=3.0)
    assert [(r.first, r.count) for r in sq.take_actions()] == [(3, 3)]
    assert feed(sq, [pkt(3, 3)], now=3.1) == [3, 4, 5]


def test_buffer_bound_forces_give_up():
    sq = Sequencer(retransmit=True, give_up_after=60.0, max_buffered=4, first_seq=1)
    feed(sq, [pkt(1, 1), pkt(3, 3)])
    assert sq.stats()["buffered"] == 3
    assert feed(sq, [pkt(6, 2)]) == [3, 4, 5, 6, 7]
    assert sq.stats()["missing"] == 1


def test_end_of_session_and_session_change():
    sq = Sequencer(give_up_after=1.0)
    feed(sq, [pkt(1, 2, "DAY1"), pkt(5, 1, "DAY1")], now=0.0)
    # DAY2 is believed at its second packet; then DAY1's (corroborated) hole is given up and its buffered
    # message still delivered, in order, before DAY2's
    assert feed(sq, [encode_end_of_session("DAY1", 6), pkt(1, 2, "DAY2")], now=0.1) == []
    assert sq.session == b"DAY1      " and sq.ended and sq.stats()["candidate_sessions"] == 1
    out = sq.on_decoded(decode_payloads([pkt(3, 1, "DAY2")]), 0.2)
    assert list(out.seq) == [5, 1, 2, 3] and sq.session == b"DAY2      " and not sq.ended
    assert sq.stats()["missing"] == 2 and sq.stats()["sessions"] == 2 and sq.stats()["end_of_session"] == 1
    assert feed(sq, [pkt(7, 1, "DAY1")]) == [] and sq.stats()["stale_session"] == 1
    feed(sq, [encode_end_of_session("DAY2", 4)])
    assert sq.ended


def test_invalid_messages_do_not_count_as_received():
    """An undecodable message stays missing (a later good copy fills it); what follows it in its packet
    is not trusted (the block lengths may lie) and is not announced either."""
    sq = Sequencer(give_up_after=1.0, first_seq=1)
    bad = encode_packet("S1", 1, [itch.encode_message("D", order_ref=1), b"Zjunk",
                                  itch.encode_message("D", order_ref=3)])
    out = sq.on_decoded(decode_payloads([bad, pkt(4), pkt(5)]), 0.0)
    assert list(out.seq) == [1] and sq.next == 2 and [(h.start, h.end) for h in sq.holes] == [(2, 4)]
    st = sq.stats()
    assert st["untrusted"] == 1 and st["delivered"] == 1 and st["duplicates"] == 0
    good = encode_packet("S1", 1, [itch.encode_message("D", order_ref=k) for k in (1, 2, 3)])
    out = sq.on_decoded(decode_payloads([good]), 0.1)
    assert list(out.seq) == [2, 3, 4, 5] and refs(out) == [2, 3, 4, 5]
    assert sq.stats()["duplicates"] == 1 and sq.stats()["missing"] == 0


def test_many_shuffled_packets_deliver_each_sequence_once_in_order():
    rng = np.random.default_rng(5)
    packets = [pkt(1 + 3 * i, 3) for i in range(200)]
    arrivals = packets + [packets[i] for i in rng.integers(0, 200, 60)]
    order = rng.permutation(len(arrivals))
    sq = Sequencer(give_up_after=10.0, first_seq=1)  # joined at the start: nothing before 1 is lost
    got: list[int] = []
    for k in range(0, len(order), 16):
        got += feed(sq, [arrivals[i] for i in order[k : k + 16]], now=k * 0.001)
    assert got == list(range(1, 601))
    assert sq.stats()["duplicates"] == 180 and sq.stats()["missing"] == 0


def test_new_session_expects_sequence_one():
    sq = Sequencer()
    feed(sq, [pkt(50, 1, "DAY1"), pkt(51, 1, "DAY1")])
    # DAY1 went silent (no end-of-session seen): after session_timeout DAY2 takes over
    assert feed(sq, [pkt(3, 1, "DAY2"), pkt(4, 1, "DAY2")], now=sq.session_timeout + 1) == [3, 4]
    assert sq.stats()["gaps"] == 1 and sq.stats()["missing"] == 2


def test_requests_go_to_the_oldest_holes_first_and_are_capped():
    sq = Sequencer(retransmit=True, give_up_after=9.0, max_holes_requested=2, first_seq=1)
    feed(sq, [pkt(2), pkt(4), pkt(6), pkt(8)])
    assert [(r.first, r.count) for r in sq.take_actions()] == [(1, 1), (3, 1)]
