"""MoldUDP64 sequencing (sans-IO): in-order delivery, gaps, duplicates, retransmission requests.

One :class:`Sequencer` follows one feed (one session at a time). Feed it decoded bursts with the
current time; it returns the messages that may be delivered now, in sequence order, and queues
:class:`RetransmitRequest` actions for holes. Time is always passed in, never read.

Model: ``next`` is the first sequence not yet delivered; ``high`` the highest next-expected sequence
any packet or heartbeat announced. Messages in ``[next, high)`` that arrived early wait in a bounded
buffer while the holes before them are re-requested (rate-limited, retried). A hole that waited
``give_up_after`` seconds without being filled from its start, or that the buffer bound forces out,
is counted as ``missing`` and skipped.

Hostile input (MoldUDP64 has no checksum, so one bad packet must not cost good messages):

- Input is screened first (:mod:`xdpgw.protocol.screen`): only each packet's valid prefix counts as
  received and only that prefix is announced; a broken copy leaves its missing messages *missing*,
  so a later good copy (other line, retransmission) fills them exactly once.
- A session is believed only after two well-formed packets of it (either line, a heartbeat counts);
  until then its packets wait aside (``candidates``). A malformed packet never starts a session.
- A hole is only given up once the data after it is corroborated: ``sure`` is the highest end of a
  packet that did not itself open a gap (it continued what was known). A lone packet ahead (a garbage
  sequence) opens a hole nobody can skip, so the real messages still fill it in order.
- A packet more than ``max_jump`` beyond ``high`` waits aside (``parked``, bounded) until another
  packet continues or overlaps it, or the feed gets near: one garbage sequence cannot open a huge hole
  (which would keep every later burst off the O(1) path until the feed got there).

All work is on arrays; Python loops only over runs of one session and over open holes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from xdpgw.protocol.decode import BurstFacts, Decoded
from xdpgw.protocol.moldudp64 import END_OF_SESSION, MAX_COUNT, OK, RetransmitRequest
from xdpgw.protocol.screen import screen, select


@dataclass(slots=True)
class Hole:
    """Sequences ``[start, end)`` not received yet."""

    start: int
    end: int
    since: float
    last_request: float | None = None
    attempts: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(slots=True)
class Candidate:
    """Packets of a session not believed yet, and how many of them were well-formed."""

    parts: list[Decoded] = field(default_factory=list)
    good: int = 0
    messages: int = 0


def gap_scan(starts: np.ndarray, ends: np.ndarray, high: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Per packet: the high-water mark before it, the new mark, and the gap it opens (0 if none).

    ``starts``/``ends`` are each packet's first and next-expected sequence (equal for heartbeats).
    """
    ends = ends.astype(np.int64)
    before = np.empty(len(ends), np.int64)
    before[0] = high
    if len(ends) > 1:
        np.maximum.accumulate(np.maximum(ends[:-1], high), out=before[1:])
        np.maximum(before[1:], high, out=before[1:])
    gap = np.maximum(starts.astype(np.int64) - before, 0)
    return before, max(high, int(ends.max())), gap


