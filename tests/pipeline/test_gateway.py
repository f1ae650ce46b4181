"""The consumer loop (`Gateway`) over in-memory receivers (tests/pipeline/fakes.py): no root, no sockets.

The loop is generic: it may use only what the Receiver interface and the Batch guarantee. So a fake
receiver is enough to pin down bursts in order, A/B lines by UDP port (never by receiver), empty polls
(the feed's timers run on them) and handlers that raise.
"""

from __future__ import annotations

import itertools

import pytest

from tests import builders
from tests.pipeline.fakes import FakeReceiver
from xdpgw.batch import Batch
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.pipeline.gateway import Gateway, split_lines
from xdpgw.transport.base import Receiver

A, B = 9001, 9002
#: Two lines of one feed as the lab test sends them: A misses 3 and 5, B carries everything.
AB_STREAM = [(A, 1), (B, 1), (A, 2), (B, 2), (B, 3), (A, 4), (B, 4), (B, 5), (A, 6), (B, 6)]


def pkt(seq: int) -> bytes:
    return builders.pkt(seq)  # one message, whose sequence number is the packet's


def run(receivers: list[FakeReceiver], count: int, feed: object | None = None, handlers: list | None = None,
        **options: object) -> tuple[list[int], dict, Gateway]:
    """Run a Gateway until ``count`` packets; the message sequence numbers its handler saw, its summary."""
    got: list[int] = []
    handlers = [lambda dec: got.extend(int(s) for s in dec.seq)] if handlers is None else handlers
    gw = Gateway(receivers, handlers, feed=feed, status=None, **options)
    summary = gw.run(count=count, duration=60)  # the duration only bounds a broken loop
    return got, dict(summary), gw


def test_the_fake_is_a_receiver_and_raw_bursts_reach_the_handlers_in_order():
    payloads = [pkt(s) for s in range(1, 8)]
    rx = FakeReceiver([payloads[:3], payloads[3:4], payloads[4:]])
    assert isinstance(rx, Receiver)
    seen: list[bytes] = []
    _, summary, _ = run([rx], 7, handlers=[lambda batch: seen.extend(batch.payloads())], burst=2)
    assert seen == payloads  # no feed: each burst as it came (cut to the loop's burst size of 2)
    assert (summary["packets"], summary["bytes"]) == (7, sum(map(len, payloads)))
    assert (summary["transport"], summary["port"], summary["receiver"]["packets"]) == ("fake", A, 7)
    assert summary["handler_errors"] == 0 and "last_handler_error" not in summary


def test_in_order_bursts_are_decoded_and_delivered_once_in_order():
    rx = FakeReceiver([[pkt(1), pkt(2), pkt(3)], [pkt(4)], [pkt(5), pkt(6)]])
    got, summary, _ = run([rx], 6, feed=FeedHandler(lines=1))
    assert got == [1, 2, 3, 4, 5, 6]
    assert (summary["messages"], summary["gaps"], summary["duplicates"], summary["missing"]) == (6, 0, 0, 0)
    assert "lines" not in summary  # one line: nothing arbitrated


def test_empty_polls_run_the_feeds_timers_so_a_gap_is_given_up_without_traffic():
    """3 never comes: 4 and 5 wait behind the hole until an idle poll (an empty burst) gives it up."""
    ticks = itertools.count()
    feed = FeedHandler(lines=1, clock=lambda: next(ticks) * 0.001)  # 1 ms per look: the window is 2 ms
    rx = FakeReceiver([[], [pkt(1), pkt(2)], [], [pkt(4), pkt(5)]])
    got: list[int] = []

    def record(dec) -> None:
        got.extend(int(s) for s in dec.seq)
        if got[-1] == 5:
            gw.stop()

    gw = Gateway([rx], [record], feed=feed, status=None)
    summary = gw.run(duration=60)
    assert got == [1, 2, 4, 5] and rx.exhausted and rx.calls > 4  # the empty bursts were polled too
    assert (summary["packets"], summary["gaps"], summary["missing"]) == (4, 1, 1)


def test_a_handler_that_raises_is_counted_and_the_others_still_get_everything():
    def boom(_dec) -> None:
        raise RuntimeError("boom in user code")

    rx = FakeReceiver([[pkt(1)], [pkt(2), pkt(3)], [pkt(4)]])
    deliveries: list[list[int]] = []
    _, summary, _ = run([rx], 4, feed=FeedHandler(lines=1),
                        handlers=[boom, lambda dec: deliveries.append([int(s) for s in dec.seq])])
    assert sum(deliveries, []) == [1, 2, 3, 4]
    assert summary["handler_errors"] == len(deliveries) >= 2  # once per delivery
    assert summary["last_handler_error"] == "RuntimeError: boom in user code"


