"""Burst decoding: a whole ``Batch`` of MoldUDP64 datagrams to per-type ITCH record arrays in two C calls.

``csrc/mold.c`` splits every packet into blocks (per-message packet, offset, length, sequence, type,
error) and then copies the valid messages into one buffer grouped by type; numpy views each group as
the type's record dtype. Python work per burst is a handful of numpy calls, independent of its size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xdpgw._xsk import ffi, lib
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import (
    BLOCK_OVERRUN,
    END_OF_SESSION,
    ERROR_NAMES,
    HEADER_SIZE,
    OK,
)
from xdpgw.transport.base import Batch

_SIZES64 = itch.SIZE_TABLE.astype(np.int64)
_CODE_TO_TYPE = {ord(t): t for t in itch.TYPES}
_BY_CODE: list[tuple[str, np.dtype] | None] = [None] * 256  # code -> (letter, record dtype)
for _t in itch.TYPES:
    _BY_CODE[ord(_t)] = (_t, itch.DTYPES[_t])
_EMPTY_I32 = np.zeros(0, np.int32)
_VOID = {t: np.dtype((np.void, n)) for t, n in itch.SIZES.items()}
_I64, _U32 = np.dtype(np.int64), np.dtype(np.uint32)
# s->info layout written by xgw_mold_split (csrc/mold.c, XGW_MI_*)
_MI_PKT_ERR, _MI_TYPES, _MI_SIZE = 16, 32, 32 + 4 * 256
_SCRATCH = {"pkt_session": "p_sess", "pkt_seq": "p_seq", "pkt_count": "p_count", "pkt_nmsg": "p_nmsg",
            "pkt_err": "p_err", "msg_pkt": "m_pkt", "msg_off": "m_off", "msg_len": "m_len", "msg_seq": "m_seq",
            "msg_type": "m_type", "msg_err": "m_err"}


class BurstFacts:
    """What the splitter learnt about a *simple* burst, for O(1) in-order bookkeeping downstream.

    Simple: no decode error of any kind (every packet framed exactly, every message valid), one
    ``session``, every packet starting at the sequence where the one before it ended. Then the burst
    covers exactly ``[start, end)`` with no hole and no repeat; it has ``heartbeats`` heartbeats and
    ``end_of_session`` end-of-session packets.
    """

    __slots__ = ("session", "start", "end", "heartbeats", "end_of_session")

    def __init__(self, session: bytes, start: int, end: int, heartbeats: int, end_of_session: int) -> None:
        self.session, self.start, self.end = session, start, end
        self.heartbeats, self.end_of_session = heartbeats, end_of_session


@dataclass(slots=True)
class Decoded:
    """Decoded messages of one or more bursts, in delivery order.

    Per message *i* (valid or not): ``seq[i]``, ``pkt[i]`` (index into the per-packet arrays),
    ``type[i]`` (ASCII code, uint8), ``error[i]`` (0 or a ``moldudp64`` error code), ``length[i]``
    (the block length). Valid messages
    are also in ``by_type[letter]`` (record arrays with ``itch.DTYPES[letter]``), whose rows are
    messages ``index_by_type[letter]`` (increasing). Per packet: ``pkt_session`` (S10), ``pkt_seq``,
    ``pkt_count`` (header count; 0 heartbeat, 0xFFFF end of session), ``pkt_nmsg`` (blocks found; in
    what the sequencer delivers, the valid prefix it believed), ``pkt_error``, ``pkt_ts_ns``. ``errors`` counts the named decode errors. ``facts`` is set by
    the decoder on simple bursts (see :class:`BurstFacts`) and ``None`` on anything derived
    (``take``, ``concat``): whoever edits a ``Decoded`` in place must reset it to ``None``.
    """

    seq: np.ndarray
    pkt: np.ndarray
    type: np.ndarray
    error: np.ndarray
    length: np.ndarray
    by_type: dict[str, np.ndarray]
    index_by_type: dict[str, np.ndarray]
    pkt_session: np.ndarray
    pkt_seq: np.ndarray
    pkt_count: np.ndarray
    pkt_nmsg: np.ndarray
    pkt_error: np.ndarray
    pkt_ts_ns: np.ndarray
    errors: dict[str, int] = field(default_factory=dict)
    facts: BurstFacts | None = None

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def empty(cls) -> Decoded:
        u8, u64 = np.zeros(0, np.uint8), np.zeros(0, np.uint64)
        return cls(u64, np.zeros(0, np.int64), u8, u8, np.zeros(0, np.uint16), {}, {}, np.zeros(0, "S10"), u64,
                   np.zeros(0, np.uint16), np.zeros(0, np.uint32), u8, u64, {})

    # --- per-packet facts -------------------------------------------------------------------------
    @property
    def heartbeats(self) -> np.ndarray:
        """Mask of packets that are well-formed heartbeats (count 0, no blocks)."""
        return (self.pkt_count == 0) & (self.pkt_error == OK)

    @property
    def end_of_session(self) -> np.ndarray:
        """Mask of packets that announce the end of their session (well-formed: no blocks)."""
        return (self.pkt_count == END_OF_SESSION) & (self.pkt_error == OK)

    @property
    def valid(self) -> np.ndarray:
        """Mask of messages that decoded (known type, right length)."""
        return self.error == OK

    def counts_by_type(self) -> dict[str, int]:
        return {t: len(a) for t, a in self.by_type.items()}

    # --- selecting, merging -----------------------------------------------------------------------
    def take(self, idx: np.ndarray) -> Decoded:
        """The messages ``idx`` (indices or a boolean mask), in that order; packet arrays are kept."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        n = len(self.seq)
        pos = np.full(n, -1, dtype=np.int64)
        pos[idx] = np.arange(len(idx))
        monotonic = len(idx) < 2 or bool((idx[1:] > idx[:-1]).all())
        by_type, index_by_type = {}, {}
        for t, recs in self.by_type.items():
            p = pos[self.index_by_type[t]]
            keep = p >= 0
            if not keep.any():
                continue
            raw = recs.view(_VOID[t])  # unstructured copies are plain memcpy, much faster
            if not keep.all():
                p, raw = p[keep], raw[keep]
            if not monotonic and len(p) > 1 and (np.diff(p) < 0).any():
                order = np.argsort(p, kind="stable")
                p, raw = p[order], raw[order]
            by_type[t], index_by_type[t] = raw.view(itch.DTYPES[t]), p.astype(np.int32)
        return Decoded(self.seq[idx], self.pkt[idx], self.type[idx], self.error[idx], self.length[idx],
                       by_type, index_by_type,
                       self.pkt_session, self.pkt_seq, self.pkt_count, self.pkt_nmsg, self.pkt_error,
                       self.pkt_ts_ns, dict(self.errors))

    @staticmethod
    def concat(parts: list[Decoded]) -> Decoded:
        """One ``Decoded`` holding ``parts`` one after the other (packet indices are renumbered)."""
        parts = [p for p in parts if p is not None]
        if not parts:
            return Decoded.empty()
        if len(parts) == 1:
            return parts[0]
        moff = np.cumsum([0] + [len(p.seq) for p in parts])
        poff = np.cumsum([0] + [len(p.pkt_seq) for p in parts])
        by_type: dict[str, np.ndarray] = {}
        index_by_type: dict[str, np.ndarray] = {}
        for t in itch.TYPES:
            have = [(k, p) for k, p in enumerate(parts) if t in p.by_type]
            if have:
                # via raw bytes: concatenating big-endian records would convert them to native order
                by_type[t] = np.concatenate([p.by_type[t].view(_VOID[t]) for _, p in have]).view(itch.DTYPES[t])
                index_by_type[t] = np.concatenate(
                    [p.index_by_type[t] + np.int32(moff[k]) for k, p in have]).astype(np.int32)
        errors: dict[str, int] = {}
        for p in parts:
            for k, v in p.errors.items():
                errors[k] = errors.get(k, 0) + v

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        pkt = np.concatenate([p.pkt + poff[k] for k, p in enumerate(parts)])
        return Decoded(cat("seq"), pkt, cat("type"), cat("error"), cat("length"), by_type, index_by_type,
                       cat("pkt_session"), cat("pkt_seq"), cat("pkt_count"), cat("pkt_nmsg"),
                       cat("pkt_error"), cat("pkt_ts_ns"), errors)

    # --- per-message view (debugging and user code, off the hot path) -------------------------------
    def records(self) -> Iterator[tuple[int, np.void | None]]:
        """``(message index, record or None for an invalid message)`` in message order."""
        where: dict[int, tuple[str, int]] = {}
        for t, ix in self.index_by_type.items():
            for row, i in enumerate(ix.tolist()):
                where[i] = (t, row)
        for i in range(len(self.seq)):
            hit = where.get(i)
            yield i, (self.by_type[hit[0]][hit[1]] if hit else None)

    def messages(self, include_invalid: bool = False) -> Iterator[dict[str, Any]]:
        """Each message as a dict (``seq``, ``session``, ``type`` and the fields as Python values)."""
        for i, rec in self.records():
            if rec is None:
                if include_invalid:
                    yield {"seq": int(self.seq[i]), "type": chr(self.type[i]) if self.type[i] else "",
                           "error": ERROR_NAMES[int(self.error[i])]}
                continue
            d = itch.record_to_dict(rec)
            d["seq"] = int(self.seq[i])
            d["session"] = self.pkt_session[self.pkt[i]].decode("ascii", "replace").rstrip()
            yield d


