"""The in-order fast path: one C call per burst (``xdpgw/_native/fastpath.c``) for the common case of a feed.

A :class:`~xdpgw.pipeline.feed.FeedHandler` *arms* its :class:`FastPath` whenever the sequencer's state makes an
in-order burst trivial (a confirmed session, nothing missing, buffered, parked or waiting to be requested;
with A/B lines, for a line at the front of the merged stream). A retransmission client is allowed (a burst
is taken only while no answer waits on its socket), and so are other sessions held while they prove
themselves (until the first of them is due to be given up). With A/B lines, a line behind the front whose
burst continues its own stream and ends at or before the front (line B's copies of what line A delivered)
is counted as duplicates in C too. While armed, a burst whose packets all belong to that session and
continue it exactly, framed exactly, with only valid ITCH messages (heartbeats allowed), is split,
checked, filtered by the subscription (locates learnt from ``R`` in place), copied into preallocated
per-type arrays, counted and latency-stamped in C; Python gets the number of delivered messages and a
reused :class:`InOrderBurst` that views the arrays. Anything else returns ``DEFER`` without any effect:
the feed handler then *syncs* (the C state and counters go back into the sequencer, which stays the
source of truth), runs the general path and re-arms. At start-up (one line, no session yet) it is armed to
*prove* the first session as the sequencer would (two well-formed packets that chain): a burst whose packets
chain exactly is delivered in C and its session adopted at the next sync; a lone first packet is copied aside
(``hold``) until a burst continues it, and handed to the sequencer (at the time it came) on any other sync.
The property tests in ``tests/protocol/test_fast_path.py`` hold both paths to the same deliveries and counters.

Steady state allocates nothing: the arrays are made (and their pages touched) once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xdpgw._native._xsk import ffi, lib
from xdpgw.batch import Batch
from xdpgw.protocol import itch
from xdpgw.protocol.decode import _BY_CODE, Decoded

DEFER = lib.XGW_FAST_DEFER
_MAX_SIZE = int(itch.SIZE_TABLE.max())
_STOCK_OFF = np.zeros(256, np.uint8)  # byte offset of the stock field by type code (0: none)
for _t, _dt in itch.DTYPES.items():
    if "stock" in _dt.names:
        _STOCK_OFF[ord(_t)] = _dt.fields["stock"][1]


def _array(n: int, dtype: Any) -> np.ndarray:
    a = np.zeros(n, dtype)
    a.view(np.uint8)[:] = 1  # touch every page now (no page fault on the hot path) ...
    a.view(np.uint8)[:] = 0  # ... and leave zeros
    return a


class InOrderBurst(Decoded):
    """What the fast path delivers: a :class:`Decoded` whose arrays view the fast path's buffers.

    Valid until the next burst (like a receiver's ``Batch``): copy what you keep. Every message is
    valid and of one session; views are made on first use, so an untouched field costs nothing.
    """

    def __init__(self, fp: FastPath) -> None:  # noqa: D107 (not the dataclass __init__: fields are views)
        self._fp = fp
        self.n = 0
        self.errors, self.facts, self._specials, self._ring, self._lazy = {}, None, 0, None, None
        self._clean = None
        self._reset()

    def _reset(self) -> None:
        self._types = self._index = self._pack = self._gkey = None

    def __len__(self) -> int:
        return self.n

    # message arrays
    seq = property(lambda self: self._fp.m_seq[: self.n])
    pkt = property(lambda self: self._fp.m_pkt[: self.n])
    type = property(lambda self: self._fp.m_type[: self.n])
    error = property(lambda self: self._fp.m_err[: self.n])
    length = property(lambda self: self._fp.m_len[: self.n])
    _grouped = property(lambda self: self._fp.order[: self.n])
    _raw = property(lambda self: self._fp.records[: int(self._fp.s.nbytes)])
    # packet arrays
    pkt_session = property(lambda self: self._fp.p_session[: self._fp.s.npkts])
    pkt_seq = property(lambda self: self._fp.p_seq[: self._fp.s.npkts])
    pkt_count = property(lambda self: self._fp.p_count[: self._fp.s.npkts])
    pkt_nmsg = property(lambda self: self._fp.p_nmsg[: self._fp.s.npkts])
    pkt_error = property(lambda self: self._fp.p_err[: self._fp.s.npkts])
    pkt_ts_ns = property(lambda self: self._fp.p_ts[: self._fp.s.npkts])

    def _build_types(self) -> None:
        fp = self._fp
        by_type, index_by_type = {}, {}
        order = fp.order
        for code, c, b, i in fp.types[: 4 * fp.s.ntypes].reshape(-1, 4).tolist():
            t, dt = _BY_CODE[code]
            by_type[t] = np.ndarray(c, dt, fp.records, b)
            index_by_type[t] = order[i : i + c]
        self._types, self._index = by_type, index_by_type

    def records_of(self, letter: str) -> np.ndarray | None:
        return self.by_type.get(letter)


class FastPath:
    """The C fast path's state and buffers for one feed handler (see the module docstring)."""

    def __init__(self, feed: Any, max_messages: int = 1 << 14, max_packets: int = 1024,
                 trace: int = 0, hold_bytes: int = 1 << 16) -> None:
        self.feed = feed
        s = self.s = ffi.new("struct xgw_fast *")
        self.m_seq, self.m_pkt = _array(max_messages, np.uint64), _array(max_messages, np.int64)
        self.m_type, self.m_err = _array(max_messages, np.uint8), _array(max_messages, np.uint8)
        self.m_len, self.order = _array(max_messages, np.uint16), _array(max_messages, np.int32)
        self.records = _array(max_messages * _MAX_SIZE, np.uint8)
        self.scratch = _array(max_messages, np.int64)
        self.p_session, self.p_seq = _array(max_packets, "S10"), _array(max_packets, np.uint64)
        self.p_count, self.p_nmsg = _array(max_packets, np.uint16), _array(max_packets, np.uint32)
        self.p_err, self.p_ts = _array(max_packets, np.uint8), _array(max_packets, np.uint64)
        self.types = _array(4 * 256, np.int64)
        self.hold = _array(hold_bytes, np.uint8)  # a lone first packet, until the next burst proves its session
        self.l_offs, self.l_lens = _array(2 * max_packets, np.int64), _array(2 * max_packets, np.uint32)
        self.l_ts = _array(2 * max_packets, np.uint64)
        self._sizes, self._stock = itch.SIZE_TABLE, _STOCK_OFF
        sub = feed.subscription
        self._symbols = np.ascontiguousarray(sub.symbols)
        keep = self._keep = {}

        def ptr(name: str, ctype: str, arr: np.ndarray) -> None:
            keep[name] = ffi.from_buffer(arr)
            setattr(s, name, ffi.cast(ctype, keep[name]))

        for name, ctype, arr in (
                ("m_seq", "uint64_t *", self.m_seq), ("m_pkt", "int64_t *", self.m_pkt),
                ("m_type", "uint8_t *", self.m_type), ("m_len", "uint16_t *", self.m_len),
                ("order", "int32_t *", self.order), ("records", "uint8_t *", self.records),
                ("scratch_off", "int64_t *", self.scratch), ("p_session", "char *", self.p_session),
                ("p_seq", "uint64_t *", self.p_seq), ("p_count", "uint16_t *", self.p_count),
                ("p_nmsg", "uint32_t *", self.p_nmsg), ("p_ts", "uint64_t *", self.p_ts),
                ("types", "int64_t *", self.types), ("sizes", "uint8_t *", self._sizes),
                ("stock_off", "uint8_t *", self._stock), ("wanted", "uint8_t *", sub.wanted.view(np.uint8)),
                ("names", "uint8_t *", sub.names), ("type_counts", "int64_t *", feed._type_counts),
                ("l_offs", "int64_t *", self.l_offs), ("l_lens", "uint32_t *", self.l_lens),
                ("l_ts", "uint64_t *", self.l_ts), ("hold", "uint8_t *", self.hold)):
            ptr(name, ctype, arr)
        s.client_fd = -1
        if len(self._symbols):
            ptr("symbols", "uint8_t *", self._symbols)
        s.nsymbols = len(self._symbols)
        s.keep_all = int(sub.all)
        s.cap_msgs, s.cap_pkts, s.cap_bytes = max_messages, max_packets, len(self.records)
        s.cap_hold = hold_bytes
        self.trace: np.ndarray | None = None
        if trace:
            self.set_trace(trace)
        self.out = InOrderBurst(self)
        self.enabled = True
        self.arm()  # at start-up: the first session may be proven in C (``proving``)

    # --- running -----------------------------------------------------------------------------------
    def run(self, buf: Any, offs: Any, lens: Any, ts: Any, n: int, now: float, t_poll: int = 0,
            line: int = 0) -> int:
        """One burst given as C pointers (see ``Receiver.c_arrays``): delivered messages, or ``DEFER``."""
        return self.took(lib.xgw_fast_burst(self.s, buf, offs, lens, ts, n, line, now, t_poll))

    def took(self, k: int) -> int:
        """After a C call: ``k`` messages are in ``out`` (its cached views are stale), or, on ``DEFER``,
        the state goes back to the sequencer (sync) for the general path."""
        if k >= 0:
            out = self.out
            out.n = k
            out._types = out._index = out._pack = out._gkey = None
        else:
            self.sync()
        return k

    def run_lines(self, buf: Any, offs: Any, lens: Any, ts: Any, dports: Any, n: int, port_b: int, now: float,
                  t_poll: int = 0) -> int:
        """One burst carrying both lines (line B: UDP destination port ``port_b``; ``dports``: each packet's,
        as ``Batch.dports``): delivered messages, or ``DEFER``; with ``s.defer_b`` set, line B's packets still
        need the general path (``line_b_batch``)."""
        k = self.took(lib.xgw_fast_lines(self.s, buf, offs, lens, ts, dports, n, port_b, now, t_poll))
        if self.s.l_count[1]:
            self.feed.arbitrating = True  # as on_batch(…, line=1) notes it
        return k

    def line_b_batch(self, buf: np.ndarray) -> Any:
        """Line B's packets of the last ``run_lines`` burst, as a ``Batch`` over ``buf`` (the general path's)."""
        cap, nb = int(self.s.cap_pkts), int(self.s.l_count[1])
        return Batch(buf, self.l_offs[cap : cap + nb], self.l_lens[cap : cap + nb], self.l_ts[cap : cap + nb])

    def idle(self, now: float) -> bool:
        """Armed, and an idle poll of the general path would do nothing now (see ``xgw_fast_idle``)."""
        return bool(lib.xgw_fast_idle(self.s, now))

    def run_batch(self, batch: Any, now: float, line: int = 0) -> int:
        """One ``Batch`` (makes C pointers: for callers without a receiver's fixed arrays)."""
        n = batch.count
        offs = np.ascontiguousarray(batch.offsets[:n], np.int64)
        lens = np.ascontiguousarray(batch.lengths[:n], np.uint32)
        ts = np.ascontiguousarray(batch.ts_ns[:n], np.uint64)
        s = self.s
        latency, trace = s.latency, s.trace  # whoever hands over a Batch stamps and traces it (Gateway._consume)
        s.latency, s.trace = ffi.NULL, ffi.NULL
        try:
            return self.run(ffi.from_buffer("uint8_t[]", batch.buf), ffi.from_buffer("int64_t[]", offs),
                            ffi.from_buffer("uint32_t[]", lens), ffi.from_buffer("uint64_t[]", ts), n, now, 0, line)
        finally:
            s.latency, s.trace = latency, trace

    @property
    def armed(self) -> bool:
        return bool(self.s.armed)

    def takes(self, line: int = 0) -> bool:
        """May a burst from ``line`` try the C fast path now (armed, a duplicate lane, or proving)?"""
        s = self.s
        return bool(((s.armed | s.dup_ok | s.proving) >> line) & 1)

    def arm(self) -> bool:
        """Arm when the feed handler's state makes an in-order burst trivial (see the module docstring)."""
        feed, s = self.feed, self.s
        q, sub = feed.sequencer, feed.subscription
        ok = (self.enabled and q.shortcuts
              and q.session is not None and q.next is not None and q.high == q.next and not q.ended
              and not len(q.hole_table) and not len(q.backlog) and not q.parked and not q.actions
              and (not q.candidates or q.session_timeout > 0)
              and sub.session == q.session and q.next < 1 << 62)
        lines, known = 1, 0
        if ok and not feed.single_line:  # A/B: the lines at the front of the merged stream, no line hole open
            arb = feed.arbiter.lines
            if len(arb) > 2 or any(len(ln.open) for ln in arb):
                lines = 0
            else:
                lines = sum(1 << i for i, ln in enumerate(arb) if ln.session == q.session and ln.high == q.next)
                known = sum(1 << i for i, ln in enumerate(arb) if ln.session == q.session and ln.high is not None)
                for i, ln in enumerate(arb):
                    s.line_high[i] = ln.high if known >> i & 1 else 0
        if ok and (lines or known):
            ffi.memmove(s.session, q.session, 10)
            s.next, s.sure, s.last_heard = q.next, q.sure, q.last_heard if q.last_heard is not None else 0.0
            s.dup_floor = int(q.given_up.col("end")[-1]) if len(q.given_up) else 0
            s.client_fd = feed.client.fileno() if feed.client is not None else -1
            held = q.candidates.values()  # other sessions proving themselves: the first give-up is due at
            s.expires = min(c.last for c in held) + q.session_timeout if held else 0.0
            s.proven, s.session_timeout = any(c.chain >= 2 for c in held), q.session_timeout
        s.armed, s.dup_ok = (lines, known) if ok else (0, 0)
        s.proving = self._may_prove()
        return bool(s.armed)

    def _may_prove(self) -> bool:
        """Start-up, one line: no session followed, held, ended or left behind, nothing buffered, parked or
        requested; then C may prove the first session as the sequencer would (``xgw_fast_prove``). The
        bounds make sure the sequencer would neither park nor turn away what C takes."""
        feed, s = self.feed, self.s
        q = feed.sequencer
        ok = (self.enabled and q.shortcuts and feed.single_line and q.session is None and not q.ended
              and not q.candidates and not q.parked and not len(q.backlog) and not len(q.hole_table)
              and not q.actions and not q.old_sessions and not q.resume and feed.subscription.session is None
              and min(q.max_buffered, q.max_jump) >= s.cap_msgs and (q.next is None or 0 < q.next < 1 << 62))
        if ok:
            s.next = q.next or 0
            s.expires = s.proven = s.dup_floor = 0
            s.client_fd = feed.client.fileno() if feed.client is not None else -1
        return ok

    def sync(self) -> None:
        """Disarm and hand the C state and pending counters back to the sequencer and feed handler."""
        s = self.s
        s.armed = s.dup_ok = s.proving = 0
        if s.hold_len:
            self._hand_over_hold()
        if not s.bursts:
            return
        q, c = self.feed.sequencer, self.feed.sequencer.counters
        if s.adopted:  # C proved the first session: what the sequencer's adoption of it does
            s.adopted = 0
            q.adopt_proven(bytes(ffi.buffer(s.session, 10)))
            self.feed.subscription.follow(q.session)
        q.next = q.high = int(s.next)
        q.sure = int(s.sure)
        q.last_heard = s.last_heard
        c["received"] += s.delivered + s.duplicates  # in order: delivered; behind the front: duplicates
        c["delivered"] += s.delivered
        c["duplicates"] += s.duplicates
        c["heartbeats"] += s.heartbeats
        self.feed.delivered += s.kept
        self.feed.filtered += s.delivered - s.kept
        s.delivered = s.heartbeats = s.kept = s.bursts = s.duplicates = 0
        if not self.feed.single_line:
            for i, ln in enumerate(self.feed.arbiter.lines[:2]):
                if s.line_bursts[i]:
                    ln.high = int(s.line_high[i])
                    ln.c["packets"] += s.line_packets[i]
                    ln.c["messages"] += s.line_messages[i]
                    ln.c["first"] += s.line_first[i]
        for i in (0, 1):
            s.line_bursts[i] = s.line_packets[i] = s.line_messages[i] = s.line_first[i] = 0

    def flush(self) -> None:
        """Hand pending counters back without disarming (for readers of stats)."""
        s = self.s
        if s.hold_len:  # the sequencer holds it from now on: arm for that state
            self.sync()
            self.arm()
        elif s.bursts:
            armed, dup_ok, proving = s.armed, s.dup_ok, s.proving
            self.sync()
            s.armed, s.dup_ok, s.proving = armed, dup_ok, proving

    def _hand_over_hold(self) -> None:
        """The lone first packet C held goes to the sequencer as it would have gone when it came (a session
        candidate, at that time): its bytes are decoded and sequenced now, with nothing delivered."""
        s = self.s
        n, s.hold_len = int(s.hold_len), 0
        one = Batch(self.hold, np.zeros(1, np.int64), np.full(1, n, np.uint32), np.full(1, s.hold_ts, np.uint64), 1)
        feed = self.feed
        feed.sequencer.on_decoded(feed._decode(one), s.hold_now, 0)  # line 0: C proves on one line only

    # --- latency and flight recorder ------------------------------------------------------------------
    def set_trace(self, entries: int) -> np.ndarray:
        """Keep the last ``entries`` bursts' timestamps (see ``XGW_TR_*`` in xdpgw/_native/fastpath.h)."""
        self.trace = _array(entries * lib.XGW_TRACE_COLS, np.int64).reshape(entries, lib.XGW_TRACE_COLS)
        self._keep["trace"] = ffi.from_buffer(self.trace)
        self.s.trace = ffi.cast("int64_t *", self._keep["trace"])
        self.s.trace_cap, self.s.trace_n = entries, 0
        return self.trace