@pytest.mark.parametrize("burst", [1, 3, 10])
def test_ab_lines_are_split_by_udp_port_inside_one_receivers_bursts(burst):
    rx = FakeReceiver([[(pkt(seq), port) for port, seq in AB_STREAM]])
    got, summary, _ = run([rx], len(AB_STREAM), feed=FeedHandler(lines=2), line_b_port=B, burst=burst)
    assert got == [1, 2, 3, 4, 5, 6]  # each once, in order
    assert (summary["messages"], summary["duplicates"], summary["missing"]) == (6, 4, 0)
    lines = summary["lines"]
    assert sum(ln["first"] for ln in lines) == 6 and lines[1]["first"] >= 2  # B alone had 3 and 5


def test_a_line_is_its_port_not_its_receiver():
    """Line B's receiver listed first, and several receivers without line_b_port: the ports decide."""
    only_b = FakeReceiver([[pkt(s)] for s in range(1, 7)], port=B)
    only_a = FakeReceiver([[pkt(s)] for s in (1, 2, 4, 6)], port=A)
    got, summary, _ = run([only_b, only_a], 10, feed=FeedHandler(lines=2), line_b_port=B)
    assert got == [1, 2, 3, 4, 5, 6] and summary["duplicates"] == 4
    assert summary["lines"][0]["first"] + summary["lines"][1]["first"] == 6
    assert summary["lines"][1]["first"] >= 2  # 3 and 5 came from B, whichever receiver it is
    # no line_b_port: one line, however many receivers (a second receiver used to be "line 1")
    a, a_again = FakeReceiver([[pkt(1), pkt(2)]]), FakeReceiver([[pkt(2), pkt(3)]], port=B)
    got, summary, _ = run([a, a_again], 4, feed=FeedHandler(lines=1))
    assert got == [1, 2, 3] and summary["duplicates"] == 1 and "lines" not in summary


def test_split_lines_passes_a_one_line_burst_whole_and_cuts_a_mixed_one_in_order():
    one = Batch.from_payloads([b"a", b"b"], dport=A)
    assert split_lines(one, B) == ((0, one),)
    assert split_lines(Batch.from_payloads([b"a"], dport=B), B)[0][0] == 1
    mixed = Batch.from_payloads([b"a1", b"b1", b"a2", b"b2"], dport=[A, B, A, B])
    parts = split_lines(mixed.slice(0, 3), B)  # up to count only
    assert [(line, part.payloads(), part.dports.tolist()) for line, part in parts] == [
        (0, [b"a1", b"a2"], [A, A]), (1, [b"b1"], [B])]


def test_handlers_idle_runs_only_when_a_poll_found_nothing_and_its_errors_are_counted():
    """A handler's ``idle()`` (the strategy's venue I/O) runs after empty polls, never between a burst
    and its delivery; an exception in it is counted as a handler's, and the loop goes on."""
    rx = FakeReceiver([[pkt(1)], [], [pkt(2), pkt(3)], [], [], [pkt(4)]])
    seen: list[str] = []

    class Handler:
        def __call__(self, dec) -> None:
            seen.extend(f"d{int(s)}" for s in dec.seq)

        def idle(self) -> None:
            seen.append("idle")
            if seen.count("idle") == 1:
                raise RuntimeError("venue gone")
            if "d4" in seen:
                gw.stop()

    gw = Gateway([rx], [Handler()], feed=FeedHandler(lines=1), status=None)
    summary = gw.run(duration=60)
    assert [x for x in seen if x != "idle"] == ["d1", "d2", "d3", "d4"] and seen[-1] == "idle"
    i = seen.index("d2")
    assert seen[i + 1] == "d3" and seen.count("idle") >= 3  # a burst's delivery is never cut by idle
    assert summary["handler_errors"] == 1 and summary["last_handler_error"] == "RuntimeError: venue gone"


def test_idle_gc_freezes_what_survives_a_young_collection_and_a_full_one_frees_late_cycles():
    """Collections in the loop never cost more than the young generation: its survivors are frozen;
    a cycle that dies after that waits for the full collection of a quiet feed."""
    import gc
    import weakref

    from xdpgw.pipeline.gateway import idle_gc

    class Node:
        pass

    was = gc.isenabled()
    gc.disable()
    frozen0 = gc.get_freeze_count()
    try:
        cycle = Node()
        cycle.me = cycle
        dead = weakref.ref(cycle)
        keep = [Node() for _ in range(gc.get_threshold()[0])]  # enough for a young collection
        assert idle_gc() and gc.get_freeze_count() >= frozen0 + len(keep) + 1
        assert not idle_gc()  # nothing new: no collection
        del cycle
        for _ in range(gc.get_threshold()[0]):
            keep.append(Node())
        assert idle_gc() and dead() is not None  # frozen: a young collection does not see it
        assert idle_gc(full=True) and dead() is None
    finally:
        gc.unfreeze()
        if was:
            gc.enable()