class Sequencer:
    """In-order delivery for one MoldUDP64 feed; see the module docstring."""

    def __init__(self, retransmit: bool = False, give_up_after: float = 0.0, retry_interval: float = 0.05,
                 max_buffered: int = 1 << 20, max_request: int = 1000, first_seq: int | None = None,
                 max_holes_requested: int = 16, max_candidates: int = 8, max_jump: int = 1 << 20,
                 max_parked: int = 16) -> None:
        self.retransmit = retransmit
        self.give_up_after = give_up_after
        self.retry_interval = retry_interval
        self.max_buffered = max_buffered
        self.max_request = min(max_request, MAX_COUNT)
        self.max_holes_requested = max_holes_requested  # per call: oldest holes first
        self.max_candidates = max_candidates
        self.max_jump, self.max_parked = max_jump, max_parked
        self.session: bytes | None = None
        self.next: int | None = first_seq
        self.high = first_seq or 0
        self.sure = first_seq or 0
        self.pending = Decoded.empty()
        self.holes: list[Hole] = []
        self.given_up: deque[tuple[int, int]] = deque(maxlen=1024)
        self.old_sessions: set[bytes] = set()
        self.candidates: dict[bytes, Candidate] = {}
        self.parked: list[tuple[int, int, Decoded]] = []  # (start, end, packet) far ahead, uncorroborated
        self.ended = False
        self.last_heard: float | None = None
        self.actions: list[RetransmitRequest] = []
        self.last_accepted = 0  # input messages accepted (not duplicates) by the last call
        self.last_input = Decoded.empty()  # the last call's input as screened (what it believed)
        self.counters = dict.fromkeys(
            ("delivered", "gaps", "gap_messages", "missing", "duplicates", "late", "recovered",
             "heartbeats", "sessions", "stale_session", "end_of_session", "requests",
             # hostile input, see the module docstring: messages, except *_packets / bad_sequence (packets)
             "untrusted", "bad_sequence", "foreign_malformed_packets", "unconfirmed"), 0)

    # --- public API -------------------------------------------------------------------------------
    def on_decoded(self, dec: Decoded, now: float) -> Decoded:
        """Take one decoded burst; return what can be delivered now, in sequence order."""
        self.last_accepted = 0
        self._now = now
        if dec.facts is not None and self._in_order(dec, dec.facts, now):
            self.last_input = dec
            self.counters["delivered"] += len(dec)
            return dec if len(dec) else Decoded.empty()
        dec, well, dropped = screen(dec)
        self.last_input = dec
        for k, v in dropped.items():
            self.counters[k] += v
        if len(dec.pkt_seq) == 0:
            return Decoded.empty()
        out: list[Decoded] = []
        sess = dec.pkt_session
        if (sess == sess[0]).all():
            self._route(dec, well, sess[0], now, out)
        else:  # a session change inside the burst: one run per session (a per-run loop, rare)
            cut = np.flatnonzero(sess[1:] != sess[:-1]) + 1
            for a, b in zip(np.r_[0, cut].tolist(), np.r_[cut, len(sess)].tolist(), strict=True):
                run = np.zeros(len(sess), bool)
                run[a:b] = True
                self._route(select(dec, run), None if well is None else well[a:b], sess[a], now, out)
        self._expire(now, out)
        return self._finish(out)

    def poll(self, now: float) -> Decoded:
        """Advance time without input: re-request and give up holes; may deliver buffered messages."""
        out: list[Decoded] = []
        self._expire(now, out)
        return self._finish(out)

    def take_actions(self) -> list[RetransmitRequest]:
        """Retransmission requests to send now (drains the queue)."""
        acts, self.actions = self.actions, []
        return acts

    def silence(self, now: float) -> float | None:
        """Seconds since the feed was last heard from (data or heartbeat); None before any packet."""
        return None if self.last_heard is None else now - self.last_heard

    def stats(self) -> dict[str, int]:
        return dict(self.counters, buffered=len(self.pending), open_holes=len(self.holes),
                    candidate_sessions=len(self.candidates), parked=len(self.parked))

    # --- internals --------------------------------------------------------------------------------
    def _in_order(self, dec: Decoded, f: BurstFacts, now: float) -> bool:
        """The common case in O(1): a simple burst of this session starting exactly at ``next`` with
        nothing buffered and no hole open. Same effects as the general path; False (and no effect)
        when it does not apply."""
        nxt = self.next
        if (nxt is None or f.start != nxt or self.high != nxt or f.session != self.session or self.holes
                or len(self.pending)):
            return False
        self.last_heard = now
        self.counters["heartbeats"] += f.heartbeats
        if f.end_of_session:
            self.ended = True
            self.counters["end_of_session"] += f.end_of_session
        self.next = self.high = self.sure = f.end  # every packet continues the one before: all corroborated
        self.last_accepted = len(dec)
        return True

    def _finish(self, out: list[Decoded]) -> Decoded:
        res = Decoded.concat(out) if out else Decoded.empty()
        self.counters["delivered"] += len(res)
        return res

    def _route(self, dec: Decoded, well: np.ndarray | None, session: bytes, now: float,
               out: list[Decoded]) -> None:
        """One run of one session: sequence it, or hold it until its session is confirmed."""
        if session == self.session:
            self._run(dec, now, out)
        elif session in self.old_sessions:
            self.counters["stale_session"] += len(dec)
        else:
            self._candidate(dec, well, session, now, out)

    def _candidate(self, dec: Decoded, well: np.ndarray | None, session: bytes, now: float,
                   out: list[Decoded]) -> None:
        good = len(dec.pkt_seq) if well is None else int(np.count_nonzero(well))
        c = self.candidates.pop(session, None)
        if c is None:
            if not good:  # only malformed packets of an unknown session: they never start one
                self.counters["foreign_malformed_packets"] += len(dec.pkt_seq)
                return
            c = Candidate()
        if c.messages + len(dec) > self.max_buffered or len(c.parts) >= 64:
            self.counters["unconfirmed"] += len(dec)
        else:
            c.parts.append(dec)
            c.good += good
            c.messages += len(dec)
        if c.good >= 2:
            self._adopt(session, c, now, out)
            return
        self.candidates[session] = c
        while len(self.candidates) > self.max_candidates:  # the oldest unconfirmed session goes
            self.counters["unconfirmed"] += self.candidates.pop(next(iter(self.candidates))).messages

    def _adopt(self, session: bytes, c: Candidate, now: float, out: list[Decoded]) -> None:
        """``session`` is confirmed: it becomes the current one and its held packets are sequenced."""
        for other in self.candidates.values():
            self.counters["unconfirmed"] += other.messages
        self.candidates.clear()
        held = Decoded.concat(c.parts)
        if self.session is not None:
            self._give_up_all(out)
            self.old_sessions.add(self.session)
            self.counters["unconfirmed"] += sum(len(p) for _, _, p in self.parked)
            self.parked = []
            self.next = self.high = self.sure = 1  # a new session starts at sequence 1
            self.given_up.clear()
        elif self.next is None:  # joining: start at the lowest sequence seen
            self.next = self.high = self.sure = int(held.pkt_seq.min())
        self.session, self.ended = session, False
        self.counters["sessions"] += 1
        self._run(held, now, out)

    def _run(self, dec: Decoded, now: float, out: list[Decoded]) -> None:
        """One screened run of the current session: park what is far ahead, sequence the rest."""
        starts = dec.pkt_seq.astype(np.int64)
        far = starts > self.high + self.max_jump
        if far.any():
            released = self._park(select(dec, far))
            if not far.all():
                self._sequence(select(dec, ~far), now, out)
            if released is not None:
                self._sequence(released, now, out)
        else:
            self._sequence(dec, now, out)
        if self.parked:  # the feed may have come near what waits aside
            near = [p for p in self.parked if p[0] <= self.high + self.max_jump]
            if near:
                self.parked = [p for p in self.parked if p[0] > self.high + self.max_jump]
                self._sequence(Decoded.concat([p for _, _, p in near]), now, out)

    def _park(self, dec: Decoded) -> Decoded | None:
        """Hold far packets aside; those another far packet continues or overlaps come back (returned)."""
        back: list[Decoded] = []
        starts = dec.pkt_seq.astype(np.int64)
        ends = starts + dec.pkt_nmsg.astype(np.int64)
        for i in range(len(starts)):  # one iteration per far packet (rare)
            a, b = int(starts[i]), int(ends[i])
            one = np.zeros(len(starts), bool)
            one[i] = True
            pkt = select(dec, one)
            match = [p for p in self.parked if p[0] <= a <= p[1] or a <= p[0] <= b]
            if match:
                self.parked = [p for p in self.parked if not any(p is m for m in match)]
                back += [p for _, _, p in match] + [pkt]
                continue
            self.parked.append((a, b, pkt))
            if len(self.parked) > self.max_parked:
                self.counters["unconfirmed"] += len(self.parked.pop(0)[2])
        return Decoded.concat(back) if back else None

    def _sequence(self, dec: Decoded, now: float, out: list[Decoded]) -> None:
        """Sequence screened packets of the current session."""
        self.last_heard = now
        count, ok = dec.pkt_count, dec.pkt_error == OK
        hb = (count == 0) & ok
        eos = (count == END_OF_SESSION) & ok
        self.counters["heartbeats"] += int(hb.sum())
        if eos.any():
            self.ended = True
            self.counters["end_of_session"] += int(eos.sum())
        starts = dec.pkt_seq.astype(np.int64)
        ends = starts + dec.pkt_nmsg.astype(np.int64)
        before, self.high, gap = gap_scan(starts, ends, self.high)
        cont = gap == 0  # continued what was known: corroborates everything up to its end
        if cont.any():
            self.sure = max(self.sure, int(ends[cont].max()))
        if not cont.all():
            self.counters["gaps"] += int(np.count_nonzero(gap))
            self.counters["gap_messages"] += int(gap.sum())
        if len(dec) == 0:
            self._deliver_ready(out)
            return
        s = dec.seq.astype(np.int64)
        nxt = self.next
        if not len(self.pending) and s[0] == nxt and s[-1] == nxt + len(s) - 1 and (np.diff(s) == 1).all():
            out.append(dec)  # the common case: exactly the next messages, in order
            self.next = nxt + len(s)
            self.last_accepted += len(s)
            return
        old = s < nxt
        if old.any():
            late = np.zeros(len(s), bool)
            smin = int(s.min())
            for a, b in reversed(self.given_up):  # newest first; only ranges above the oldest arrival
                if b <= smin:
                    break
                late |= (s >= a) & (s < b)
            late &= old
            self.counters["late"] += int(late.sum())
            self.counters["duplicates"] += int(old.sum() - late.sum())
            dec = dec.take(~old)
            s = s[~old]
        if not len(s):
            self._deliver_ready(out)
            return
        merged = Decoded.concat([self.pending, dec]) if len(self.pending) else dec
        ms = merged.seq.astype(np.int64)
        uniq, first = np.unique(ms, return_index=True)
        dups = len(ms) - len(uniq)
        self.counters["duplicates"] += dups
        npend = len(self.pending)
        accepted = first[first >= npend] - npend
        self.last_accepted += len(accepted)
        recovered = s[accepted] < before[dec.pkt[accepted]] if len(accepted) else np.zeros(0, bool)
        self.counters["recovered"] += int(recovered.sum())
        self.pending = merged.take(first)
        self._deliver_ready(out)

    def _deliver_ready(self, out: list[Decoded]) -> None:
        """Deliver the contiguous run at ``next`` from the buffer; recompute the holes."""
        s = self.pending.seq.astype(np.int64)
        if len(s):
            run = s - np.arange(len(s)) == self.next
            k = len(s) if run.all() else int(np.argmin(run))
            if k:
                out.append(self.pending.take(np.arange(k)))
                self.pending = _compact(self.pending.take(np.arange(k, len(s))))
                self.next += k
                s = s[k:]
        self._update_holes(s)

    def _update_holes(self, s: np.ndarray) -> None:
        lo = np.r_[self.next - 1, s]
        hi = np.r_[s, self.high]
        where = np.flatnonzero(hi - lo > 1)
        old = self.holes
        holes = []
        for i in where.tolist():  # one iteration per open hole
            start, end = int(lo[i]) + 1, int(hi[i])
            prev = next((h for h in old if h.start <= start < h.end), None)
            if prev:  # its wait restarts when it was filled from its start (the data is coming)
                since = prev.since if prev.start == start else self._now
                holes.append(Hole(start, end, since, prev.last_request, prev.attempts))
            else:
                holes.append(Hole(start, end, self._now))
        self.holes = holes

    _now = 0.0

    def _expire(self, now: float, out: list[Decoded]) -> None:
        self._now = now
        if self.next is None:
            return
        self._deliver_ready(out)
        while self.holes and (len(self.pending) > self.max_buffered
                              or (now - self.holes[0].since >= self.give_up_after
                                  and self.holes[0].end <= self.sure)):
            self._skip(self.holes[0], out)
        if self.retransmit and self.session is not None:
            for h in self.holes[: self.max_holes_requested]:
                if h.last_request is None or now - h.last_request >= self.retry_interval:
                    h.last_request, h.attempts = now, h.attempts + 1
                    self.actions.append(RetransmitRequest(self.session, h.start, min(h.size, self.max_request)))
                    self.counters["requests"] += 1

    def _skip(self, hole: Hole, out: list[Decoded]) -> None:
        self.counters["missing"] += hole.size
        self.given_up.append((hole.start, hole.end))
        self.next = hole.end
        self._deliver_ready(out)

    def _give_up_all(self, out: list[Decoded]) -> None:
        """The session ends: skip its corroborated holes; what waits beyond an uncorroborated one goes."""
        self._update_holes(self.pending.seq.astype(np.int64))
        while self.holes and self.holes[0].end <= self.sure:
            self._skip(self.holes[0], out)
        self.counters["unconfirmed"] += len(self.pending)
        self.pending, self.holes = Decoded.empty(), []


def _compact(dec: Decoded) -> Decoded:
    """Drop packets no message refers to (keeps the buffer's packet arrays bounded)."""
    if len(dec.pkt_seq) == 0:
        return dec
    used = np.zeros(len(dec.pkt_seq), bool)
    used[dec.pkt] = True
    return dec if used.all() else select(dec, used)
