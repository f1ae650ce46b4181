"""The O(1) in-order path (``Decoded.facts``) and the lossy line's path (a burst all beyond the
high-water mark) must behave exactly like the general path.

Each scenario runs twice: as decoded (shortcuts wherever they apply) and with ``facts`` cleared and
``Sequencer.shortcuts`` off (general path only); deliveries, counters and state must agree, on gaps,
duplicates, reorders, heartbeats, end of session, session changes and malformed packets.
"""

import numpy as np
import pytest

from tests import builders
from xdpgw.feed import FeedHandler
from xdpgw.protocol.arbiter import Arbiter
from xdpgw.protocol.decode import Decoded, decode_payloads
from xdpgw.protocol.moldudp64 import encode_end_of_session, encode_heartbeat, encode_packet
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.protocol.synth import synth_packets
from xdpgw.transport.base import Batch


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
