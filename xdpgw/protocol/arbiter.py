"""A/B line arbitration (sans-IO): two lines, same sequence numbers, each message delivered once.

Both lines feed one :class:`Sequencer`: whichever copy of a sequence arrives first is delivered,
the other is a duplicate. Per line it keeps: packets, messages, ``first`` (copies delivered from this
line) and ``first_share``, ``gaps``/``gap_messages`` (holes in this line's own stream), ``covered``
(of those, messages delivered anyway: by the other line or a retransmission) and ``lost_on_both``
(messages of this line's holes that nothing delivered).
"""

from __future__ import annotations

import numpy as np

from xdpgw.protocol.decode import Decoded
from xdpgw.protocol.holes import RangeLog
from xdpgw.protocol.sequencer import Sequencer, gap_scan


class _Line:
    def __init__(self) -> None:
        self.session: bytes | None = None
        self.high: int | None = None
        self.open = RangeLog()  # this line's holes the merged stream has not passed yet, in order
        self.c = dict.fromkeys(("packets", "messages", "first", "gaps", "gap_messages", "covered",
                                "lost_on_both"), 0)


class Arbiter:
    """Merge ``lines`` copies of one feed through ``sequencer``."""

    def __init__(self, sequencer: Sequencer, lines: int = 2) -> None:
        self.sequencer = sequencer
        self.lines = [_Line() for _ in range(lines)]

    def on_decoded(self, dec: Decoded, line: int, now: float) -> Decoded:
        """One burst from ``line``; returns what the sequencer delivers now."""
        ln = self.lines[line]
        ln.c["packets"] += len(dec.pkt_seq)
        ln.c["messages"] += len(dec)
        f = dec.facts
        simple = f is not None and f.session == ln.session and f.start == ln.high
        out = self.sequencer.on_decoded(dec, now, line)
        if simple:
            ln.high = f.end  # a simple burst continuing this line: no hole, nothing else to track
        else:
            self._track(ln, self.sequencer.last_input)
        ln.c["first"] += self.sequencer.last_accepted
        self._resolve()
        return out

    def _track(self, ln: _Line, dec: Decoded) -> None:
        """Follow this line's own stream of the current session, as the sequencer believed it (screened:
        a broken copy announces only its valid prefix): its high-water mark and the holes it opens."""
        sess = self.sequencer.session
        if sess is None or not len(dec.pkt_seq):
            return
        if sess != ln.session:
            ln.session, ln.high = sess, None
            ln.open.clear()
        seq = self.sequencer
        # what the sequencer parked (far ahead, uncorroborated) is not this line's stream either
        starts = dec.pkt_seq.astype(np.int64)
        limit = seq.high + seq.max_jump
        if seq.last_session == sess and int(starts.max()) <= limit:  # the usual case: all of it
            ends = starts + dec.pkt_nmsg
        else:
            same = np.flatnonzero((dec.pkt_session == sess) & (starts <= limit))
            if not len(same):
                return
            starts = starts[same]
            ends = starts + dec.pkt_nmsg[same]
        if ln.high is None:
            ln.high = int(starts[0])
        _, ln.high, gap = gap_scan(starts, ends, ln.high)
        at = np.flatnonzero(gap)
        if len(at):  # each starts at or beyond the line's high-water mark: in order after the open ones
            ln.open.add(starts[at] - gap[at], starts[at])
            ln.c["gaps"] += len(at)
            ln.c["gap_messages"] += int(gap[at].sum())

    def poll(self, now: float) -> Decoded:
        out = self.sequencer.poll(now)
        self._resolve()
        return out

    def _resolve(self) -> None:
        """Settle line holes the merged stream has moved past: covered or lost on both."""
        seq = self.sequencer
        if seq.next is None:
            return
        for ln in self.lines:
            if not len(ln.open) or ln.session != seq.session:
                continue
            k = ln.open.passed(seq.next)
            if k:
                a, b = ln.open.pop(k)
                lost = seq.given_up.overlap(a, b)
                ln.c["lost_on_both"] += lost
                ln.c["covered"] += int(b.sum() - a.sum()) - lost

    def stats(self) -> list[dict[str, float]]:
        total = sum(ln.c["first"] for ln in self.lines) or 1
        return [dict(ln.c, first_share=ln.c["first"] / total) for ln in self.lines]