class Decoder:
    """Reusable scratch space for :func:`decode_batch` (one per thread).

    The scratch arrays only grow; their C pointers are set once per growth in one struct, so a call
    costs two C calls, one copy per output array and one view per present type.
    """

    def __init__(self, capacity: int = 1 << 14, packets: int = 256) -> None:
        self._s = ffi.new("struct xgw_mold_scratch *")
        self._info = np.zeros(_MI_SIZE, np.int64)
        self._keep: list[Any] = []
        self._grow(capacity, packets)

    def _grow(self, msgs: int, pkts: int) -> None:
        self.cap_msgs, self.cap_pkts = msgs, pkts
        self.m_pkt = np.empty(msgs, np.int64)
        self.m_off = np.empty(msgs, np.int64)
        self.m_len = np.empty(msgs, np.uint16)
        self.m_seq = np.empty(msgs, np.uint64)
        self.m_type = np.empty(msgs, np.uint8)
        self.m_err = np.empty(msgs, np.uint8)
        self.p_sess = np.empty(pkts, "S10")
        self.p_seq = np.empty(pkts, np.uint64)
        self.p_count = np.empty(pkts, np.uint16)
        self.p_nmsg = np.empty(pkts, np.uint32)
        self.p_err = np.empty(pkts, np.uint8)
        s = self._s
        self._keep = [ffi.from_buffer(itch.SIZE_TABLE), ffi.from_buffer(self._info)]
        s.sizes = ffi.cast("uint8_t *", self._keep[0])
        s.info = ffi.cast("int64_t *", self._keep[1])
        s.cap_msgs = msgs
        for name, ctype in (("pkt_session", "char *"), ("pkt_seq", "uint64_t *"), ("pkt_count", "uint16_t *"),
                            ("pkt_nmsg", "uint32_t *"), ("pkt_err", "uint8_t *"), ("msg_pkt", "int64_t *"),
                            ("msg_off", "int64_t *"), ("msg_len", "uint16_t *"), ("msg_seq", "uint64_t *"),
                            ("msg_type", "uint8_t *"), ("msg_err", "uint8_t *")):
            arr = getattr(self, _SCRATCH[name])
            cdata = ffi.from_buffer(arr)
            self._keep.append(cdata)
            setattr(s, name, ffi.cast(ctype, cdata))

    def decode(self, batch: Batch) -> Decoded:
        n = batch.count
        if n == 0:
            return Decoded.empty()
        if n > self.cap_pkts:
            self._grow(self.cap_msgs, n)
        buf, offs, lens = batch.buf, batch.offsets, batch.lengths
        if not buf.flags.c_contiguous:
            buf = np.ascontiguousarray(buf)
        if offs.dtype != _I64 or not offs.flags.c_contiguous:
            offs = np.ascontiguousarray(offs[:n], dtype=np.int64)
        if lens.dtype != _U32 or not lens.flags.c_contiguous:
            lens = np.ascontiguousarray(lens[:n], dtype=np.uint32)
        pbuf = ffi.from_buffer("uint8_t[]", buf)
        poffs, plens = ffi.from_buffer("int64_t[]", offs), ffi.from_buffer("uint32_t[]", lens)
        m = lib.xgw_mold_split(self._s, pbuf, poffs, plens, n)
        if m < 0:  # more messages than scratch: grow to a bound (a message takes >= 2 bytes) and redo
            need = int(np.maximum(lens[:n].astype(np.int64) - HEADER_SIZE, 0).sum()) // 2 + 1
            self._grow(max(need, 2 * self.cap_msgs), self.cap_pkts)
            m = lib.xgw_mold_split(self._s, pbuf, poffs, plens, n)
            if m < 0:  # cannot happen given ``need``; kept as a guard against a bad Batch
                raise RuntimeError("MoldUDP64 splitter ran out of scratch space: report this as a bug")
        info = self._info
        _, nvalid, nbytes, ntypes, first, end, simple, hb, eos, bad = info[:10].tolist()
        by_type: dict[str, np.ndarray] = {}
        index_by_type: dict[str, np.ndarray] = {}
        if nvalid:
            out = np.empty(nbytes, np.uint8)
            order = np.empty(nvalid, np.int32)
            lib.xgw_mold_gather(self._s, pbuf, ffi.from_buffer("uint8_t[]", out), ffi.from_buffer("int32_t[]", order))
            ty = info[_MI_TYPES : _MI_TYPES + 4 * ntypes].tolist()
            it = iter(ty)
            for code, c, b, i in zip(it, it, it, it, strict=True):  # (code, count, byte, index) per type
                t, dt = _BY_CODE[code]
                by_type[t] = np.ndarray(c, dt, out, b)
                index_by_type[t] = order[i : i + c]
        errors: dict[str, int] = {}
        if bad:
            counts = info[_MI_PKT_ERR : _MI_PKT_ERR + 16].tolist()
            for code in (1, 2, BLOCK_OVERRUN, 12, 13):  # packet errors, then message errors (8 + code)
                if counts[code]:
                    errors[ERROR_NAMES[code & 7]] = counts[code]
        p_sess = self.p_sess[:n].copy()
        facts = BurstFacts(p_sess[0], first, end, hb, eos) if simple and not bad else None
        return Decoded(
            self.m_seq[:m].copy(), self.m_pkt[:m].copy(), self.m_type[:m].copy(), self.m_err[:m].copy(),
            self.m_len[:m].copy(), by_type, index_by_type, p_sess, self.p_seq[:n].copy(),
            self.p_count[:n].copy(), self.p_nmsg[:n].copy(), self.p_err[:n].copy(),
            batch.ts_ns[:n].astype(np.uint64), errors, facts)


_default = Decoder()


def decode_batch(batch: Batch, decoder: Decoder | None = None) -> Decoded:
    """Decode every MoldUDP64 datagram of ``batch``; malformed parts are counted, never raised."""
    return (decoder or _default).decode(batch)


def decode_payloads(payloads: list[bytes], ts_ns: int = 0) -> Decoded:
    """Convenience for tests and tools: decode datagrams given as bytes."""
    return decode_batch(Batch.from_payloads(payloads, ts_ns))
