"""A/B arbitration and subscriptions (pure logic)."""

from functools import partial

import numpy as np
import pytest

from tests import builders
from xdpgw.protocol import itch
from xdpgw.protocol.arbiter import Arbiter
from xdpgw.protocol.decode import decode_payloads
from xdpgw.protocol.moldudp64 import encode_packet
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.protocol.subscribe import Subscription

pkt = partial(builders.pkt, session="AB")


def run(arb: Arbiter, line: int, seqs: list[int], now: float = 0.0) -> list[int]:
    return [int(x) for x in arb.on_decoded(decode_payloads([pkt(s) for s in seqs]), line, now).seq]


def test_each_sequence_once_from_the_first_line_and_per_line_stats():
    arb = Arbiter(Sequencer(give_up_after=1.0))
    got = run(arb, 0, [1, 2, 4])  # A misses 3
    got += run(arb, 1, [1, 2, 3, 4, 5])  # B covers it and is first for 5
    got += run(arb, 0, [5, 6], now=0.1)
    got += run(arb, 1, [6, 8], now=0.2)  # 7 missing on both lines
    got += run(arb, 0, [8], now=0.3)
    got += [int(x) for x in arb.poll(2.0).seq]
    assert got == [1, 2, 3, 4, 5, 6, 8]
    a, b = arb.stats()
    assert (a["first"], b["first"]) == (4, 3)
    assert a["first_share"] == pytest.approx(4 / 7)
    assert (a["gaps"], a["gap_messages"], a["covered"], a["lost_on_both"]) == (2, 2, 1, 1)
    assert (b["gaps"], b["gap_messages"], b["covered"], b["lost_on_both"]) == (1, 1, 0, 1)
    st = arb.sequencer.stats()
    assert st["missing"] == 1 and st["duplicates"] == 6


def test_random_losses_on_two_lines_never_duplicate_or_reorder():
    rng = np.random.default_rng(11)
    seqs = np.arange(1, 2001)
    lost_a = rng.random(2000) < 0.05
    lost_b = rng.random(2000) < 0.05
    lost_a[-1] = lost_b[-1] = False  # a hole is only known once a later sequence shows it
    arb = Arbiter(Sequencer(give_up_after=0.05, first_seq=1))
    got: list[int] = []
    for k in range(0, 2000, 50):
        sl = slice(k, k + 50)
        got += run(arb, 0, list(seqs[sl][~lost_a[sl]]), now=k * 0.001)
        got += run(arb, 1, list(seqs[sl][~lost_b[sl]]), now=k * 0.001)
    got += [int(x) for x in arb.poll(10.0).seq]
    both = lost_a & lost_b
    assert got == [int(s) for s in seqs[~both]]
    a, b = arb.stats()
    assert a["lost_on_both"] == b["lost_on_both"] == int(both.sum())
    assert arb.sequencer.stats()["missing"] == int(both.sum())
    assert a["covered"] == int((lost_a & ~lost_b).sum()) and b["covered"] == int((lost_b & ~lost_a).sum())


def _dir(locate: int, stock: str) -> bytes:
    return itch.encode_message("R", locate=locate, stock=stock, market_category="Q")


def test_subscription_learns_locates_from_stock_directory():
    msgs = [
        itch.encode_message("S", event_code="O"),
        _dir(7, "AAPL"), _dir(9, "MSFT"),
        itch.encode_message("A", locate=7, order_ref=1, stock="AAPL", price=1),
        itch.encode_message("A", locate=9, order_ref=2, stock="MSFT", price=1),
        itch.encode_message("D", locate=7, order_ref=1),
        itch.encode_message("D", locate=9, order_ref=2),
        itch.encode_message("E", locate=12, order_ref=5),
    ]
    dec = decode_payloads([encode_packet("S", 1, msgs)])
    sub = Subscription(symbols=["aapl"], locates=[12])
    out = sub.filter(dec)
    assert [m["seq"] for m in out.messages()] == [1, 2, 4, 6, 8]
    assert sub.symbol(9) == "MSFT" and sub.symbol(3) is None
    assert list(Subscription().filter(dec).seq) == list(range(1, 9))
    assert list(Subscription(locates=[9], market_wide=False).filter(dec).seq) == [3, 5, 7]


def test_subscription_rejects_bad_input_with_advice():
    with pytest.raises(ValueError, match="check the spelling"):
        Subscription(symbols=["WAYTOOLONG"])
    with pytest.raises(ValueError, match="0..65535"):
        Subscription(locates=[70000])
