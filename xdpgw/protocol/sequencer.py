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
  so a later good copy (other line, retransmission) fills them exactly once. A broken copy (not
  well-formed) never costs what the feed would have delivered without it: it corroborates nothing,
  and one that would open a gap (it starts beyond what the well-formed packets reached) waits aside
  (``parked``) until the feed reaches it, so it opens no hole and starts no hole's wait: the good copy
  arriving later finds the timers as if the broken one had never come.
- A session is believed only after two well-formed packets of it that *chain* (each wholly beyond, or
  reordered wholly before, what was seen of it; either line; a copy does not, and a heartbeat counts only
  at or beyond the end of what was seen and not repeating the last one); until then its packets wait aside
  (``candidates``). A malformed packet never starts a session, and an end-of-session packet never ends
  any session but its own (a lone one of another session is rejected at once).
- What proves a session change (day rollover, failover to a backup publisher): the followed session
  ended with its *own* end-of-session, or has been silent ``session_timeout`` seconds while the new one
  was heard; and the new one is proven (two chained well-formed packets). Until then the other
  session's packets are held, never delivered and never able to stop ours; once it is given up (silent
  ``session_timeout`` while another is followed, ended, or over the bounds) its messages are rejected
  as ``foreign_session``. Once a session is followed, start-up contention never switches it.
- At start-up a session alone is followed once proven. When several live sessions compete, none is
  followed until one has kept going ``prove_for`` seconds since its first chained packet (a stray's
  burst never does; the real feed, however sparse, does), or all have been silent ``session_timeout``
  (nothing more to learn). Then the proven one with the best evidence wins, compared in this order
  (``EVIDENCE``): not ended; heard on more of the configured lines (the arbiter says which; the feed is
  published on both); kept going longer (up to ``prove_for``); heard within the last ``prove_for``; more
  messages carried by its chained packets (evidence, not a packet count); heard first. The others wait
  (``unconfirmed_session``) until given up. Held bursts merge 16 at a time (``Candidate.hold``): a busy
  feed held through a contest loses nothing (only ``max_buffered`` bounds what a session may hold).
  ``choice`` shows the last choice, the evidence that decided it (``reason``: the first that differed
  from the runner-up) and what each candidate showed; ``session_contests`` counts contested choices.
- Every message taken in is accounted for at any moment (:meth:`Sequencer.accounts`): ``received ==
  delivered + duplicates + sum(rejected) + sum(held)``; ``rejected`` counts messages by cause, ``held``
  what still waits by reason (``behind_hole``, ``parked_far_ahead``, ``unconfirmed_session``).
- A hole is only given up once the data after it is corroborated: ``sure`` is the highest end of a
  well-formed packet that did not itself open a gap (it continued what was known). A lone packet ahead
  (a garbage sequence) opens a hole nobody can skip, so the real messages still fill it in order.
- A packet more than ``max_jump`` beyond ``high`` waits aside (``parked``, bounded) until another
  packet continues or overlaps it, or the feed gets near: one garbage sequence cannot open a huge hole
  (which would keep every later burst off the O(1) path until the feed got there).

