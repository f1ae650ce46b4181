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
_EMPTY_I32 = np.zeros(0, np.int32)
_VOID = {t: np.dtype((np.void, n)) for t, n in itch.SIZES.items()}


def _ptr(a: np.ndarray, ctype: str) -> Any:
    return ffi.cast(ctype, a.ctypes.data)


@dataclass(slots=True)
class Decoded:
    """Decoded messages of one or more bursts, in delivery order.

    Per message *i* (valid or not): ``seq[i]``, ``pkt[i]`` (index into the per-packet arrays),
    ``type[i]`` (ASCII code, uint8), ``error[i]`` (0 or a ``moldudp64`` error code), ``length[i]``
    (the block length). Valid messages
    are also in ``by_type[letter]`` (record arrays with ``itch.DTYPES[letter]``), whose rows are
    messages ``index_by_type[letter]`` (increasing). Per packet: ``pkt_session`` (S10), ``pkt_seq``,
    ``pkt_count`` (header count; 0 heartbeat, 0xFFFF end of session), ``pkt_nmsg`` (blocks found),
    ``pkt_error``, ``pkt_ts_ns``. ``errors`` counts the named decode errors.
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
        """Mask of packets that announce the end of their session."""
        return (self.pkt_count == END_OF_SESSION) & (self.pkt_error != 1)

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
    """Reusable scratch space for :func:`decode_batch` (one per thread)."""

    def __init__(self, capacity: int = 1 << 14) -> None:
        self._grow(capacity, 256)

    def _grow(self, msgs: int, pkts: int) -> None:
        self.cap_msgs, self.cap_pkts = msgs, pkts
        self.m_pkt = np.empty(msgs, np.uint32)
        self.m_off = np.empty(msgs, np.int64)
        self.m_len = np.empty(msgs, np.uint16)
        self.m_seq = np.empty(msgs, np.uint64)
        self.m_type = np.empty(msgs, np.uint8)
        self.m_err = np.empty(msgs, np.uint8)
        self.p_sess = np.empty(pkts, "S10")
        self.p_seq = np.empty(pkts, np.uint64)
        self.p_count = np.empty(pkts, np.uint16)
        self.p_nmsg = np.empty(pkts, np.uint32)
        self.p_first = np.empty(pkts, np.int64)
        self.p_err = np.empty(pkts, np.uint8)
        self.type_count = np.zeros(256, np.uint32)

    def decode(self, batch: Batch) -> Decoded:
        n = batch.count
        if n == 0:
            return Decoded.empty()
        offs = np.ascontiguousarray(batch.offsets[:n], dtype=np.int64)
        lens = np.ascontiguousarray(batch.lengths[:n], dtype=np.uint32)
        buf = batch.buf
        if not buf.flags.c_contiguous:
            buf = np.ascontiguousarray(buf)
        # A message takes at least 2 bytes beyond the header, so this bound never overflows.
        need = int(np.maximum(lens.astype(np.int64) - HEADER_SIZE, 0).sum()) // 2 + 1
        if need > self.cap_msgs or n > self.cap_pkts:
            self._grow(max(need, self.cap_msgs), max(n, self.cap_pkts))
        tc = self.type_count
        tc[:] = 0
        m = lib.xgw_mold_split(
            _ptr(buf, "uint8_t *"), _ptr(offs, "int64_t *"), _ptr(lens, "uint32_t *"), n,
            _ptr(itch.SIZE_TABLE, "uint8_t *"), _ptr(self.p_sess, "char *"), _ptr(self.p_seq, "uint64_t *"),
            _ptr(self.p_count, "uint16_t *"), _ptr(self.p_nmsg, "uint32_t *"), _ptr(self.p_first, "int64_t *"),
            _ptr(self.p_err, "uint8_t *"), _ptr(self.m_pkt, "uint32_t *"), _ptr(self.m_off, "int64_t *"),
            _ptr(self.m_len, "uint16_t *"), _ptr(self.m_seq, "uint64_t *"), _ptr(self.m_type, "uint8_t *"),
            _ptr(self.m_err, "uint8_t *"), self.cap_msgs, _ptr(tc, "uint32_t *"))
        if m < 0:  # cannot happen given ``need``; kept as a guard against a bad Batch
            raise RuntimeError("MoldUDP64 splitter ran out of scratch space: report this as a bug")
        counts = tc.astype(np.int64)
        nbytes = counts * _SIZES64
        bstart = np.zeros(256, np.int64)
        np.cumsum(nbytes[:-1], out=bstart[1:])
        istart = np.zeros(256, np.int64)
        np.cumsum(counts[:-1], out=istart[1:])
        nvalid = int(istart[-1] + counts[-1])
        out = np.empty(int(bstart[-1] + nbytes[-1]), np.uint8)
        order = np.empty(nvalid, np.int32) if nvalid else _EMPTY_I32
        if nvalid:
            lib.xgw_mold_gather(
                _ptr(buf, "uint8_t *"), _ptr(self.m_off, "int64_t *"), _ptr(self.m_type, "uint8_t *"),
                _ptr(self.m_err, "uint8_t *"), m, _ptr(itch.SIZE_TABLE, "uint8_t *"),
                _ptr(bstart, "int64_t *"), _ptr(istart, "int64_t *"), _ptr(out, "uint8_t *"),
                _ptr(order, "int32_t *"))
        by_type: dict[str, np.ndarray] = {}
        index_by_type: dict[str, np.ndarray] = {}
        for code in np.flatnonzero(counts).tolist():
            t = _CODE_TO_TYPE[code]
            b, c = int(bstart[code]), int(counts[code])
            by_type[t] = out[b : b + c * itch.SIZES[t]].view(itch.DTYPES[t])
            index_by_type[t] = order[istart[code] : istart[code] + c]
        errors: dict[str, int] = {}
        p_err = self.p_err[:n]
        m_err = self.m_err[:m]
        if p_err.any():
            pc = np.bincount(p_err, minlength=6)
            for code in (1, 2, BLOCK_OVERRUN):
                if pc[code]:
                    errors[ERROR_NAMES[code]] = int(pc[code])
        if nvalid != m:
            mc = np.bincount(m_err, minlength=6)
            for code in (4, 5):
                if mc[code]:
                    errors[ERROR_NAMES[code]] = int(mc[code])
        return Decoded(
            self.m_seq[:m].copy(), self.m_pkt[:m].astype(np.int64), self.m_type[:m].copy(), m_err.copy(),
            self.m_len[:m].copy(), by_type, index_by_type, self.p_sess[:n].copy(), self.p_seq[:n].copy(), self.p_count[:n].copy(),
            self.p_nmsg[:n].copy(), p_err.copy(), np.asarray(batch.ts_ns[:n], np.uint64).copy(), errors)


_default = Decoder()


def decode_batch(batch: Batch, decoder: Decoder | None = None) -> Decoded:
    """Decode every MoldUDP64 datagram of ``batch``; malformed parts are counted, never raised."""
    return (decoder or _default).decode(batch)


def decode_payloads(payloads: list[bytes], ts_ns: int = 0) -> Decoded:
    """Convenience for tests and tools: decode datagrams given as bytes."""
    return decode_batch(Batch.from_payloads(payloads, ts_ns))
