"""Every message taken in is accounted for, at any moment (issue 9, item 1)::

    received == delivered + duplicates + sum(rejected) + sum(held)          (the sequencer)
    received == messages + filtered + duplicates + sum(rejected) + sum(held)  (the feed handler's summary)

``received`` counts every block the decoder split out of a packet, valid or not; ``missing`` counts
sequence numbers never received and is not part of it. Checked after every call, on hostile mixes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xdpgw.batch import Batch
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.pipeline.summary import accounted
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import encode_end_of_session, encode_heartbeat, encode_packet


def msg(seq: int) -> bytes:
    if seq % 3:
        return itch.encode_message("D", locate=1 + seq % 2, order_ref=seq)
    return itch.encode_message("R", locate=1 + seq % 2, stock="AAPL" if seq % 2 else "MSFT")


@st.composite
def packet(draw: st.DrawFn) -> bytes:
    session = draw(st.sampled_from(["MAIN", "MAIN", "MAIN", "OTHER", "DAY2"]))
    seq = draw(st.one_of(st.integers(1, 60), st.sampled_from([0, 2**64 - 1, 2**63, 5_000_000])))
    n = draw(st.integers(0, 4))
    kind = draw(st.sampled_from(["data"] * 6 + ["heartbeat", "eos", "cut", "flip", "lie", "junk"]))
    if kind == "heartbeat":
        return encode_heartbeat(session, seq)
    if kind == "eos":
        return encode_end_of_session(session, seq)
    if kind == "junk":
        return draw(st.binary(min_size=0, max_size=60))
    p = bytearray(encode_packet(session, seq, [msg((seq + i) % 1000) for i in range(max(n, 1))]))
    if kind == "cut":
        p = p[: draw(st.integers(0, len(p) - 1))]
    elif kind == "flip":
        p[draw(st.integers(20, len(p) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif kind == "lie":
        p[18:20] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    return bytes(p)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.lists(packet(), min_size=1, max_size=8), st.integers(0, 1),
                          st.sampled_from([0.0, 0.001, 0.01, 0.5, 2.0])), min_size=1, max_size=25),
       st.booleans(), st.integers(1, 2))
def test_every_message_received_is_accounted_for_at_any_moment(bursts, subscribe, lines):
    t = [0.0]
    feed = FeedHandler(clock=lambda: t[0], lines=lines, symbols=["AAPL"] if subscribe else None)
    for payloads, line, dt in bursts:
        t[0] += dt
        feed.on_batch(Batch.from_payloads(payloads), min(line, lines - 1))
        s, a = feed.stats(), feed.sequencer.accounts()
        assert accounted(s) == s["received"], s
        assert a["received"] == a["delivered"] + a["duplicates"] + sum(a["rejected"].values()) \
            + sum(a["held"].values()), a
        feed.poll()
        s = feed.stats()
        assert accounted(s) == s["received"], s
    t[0] += 10.0
    feed.poll()
    s = feed.stats()
    assert accounted(s) == s["received"] and s["received"] == sum(
        len(feed.decoder.decode(Batch.from_payloads(p))) for p, _, _ in bursts), s