Cost (a lossy line waits out its window with a backlog behind every hole; that must not slow it down):
every burst costs O(its own size), never O(backlog). Holes are numpy columns (:class:`HoleTable`)
that grow at the end, are given up from the front and are cut near the end; buffered messages stay in
the bursts they came in (:class:`Backlog`) and leave as one gather of ready prefixes; a burst that is
all beyond ``high`` (the lossy line's usual burst) skips sorting and searching (``_beyond``). All work
is on arrays; Python loops only over runs of one session, and over a few holes at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xdpgw.protocol.backlog import Backlog
from xdpgw.protocol.decode import BurstFacts, Decoded, gather, one_session
from xdpgw.protocol.holes import Hole, HoleTable, RangeLog
from xdpgw.protocol.moldudp64 import END_OF_SESSION, MAX_COUNT, OK, RetransmitRequest
from xdpgw.protocol.screen import screen, select

__all__ = ["HELD_REASONS", "REJECT_CAUSES", "Candidate", "Hole", "Sequencer", "gap_scan"]

#: Why a message taken in was not delivered and never will be (counted in messages, see ``Sequencer.rejected``):
#: a block that did not decode, a valid block after a broken one, a packet with an impossible sequence,
#: a malformed packet of a session not followed, a session not followed (given up), a session that already
#: ended, data never corroborated (parked far ahead and pushed out, or beyond an open hole when the session ended).
REJECT_CAUSES = ("undecodable", "untrusted", "bad_sequence", "foreign_malformed", "foreign_session",
                 "stale_session", "unconfirmed")
#: Why a message taken in still waits (``Sequencer.held()``): behind a hole, aside until corroborated or
#: reached (far ahead of the feed, or a broken copy ahead of it), or in a session not followed (yet).
HELD_REASONS = ("behind_hole", "parked_far_ahead", "unconfirmed_session")

#: What decides between competing sessions, in order (``Candidate.evidence``; ``Sequencer.choice`` names
#: the first one that differed from the runner-up).
EVIDENCE = ("live", "lines", "kept_going", "alive", "messages", "heard_first")

_FANOUT = 16  # a candidate's held parts merge this many at a time (Candidate.hold)
_NOTHING = Decoded.empty()  # what a call that delivers nothing returns (shared: never edit it)
Piece = tuple[Decoded, "slice | np.ndarray | None"]  # to deliver: a burst, or some of it (see Backlog.take)


@dataclass(slots=True)
class Candidate:
    """Packets of a session not followed (yet), held, and what they prove: well-formed packets that
    chained (each at or beyond the end of the one before) and the messages they carried, when (and in
    which order) it was first heard, when it first chained and when it was last heard, on which lines,
    and whether it ended (its own well-formed end-of-session: it is never followed then)."""

    parts: list[Decoded] = field(default_factory=list)  # what it sent, in order of arrival (see ``hold``)
    wells: list[np.ndarray | None] = field(default_factory=list)  # per part: its well-formed packets (None: all)
    levels: list[int] = field(default_factory=list)  # per part: how many merges made it (never rising)
    messages: int = 0
    packets: int = 0
    chain: int = 0
    beat: int | None = None  # the sequence the last packet without messages showed (another there is a copy)
    chain_start: int = 0  # the sequences it showed: [chain_start, chain_end)
    chain_end: int | None = None
    first: float = 0.0
    last: float = 0.0
    heard: int = 0  # the order sessions were first heard in (``first`` ties within a burst; this does not)
    ended: bool = False
    since: float = 0.0  # when its first chained packet came (``last``: when it was last heard)
    carried: int = 0  # messages its chained packets carried
    lines: int = 0  # the lines (bits) it was heard on

    def hold(self, dec: Decoded, well: np.ndarray | None) -> None:
        """Keep a run until the session is followed or given up. A busy feed held through a contest sends
        many bursts: the newest ``_FANOUT`` parts of one level merge into one of the next level, so the list
        stays short and each message is copied at most log(held)/log(_FANOUT) times (O(burst) amortised)."""
        self.parts.append(dec)
        self.wells.append(well)
        self.levels.append(0)
        self.messages += len(dec)
        self.packets += len(dec.pkt_seq)
        f, levels = _FANOUT, self.levels
        while len(levels) >= f and levels[-f] == levels[-1]:
            merged, well = self.held(slice(-f, None))
            del self.parts[-f:], self.wells[-f:]
            self.parts.append(merged)
            self.wells.append(well)
            levels[-f:] = [levels[-1] + 1]

    def held(self, which: slice = slice(None)) -> tuple[Decoded, np.ndarray | None]:
        """The parts held (``which`` of them) as one burst, and its well-formed packets (None: all)."""
        parts, wells = self.parts[which], self.wells[which]
        well = None
        if any(w is not None for w in wells):
            well = np.concatenate([np.ones(len(p.pkt_seq), bool) if w is None else w
                                   for p, w in zip(parts, wells, strict=True)])
        return Decoded.concat(parts), well

    def evidence(self, now: float, prove_for: float) -> tuple[bool, int, float, bool, int, int]:
        """What it shows, best first (compared as a tuple, see the module docstring): not ended, lines heard
        on, how long it kept going since its first chained packet (capped at ``prove_for``), heard within the
        last ``prove_for``, messages its chained packets carried, heard first."""
        return (not self.ended, self.lines.bit_count(), min(self.last - self.since, prove_for),
                now - self.last < prove_for, self.carried, -self.heard)

    def report(self, now: float) -> dict[str, float | int | bool]:
        """The evidence, readable (for ``Sequencer.choice``)."""
        return {"ended": self.ended, "lines": self.lines.bit_count(), "kept_going_s": self.last - self.since,
                "silent_s": now - self.last, "messages": self.carried, "chained_packets": self.chain,
                "heard": self.heard}


def _name(session: bytes) -> str:
    return bytes(session).decode("ascii", "replace").rstrip()


def gap_scan(starts: np.ndarray, ends: np.ndarray, high: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Per packet: the high-water mark before it, the new mark, and the gap it opens (0 if none).

    ``starts``/``ends`` are each packet's first and next-expected sequence (equal for heartbeats).
    """
    starts, ends = starts.astype(np.int64, copy=False), ends.astype(np.int64, copy=False)
    before = np.empty(len(ends), np.int64)
    before[0] = high
    if len(ends) > 1:
        before[1:] = ends[:-1]
        gap = starts - before
        if gap[0] >= 0 and gap.min() >= 0:  # packets in order, none behind another: no running maximum
            return before, int(ends[-1]), gap
        np.maximum.accumulate(np.maximum(ends[:-1], high), out=before[1:])
        np.maximum(before[1:], high, out=before[1:])
    gap = np.maximum(starts - before, 0)
    return before, max(high, int(ends.max())), gap


class Sequencer:
    """In-order delivery for one MoldUDP64 feed; see the module docstring."""

    def __init__(self, retransmit: bool = False, give_up_after: float = 0.0, retry_interval: float = 0.05,
                 max_buffered: int = 1 << 20, max_request: int = 1000, first_seq: int | None = None,
                 max_holes_requested: int = 16, max_candidates: int = 8, max_jump: int = 1 << 20,
                 max_parked: int = 16, session_timeout: float = 1.0, prove_for: float = 0.05) -> None:
        """``session_timeout``: seconds of silence after which the followed session may be replaced (and a
        session not followed is given up); ``prove_for``: at start-up, how long competing sessions must
        keep chaining before one is followed."""
        self.retransmit = retransmit
        self.give_up_after = give_up_after
        self.retry_interval = retry_interval
        self.max_buffered = max_buffered
        self.max_request = min(max_request, MAX_COUNT)
        self.max_holes_requested = max_holes_requested  # per call: oldest holes first
        self.max_candidates = max_candidates
        self.max_jump, self.max_parked = max_jump, max_parked
        self.session_timeout, self.prove_for = session_timeout, prove_for
        self._switched = False  # the current call changed the session
        self.shortcuts = True  # the O(1)-ish paths (_in_order, _beyond); tests turn them off to compare
        self.session: bytes | None = None
        self.next: int | None = first_seq
        self.high = first_seq or 0
        self.sure = first_seq or 0
        self.backlog = Backlog()  # received, waiting for a hole before it: exactly [next, high) minus the holes
        self.hole_table = HoleTable()
        self.given_up = RangeLog(maxlen=1024)  # the newest holes given up, for telling late from duplicate
        self.old_sessions: set[bytes] = set()  # followed until their own end-of-session
        self.resume: dict[bytes, int] = {}  # followed until they went silent: where each left off
        self.candidates: dict[bytes, Candidate] = {}
        self.choice: dict | None = None  # the last session followed: why, and what each candidate showed then
        self._heard = 0  # sessions heard so far as candidates (numbers Candidate.heard)
        # (start, end, packet, broken): far ahead and uncorroborated, or a broken copy ahead of the feed
        self.parked: list[tuple[int, int, Decoded, bool]] = []
        self.ended = False
        self.last_heard: float | None = None
        self.actions: list[RetransmitRequest] = []
        self.last_accepted = 0  # input messages accepted (not duplicates) by the last call
        self.last_input = Decoded.empty()  # the last call's input as screened (what it believed)
        self.last_session: bytes | None = None  # the one session of last_input (None: several, or none)
        self.counters = dict.fromkeys(
            ("received", "delivered", "gaps", "gap_messages", "missing", "duplicates", "late", "recovered",
             "heartbeats", "sessions", "session_contests", "end_of_session", "requests",
             # hostile input, in packets (the messages they carried are in ``rejected``)
             "bad_sequence_packets", "foreign_malformed_packets", "foreign_session_packets"), 0)
        self.rejected = dict.fromkeys(REJECT_CAUSES, 0)  # messages taken in and never to be delivered, by cause

    # --- public API -------------------------------------------------------------------------------
    def on_decoded(self, dec: Decoded, now: float, line: int | None = None) -> Decoded:
        """Take one decoded burst (from ``line``, if it came from one of the configured lines); return what
        can be delivered now, in sequence order."""
        self.last_accepted = 0
        self._switched = False
        self.counters["received"] += len(dec)
        if dec.facts is not None and self.shortcuts and self._in_order(dec, dec.facts, now):
            self.last_input = dec
            if self.candidates:  # a session change may be due now (ours ended), or others given up
                out: list[Piece] = [(dec, None)]
                self._expire(now, out)  # as the general path ends: a session taken over may open a hole to request
                return self._finish(out)
            self.counters["delivered"] += len(dec)
            return dec if len(dec) else _NOTHING
        dec, well, dropped = screen(dec)
        self.last_input, self.last_session = dec, None
        for k, v in dropped.items():
            (self.rejected if k in self.rejected else self.counters)[k] += v
        if len(dec.pkt_seq) == 0:
            return _NOTHING
        out = []
        sess = dec.pkt_session
        if one_session(sess):
            self.last_session = sess[0]
            self._route(dec, well, sess[0], now, out, line)
        else:  # a session change inside the burst: one run per session (a per-run loop, rare)
            self.last_session = None
            cut = np.flatnonzero(sess[1:] != sess[:-1]) + 1
            for a, b in zip(np.r_[0, cut].tolist(), np.r_[cut, len(sess)].tolist(), strict=True):
                run = np.zeros(len(sess), bool)
                run[a:b] = True
                self._route(select(dec, run), None if well is None else well[a:b], sess[a], now, out, line)
        self._expire(now, out)
        return self._finish(out)

    def poll(self, now: float) -> Decoded:
        """Advance time without input: re-request and give up holes; may deliver buffered messages."""
        out: list[Piece] = []
        self._switched = False
        self._expire(now, out)
        return self._finish(out)

    def held(self) -> dict[str, int]:
        """Messages taken in that still wait, by reason (see ``HELD_REASONS``)."""
        return {"behind_hole": len(self.backlog),
                "parked_far_ahead": sum(len(p[2]) for p in self.parked),
                "unconfirmed_session": sum(c.messages for c in self.candidates.values())}

    def accounts(self) -> dict[str, int | dict[str, int]]:
        """Where every message taken in is, at this moment: ``received == delivered + duplicates +
        sum(rejected) + sum(held)`` (duplicates include late copies of given-up sequences)."""
        c = self.counters
        return {"received": c["received"], "delivered": c["delivered"], "duplicates": c["duplicates"] + c["late"],
                "rejected": dict(self.rejected), "held": self.held()}

    def note_choice(self, session: bytes, reason: str, evidence: dict | None = None, now: float | None = None,
                    ) -> None:
        """Remember why ``session`` is followed (``choice``): alone (also when the C fast path proved it),
        or the evidence by which it beat its rivals, then."""
        self.choice = {"session": _name(session), "reason": reason}
        if evidence is not None:
            self.choice.update(at=now, evidence=evidence)

    def adopt_proven(self, session: bytes) -> None:
        """The C fast path proved ``session`` alone at start-up (its packets chained, delivered in C): what
        the general path's adoption notes (``_candidate``, ``_decide``, ``_adopt``). C hands ``next``,
        ``high``, ``sure`` and the counts back itself (:meth:`xdpgw.protocol.fastpath.FastPath.sync`)."""
        self.session, self.ended = session, False
        self.counters["sessions"] += 1
        self._heard += 1
        self.note_choice(session, "alone")

    def take_actions(self) -> list[RetransmitRequest]:
        """Retransmission requests to send now (drains the queue)."""
        acts, self.actions = self.actions, []
        return acts

    def silence(self, now: float) -> float | None:
        """Seconds since the feed was last heard from (data or heartbeat); None before any packet."""
        return None if self.last_heard is None else now - self.last_heard

    def stats(self) -> dict[str, int]:
        return dict(self.counters, **self.rejected, buffered=len(self.backlog), open_holes=len(self.hole_table),
                    candidate_sessions=len(self.candidates), parked=len(self.parked))

    @property
    def holes(self) -> list[Hole]:
        """The open holes, oldest first (a snapshot for tests and status pages)."""
        return self.hole_table.rows()

    # --- internals --------------------------------------------------------------------------------
    def _in_order(self, dec: Decoded, f: BurstFacts, now: float) -> bool:
        """The common case in O(1): a simple burst of this session starting exactly at ``next`` with
        nothing buffered and no hole open. Same effects as the general path; False (and no effect)
        when it does not apply."""
        nxt = self.next
        if (nxt is None or f.start != nxt or self.high != nxt or f.session != self.session
                or len(self.hole_table) or len(self.backlog)):
            return False
        if self.parked and self._reaches_parked(f.end):
            return False  # the general path takes in what waits aside
        self.last_heard = now
        self.counters["heartbeats"] += f.heartbeats
        if f.end_of_session:
            self.ended = True
            self.counters["end_of_session"] += f.end_of_session
        self.next = self.high = self.sure = f.end  # every packet continues the one before: all corroborated
        self.last_accepted = len(dec)
        return True

    def _reaches_parked(self, high: int) -> bool:
        """Would a high-water mark of ``high`` reach something parked? (A helper, not a generator expression
        in ``_in_order``: that would make its locals closure cells and cost every burst ~90 ns.)"""
        return any(p[0] <= high + (0 if p[3] else self.max_jump) for p in self.parked)

    def _finish(self, out: list[Piece]) -> Decoded:
        """Everything delivered by this call as one ``Decoded`` (one gather, however many pieces)."""
        if not out:
            return _NOTHING
        if len(out) == 1 and not isinstance(out[0][1], np.ndarray):
            dec, pick = out[0]
            res = dec if pick is None else dec.slice(pick.start, pick.stop)
        else:
            res = gather([d for d, _ in out], [p for _, p in out], clean=True)  # screened: all valid
        if res.facts is None and not self._switched:
            res._clean = self.session  # screened: every message valid, all of the current session
        self.counters["delivered"] += len(res)
        return res

    def _route(self, dec: Decoded, well: np.ndarray | None, session: bytes, now: float,
               out: list[Piece], line: int | None = None) -> None:
        """One run of one session: sequence it, or hold it while its session is not followed."""
        if session == self.session:
            self._run(dec, now, out, well)
        elif session in self.old_sessions:
            self.rejected["stale_session"] += len(dec)
        else:
            self._candidate(dec, well, session, now, line)
            self._decide(now, out)  # now, before later runs of this burst: the order of arrival counts

    def _candidate(self, dec: Decoded, well: np.ndarray | None, session: bytes, now: float,
                   line: int | None = None) -> None:
        """Hold a run of a session not followed, and note what it proves (see ``_decide``)."""
        c = self.candidates.pop(session, None)
        if c is None:
            if well is not None and not well.any():  # only malformed packets of an unknown session
                self.counters["foreign_malformed_packets"] += len(dec.pkt_seq)
                self.rejected["foreign_malformed"] += len(dec)
                return
            self._heard += 1
            c = Candidate(first=now, heard=self._heard)
        self._prove(c, dec, well, now)
        if line is not None:
            c.lines |= 1 << line
        if c.messages + len(dec) > self.max_buffered:
            self.rejected["foreign_session"] += len(dec)
            self.counters["foreign_session_packets"] += len(dec.pkt_seq)
        else:
            c.hold(dec, well)
        self.candidates[session] = c  # (re)inserted last: the least recently heard come first
        while len(self.candidates) > self.max_candidates:
            self._reject(self.candidates.pop(next(iter(self.candidates))))

    def _reject(self, c: Candidate) -> None:
        """A session not followed is given up: its held messages are rejected."""
        self.rejected["foreign_session"] += c.messages
        self.counters["foreign_session_packets"] += c.packets

    @staticmethod
    def _prove(c: Candidate, dec: Decoded, well: np.ndarray | None, now: float) -> None:
        """Count the well-formed packets of ``dec`` that chain on what ``c`` showed so far: each lies wholly
        beyond (or, reordered, wholly before) the sequences seen before it; a copy proves nothing. A packet
        without messages (heartbeat, end-of-session) must show a sequence at or beyond the end of what was
        seen, and not the one the last such packet showed: a repeated or stale heartbeat is no progress."""
        starts = dec.pkt_seq.astype(np.int64)
        ends = starts + dec.pkt_nmsg
        count = dec.pkt_count
        if well is not None:
            starts, ends, count = starts[well], ends[well], count[well]
        if not len(starts):
            return
        c.last = now
        c.ended = c.ended or bool((count == END_OF_SESSION).any())
        empty = ends == starts
        if c.chain_end is None:  # the first one proves itself
            c.chain, c.chain_start, c.chain_end = 1, int(starts[0]), int(ends[0])
            c.beat = int(starts[0]) if empty[0] else c.beat
            c.since = now
            c.carried += int(ends[0] - starts[0])
            starts, ends, empty = starts[1:], ends[1:], empty[1:]
            if not len(starts):
                return
        hi = np.maximum.accumulate(np.r_[c.chain_end, ends[:-1]])
        lo = np.minimum.accumulate(np.r_[c.chain_start, starts[:-1]])
        new = ~empty & ((starts >= hi) | (ends <= lo))
        if empty.any():  # a heartbeat at or beyond the end of what was seen, unless it repeats the last one
            at = np.flatnonzero(empty)
            beats = starts[at]
            new[at] = (beats >= hi[at]) & (beats != np.r_[-1 if c.beat is None else c.beat, beats[:-1]])
            c.beat = int(beats[-1])
        if new.any():
            c.chain += int(np.count_nonzero(new))
            c.carried += int((ends - starts)[new].sum())
        c.chain_start, c.chain_end = min(c.chain_start, int(starts.min())), max(c.chain_end, int(ends.max()))

    def _decide(self, now: float, out: list[Piece]) -> None:
        """Give up dead candidates; follow a proven one when a session change is proven (module doc)."""
        cands = self.candidates
        following = self.session is not None
        for sess in [s for s, c in cands.items()  # a lone end-of-session, or silent while we follow another
                     if (c.ended and c.chain < 2) or (following and now - c.last >= self.session_timeout)]:
            self._reject(cands.pop(sess))
        proven = [(s, c) for s, c in cands.items() if c.chain >= 2]
        if not proven:
            return
        if following:
            last = self.last_heard if self.last_heard is not None else -np.inf
            if not (self.ended or now - last >= self.session_timeout):
                return  # ours is alive: nothing else may take over
            proven = [(s, c) for s, c in proven if self.ended or c.last > last]
            if not proven:
                return
        pf, timeout = self.prove_for, self.session_timeout
        live = [o for o in cands.values() if not o.ended]
        rivals, over = live, True
        if not following and live:  # at start-up a live session beats an ended one, and those silent
            heard = [o for o in live if now - o.last < timeout]  # drop out of a contest, unless all are:
            rivals, over = heard or live, not heard  # then it is over (nothing more to learn)
            proven = [(s, c) for s, c in proven if any(c is o for o in rivals)]
            if not proven:
                return  # those still competing have not proven themselves yet
        ranked = sorted(proven, key=lambda sc: sc[1].evidence(now, pf), reverse=True)  # stable: ties keep order
        session, c = ranked[0]
        if not following and len(rivals) > 1 and not over and c.last - c.since < pf:
            return  # live ones compete: wait until one kept going prove_for (or all fell silent)
        reason = ("ours ended" if self.ended else "ours silent") if following else "alone"
        if len(ranked) > 1:  # the first piece of evidence that told it from the runner-up
            why = next(n for n, a, b in zip(EVIDENCE, c.evidence(now, pf), ranked[1][1].evidence(now, pf),
                                            strict=True) if a != b)
            reason = f"{reason}, then {why}" if following else why
        elif not following and len(live) > 1:
            reason = "only one proven" if len(rivals) == len(live) else "the others fell silent"
        if not following and len(live) > 1:
            self.counters["session_contests"] += 1
        evidence = None if reason == "alone" else {
            _name(s): o.report(now) for s, o in [(session, c), *((s, o) for s, o in cands.items() if o is not c)]}
        self.note_choice(session, reason, evidence, now)
        del cands[session]
        self._adopt(session, c, now, out)

    def _adopt(self, session: bytes, c: Candidate, now: float, out: list[Piece]) -> None:
        """``session`` is proven: it becomes the current one and its held packets are sequenced."""
        held, well = c.held()
        if self.session is not None:
            self._switched = True  # what this call delivers may now span two sessions
            self._give_up_all(out)
            if self.ended:
                self.old_sessions.add(self.session)
            else:  # gone silent: it may come back, and then resumes where it left off
                self.resume[self.session] = self.next
                while len(self.resume) > 16:
                    del self.resume[next(iter(self.resume))]
            self.rejected["unconfirmed"] += sum(len(p[2]) for p in self.parked)
            self.parked = []
            self.next = self.high = self.sure = self.resume.pop(session, 1)  # a new session starts at 1
            self.given_up.clear()
        elif self.next is None:  # joining: start at the lowest sequence a well-formed packet showed
            seqs = held.pkt_seq if well is None or not well.any() else held.pkt_seq[well]
            self.next = self.high = self.sure = int(seqs.min())
        self.session, self.ended = session, False
        self.counters["sessions"] += 1
        self._run(held, now, out, well)

    def _run(self, dec: Decoded, now: float, out: list[Piece], well: np.ndarray | None = None) -> None:
        """One screened run of the current session (``well``: its well-formed packets, None for all): set
        aside broken copies ahead of the feed and park what is far ahead; sequence the rest."""
        if well is not None:
            if well.all():
                well = None
            else:
                dec, well = self._aside(dec, well)
                if not len(well):
                    return
        starts = dec.pkt_seq.astype(np.int64)
        if len(starts) and int(starts.max()) > self.high + self.max_jump:
            far = starts > self.high + self.max_jump
            if well is not None:
                far &= well  # a broken copy left here is within reach (see _aside)
            released = self._park(select(dec, far))
            if not far.all():
                self._sequence(select(dec, ~far), now, out, well=None if well is None else well[~far])
            if released is not None:
                self._sequence(released, now, out)
        else:
            self._sequence(dec, now, out, starts, well)
        while self.parked:  # the feed may have reached what waits aside (each round takes some out)
            near = [p for p in self.parked if p[0] <= self.high + (0 if p[3] else self.max_jump)]
            if not near:
                break
            self.parked = [p for p in self.parked if not any(p is q for q in near)]
            whole = np.concatenate([np.full(len(p[2].pkt_seq), not p[3]) for p in near])
            self._sequence(Decoded.concat([p[2] for p in near]), now, out, well=None if whole.all() else whole)

    def _aside(self, dec: Decoded, well: np.ndarray) -> tuple[Decoded, np.ndarray]:
        """Set aside the broken copies (not well-formed) that start beyond what the packets before them
        reached (the well-formed ones, and the broken ones kept): until the feed reaches them they announce
        nothing (no hole, no wait started), as if they had not come yet. Returns the rest and its
        well-formed mask."""
        starts = dec.pkt_seq.astype(np.int64)
        ends = starts + dec.pkt_nmsg
        reach = np.where(well & (starts <= self.high + self.max_jump), ends, self.high)
        before = np.r_[self.high, np.maximum.accumulate(reach)[:-1]]
        ahead = ~well & (starts > before)
        if not ahead.any():
            return dec, well
        kept = 0  # the broken ones kept (within reach) reach further: a loop over the broken ones (rare)
        for i in np.flatnonzero(~well).tolist():
            if starts[i] <= max(before[i], kept):
                ahead[i] = False
                kept = max(kept, int(ends[i]))
        if not ahead.any():
            return dec, well
        at = np.flatnonzero(ahead)
        if len(at) > self.max_parked:  # bounded: the good copies are still to come
            self.rejected["unconfirmed"] += int(dec.pkt_nmsg[at[self.max_parked:]].sum())
        for i in at[: self.max_parked].tolist():  # one iteration per packet set aside (rare, bounded)
            one = np.zeros(len(starts), bool)
            one[i] = True
            self.parked.append((int(starts[i]), int(starts[i] + dec.pkt_nmsg[i]), select(dec, one), True))
        self._bound_parked()
        return select(dec, ~ahead), well[~ahead]

    def _bound_parked(self) -> None:
        """At most ``max_parked`` wait aside: broken copies go first (their good copies are still to come)."""
        while len(self.parked) > self.max_parked:
            i = next((k for k, p in enumerate(self.parked) if p[3]), 0)
            self.rejected["unconfirmed"] += len(self.parked.pop(i)[2])

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
            match = [p for p in self.parked if not p[3] and (p[0] <= a <= p[1] or a <= p[0] <= b)]
            if match:
                self.parked = [p for p in self.parked if not any(p is m for m in match)]
                back += [p[2] for p in match] + [pkt]
                continue
            self.parked.append((a, b, pkt, False))
            self._bound_parked()
        return Decoded.concat(back) if back else None

    def _sequence(self, dec: Decoded, now: float, out: list[Piece], starts: np.ndarray | None = None,
                  well: np.ndarray | None = None) -> None:
        """Sequence screened packets of the current session (``starts``: their sequences as int64; ``well``:
        the well-formed ones, None for all). A broken one never opens a gap here (see ``_aside``)."""
        self.last_heard = now
        if dec.specials:  # heartbeats and ends of session (the decoder says when there are none)
            count, ok = dec.pkt_count, dec.pkt_error == OK
            self.counters["heartbeats"] += int(np.count_nonzero((count == 0) & ok))
            if n_eos := int(np.count_nonzero((count == END_OF_SESSION) & ok)):
                self.ended = True
                self.counters["end_of_session"] += n_eos
        if starts is None:
            starts = dec.pkt_seq.astype(np.int64)
        ends = starts + dec.pkt_nmsg
        if self.shortcuts and well is None and self._beyond(dec, starts, ends, now, out):
            return
        old_high = self.high
        before, self.high, gap = gap_scan(starts, ends, old_high)
        self._corroborate(gap, ends, well)
        holes = self.hole_table
        fresh = holes.extend(old_high, self.high, now)  # what was announced is a hole until it arrives
        if len(dec) == 0:
            self._deliver_ready(out)
            return
        s = dec.seq.astype(np.int64)
        nxt = self.next
        if not len(self.backlog) and s[0] == nxt and s[-1] == nxt + len(s) - 1 and (np.diff(s) == 1).all():
            out.append((dec, None))  # the common case: exactly the next messages, in order
            self.next = nxt + len(s)
            self.last_accepted += len(s)
            holes.fill(s, now, fresh)  # nothing buffered: at most the one hole [next, high), cut at its start
            return
        sel = None  # the messages of dec still in the running (None: all); nothing is copied here
        old = s < nxt
        if old.any():
            late = old & self.given_up.holding(s)
            n_late = int(np.count_nonzero(late))
            self.counters["late"] += n_late
            self.counters["duplicates"] += int(np.count_nonzero(old)) - n_late
            sel = np.flatnonzero(~old)
            s = s[sel]
        if not len(s):
            self._deliver_ready(out)
            return
        n_in = len(s)
        # accept each sequence once: its first copy in this burst, and only if it fills a hole
        if n_in > 1 and not (s[1:] > s[:-1]).all():
            s, first = np.unique(s, return_index=True)
            sel = first if sel is None else sel[first]
        new = holes.holding(s)
        if not new.all():
            s = s[new]
            sel = np.flatnonzero(new) if sel is None else sel[new]
        self.counters["duplicates"] += n_in - len(s)
        self.last_accepted += len(s)
        if len(s):
            pkt = dec.pkt if sel is None else dec.pkt[sel]
            self.counters["recovered"] += int(np.count_nonzero(s < before[pkt]))
            self.backlog.add(dec, s, sel)
            holes.fill(s, now, fresh)
        self._deliver_ready(out)

    def _corroborate(self, gap: np.ndarray, ends: np.ndarray, well: np.ndarray | None = None) -> None:
        """Count the gaps packets opened; a well-formed packet that opened none corroborates what comes
        before its end (a broken one corroborates nothing)."""
        cont = gap == 0
        if well is not None:
            cont &= well
        if cont.any():
            self.sure = max(self.sure, int(ends[cont].max()))
        if not cont.all():
            self.counters["gaps"] += int(np.count_nonzero(gap))
            self.counters["gap_messages"] += int(gap.sum())

    def _beyond(self, dec: Decoded, starts: np.ndarray, ends: np.ndarray, now: float, out: list[Piece]) -> bool:
        """The lossy line's usual burst, without sorting or searching: every packet at or beyond the
        high-water mark of the one before it (nothing old, nothing repeated, every message new). Its
        holes are then exactly the gaps in front of its packets, appended after every open hole. Same
        effects as the general path; False (and no effect) when it does not apply."""
        old_high = self.high
        gap = np.empty(len(starts), np.int64)
        gap[0] = int(starts[0]) - old_high
        np.subtract(starts[1:], ends[:-1], out=gap[1:])
        at = np.flatnonzero(gap)
        if len(at):
            opened = gap[at]
            if opened.min() < 0:  # a packet behind the one before it (or behind what is known)
                return False
        self.high = int(ends[-1])
        if len(at):
            size = int(opened.sum())
            self.counters["gaps"] += len(at)
            self.counters["gap_messages"] += size
            hs, he = starts[at] - opened, starts[at]
            if len(at) > 1 and (hs[1:] == he[:-1]).any():  # a heartbeat between two gaps: one hole, as
                first = np.r_[True, hs[1:] != he[:-1]]     # the general path makes (holes never touch)
                hs, he = hs[first], he[np.r_[first[1:], True]]
            self.hole_table.append(hs, he, size, now, joins=old_high)
            if at[-1] == len(gap) - 1:  # the last packet opened a gap: the last one that did not corroborates
                cont = np.flatnonzero(gap == 0)
                if len(cont):
                    self.sure = max(self.sure, int(ends[cont[-1]]))
            else:
                self.sure = max(self.sure, self.high)
        else:
            self.sure = max(self.sure, self.high)
        if len(dec):
            self.last_accepted += len(dec)
            self.backlog.add(dec, dec.seq)  # uint64 is fine: screened sequences stay below 2**63
        self._deliver_ready(out)
        return True

    def _deliver_ready(self, out: list[Piece]) -> None:
        """Deliver what the buffer holds before the first hole (or everything, without holes)."""
        ready = self.hole_table.first_start() if len(self.hole_table) else self.high
        if ready > self.next:
            out += self.backlog.take(ready)
            self.next = ready

    def _expire(self, now: float, out: list[Piece]) -> None:
        if self.candidates:
            self._decide(now, out)
        if self.next is None:
            return
        self._deliver_ready(out)
        k = self._expired(now)
        if k:
            self._skip(k, out)
        holes = self.hole_table
        if self.retransmit and self.session is not None and len(holes):
            m = min(len(holes), self.max_holes_requested)
            last, attempts = holes.col("last")[:m], holes.col("attempts")[:m]
            due = np.flatnonzero(~(now - last < self.retry_interval))  # NaN (never requested) is due
            if len(due):
                last[due] = now
                attempts[due] += 1
                st, en = holes.col("start")[due].tolist(), holes.col("end")[due].tolist()
                for a, b in zip(st, en, strict=True):
                    self.actions.append(RetransmitRequest(self.session, a, min(b - a, self.max_request)))
                self.counters["requests"] += len(due)

    def _expired(self, now: float) -> int:
        """How many of the oldest holes are given up now, in order: a hole goes once it waited
        ``give_up_after`` and the data after it is corroborated, or while the buffer is over its bound."""
        holes = self.hole_table
        n = len(holes)
        if not n:
            return 0
        over = len(self.backlog) > self.max_buffered
        if not over:  # the usual case: look hole by hole, a few at most (a burst's holes share a wait)
            en, si = holes.col("end"), holes.col("since")
            wait, sure = self.give_up_after, self.sure
            k = 0
            while k < n and k < 8 and now - si[k] >= wait and en[k] <= sure:
                k += 1
            if k < 8 or k == n:
                return k
        w = 16
        while True:  # look at a growing prefix: O(holes given up), not O(holes)
            m = min(w, n)
            st, en = holes.col("start")[:m], holes.col("end")[:m]
            go = (now - holes.col("since")[:m] >= self.give_up_after) & (en <= self.sure)
            if over:  # buffered beyond hole j once the holes before it are given up
                behind = (self.high - st) - (holes.total - np.r_[0, np.cumsum(en - st)[:-1]])
                go |= behind > self.max_buffered
            k = m if go.all() else int(np.argmin(go))
            if k < m or m == n:
                return k
            w *= 4

    def _skip(self, k: int, out: list[Piece]) -> None:
        """Give up the ``k`` oldest holes and deliver what waited behind them."""
        st, en, size = self.hole_table.pop(k)
        self.counters["missing"] += size
        self.given_up.add(st, en)
        self.next = int(en[-1])
        self._deliver_ready(out)

    def _give_up_all(self, out: list[Piece]) -> None:
        """The session ends: skip its corroborated holes; what waits beyond an uncorroborated one goes."""
        holes = self.hole_table
        if len(holes):
            ok = holes.col("end") <= self.sure
            k = len(ok) if ok.all() else int(np.argmin(ok))
            if k:
                self._skip(k, out)
        self._deliver_ready(out)
        self.rejected["unconfirmed"] += len(self.backlog)
        self.backlog.clear()
        holes.clear()
