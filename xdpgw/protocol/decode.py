"""Burst decoding: a whole ``Batch`` of MoldUDP64 datagrams to per-type ITCH record arrays in two C calls.

``xdpgw/_native/mold.c`` splits every packet into blocks (per-message packet, offset, length, sequence, type,
error) and then copies the valid messages into one buffer grouped by type; numpy views each group as
the type's record dtype. Python work per burst is a handful of numpy calls, independent of its size.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xdpgw._native._mold import ffi, lib
from xdpgw.batch import Batch
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import (
    BAD_LENGTH,
    BLOCK_OVERRUN,
    COUNT_MISMATCH,
    END_OF_SESSION,
    ERROR_NAMES,
    HEADER_SIZE,
    OK,
    SHORT_PACKET,
    UNKNOWN_TYPE,
)

_SIZES64 = itch.SIZE_TABLE.astype(np.int64)
_CODE_TO_TYPE = {ord(t): t for t in itch.TYPES}
_BY_CODE: list[tuple[str, np.dtype] | None] = [None] * 256  # code -> (letter, record dtype)
for _t in itch.TYPES:
    _BY_CODE[ord(_t)] = (_t, itch.DTYPES[_t])
_EMPTY_I32 = np.zeros(0, np.int32)
_VOID = {t: np.dtype((np.void, n)) for t, n in itch.SIZES.items()}
_I64, _U32 = np.dtype(np.int64), np.dtype(np.uint32)
# s->info layout written by xgw_mold_split (enum xgw_mold_info in xdpgw/_native/mold.h)
_MI_PKT_ERR, _MI_MSG_ERR, _MI_TYPES, _MI_SIZE = lib.XGW_MI_PKT_ERR, lib.XGW_MI_MSG_ERR, lib.XGW_MI_TYPES, lib.XGW_MI_SIZE
_MI_HEAD = lib.XGW_MI_ERRORS + 1  # NMSG, NVALID, OUT_BYTES, NTYPES, FIRST, END, SIMPLE, HEARTBEATS, EOS, ERRORS
_ERROR_SLOTS = [(_MI_PKT_ERR + c, ERROR_NAMES[c]) for c in (SHORT_PACKET, COUNT_MISMATCH, BLOCK_OVERRUN)] + [
    (_MI_MSG_ERR + c, ERROR_NAMES[c]) for c in (UNKNOWN_TYPE, BAD_LENGTH)]  # packet errors, then message errors


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

    ``by_type``/``index_by_type`` are properties: for a decoded burst the per-type views are made on
    first use (``records_of`` fetches one type alone). The arrays may be views of the decoder's blocks
    (see :class:`Decoder`). Message arrays are never edited in place (``take``/``slice``/``concat``
    make new objects), so each object may cache how its records lie in memory: ``_raw`` holds every
    valid record grouped by type (ascending code, message order within a type, as the decoder's C
    gather writes them) with ``_grouped`` the message of each record; ``_pack`` is ``(bytes,
    per-message byte offset)``. That lets ``take``/``concat`` (:func:`gather`) regroup all records in
    one C call instead of one copy per type.
    """

    seq: np.ndarray
    pkt: np.ndarray
    type: np.ndarray
    error: np.ndarray
    length: np.ndarray
    _types: dict[str, np.ndarray] | None  # by_type (None until built from _lazy)
    _index: dict[str, np.ndarray] | None  # index_by_type (likewise)
    pkt_session: np.ndarray
    pkt_seq: np.ndarray
    pkt_count: np.ndarray
    pkt_nmsg: np.ndarray
    pkt_error: np.ndarray
    pkt_ts_ns: np.ndarray
    errors: dict[str, int] = field(default_factory=dict)
    facts: BurstFacts | None = None
    _raw: np.ndarray | None = field(default=None, repr=False, compare=False)
    _grouped: np.ndarray | None = field(default=None, repr=False, compare=False)
    _pack: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)
    _specials: int = field(default=-1, repr=False, compare=False)  # heartbeats + ends of session; -1: unknown
    _clean: bytes | None = field(default=None, repr=False, compare=False)  # all valid, all of this session
    _gkey: tuple[np.ndarray, list[int], np.ndarray] | None = field(default=None, repr=False, compare=False)
    _ring: tuple | None = field(default=None, repr=False, compare=False)  # where the decoder put it (Decoder)
    _lazy: list[int] | None = field(default=None, repr=False, compare=False)  # the decoder's type table

    @property
    def by_type(self) -> dict[str, np.ndarray]:
        if self._types is None:
            self._build_types()
        return self._types  # type: ignore[return-value]

    @property
    def index_by_type(self) -> dict[str, np.ndarray]:
        if self._index is None:
            self._build_types()
        return self._index  # type: ignore[return-value]

    def records_of(self, letter: str) -> np.ndarray | None:
        """``by_type.get(letter)``, without making the other types' views of a decoded burst."""
        if self._types is None and self._lazy is not None:
            code, tab = ord(letter), self._lazy
            for k in range(0, len(tab), 4):
                if tab[k] == code:
                    return np.ndarray(tab[k + 1], itch.DTYPES[letter], self._raw, tab[k + 2])
            return None
        return self.by_type.get(letter)

    def _build_types(self) -> None:
        """The per-type views of a decoded burst, made on first use: a burst that waits behind a hole
        and then leaves through :func:`gather` never needs them."""
        by_type: dict[str, np.ndarray] = {}
        index_by_type: dict[str, np.ndarray] = {}
        out, order, it = self._raw, self._grouped, iter(self._lazy or ())
        for code, c, b, i in zip(it, it, it, it, strict=True):  # (code, count, byte, index) per type
            t, dt = _BY_CODE[code]
            by_type[t] = np.ndarray(c, dt, out, b)
            index_by_type[t] = order[i : i + c]
        self._types, self._index = by_type, index_by_type

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def empty(cls) -> Decoded:
        u8, u64 = np.zeros(0, np.uint8), np.zeros(0, np.uint64)
        return cls(u64, np.zeros(0, np.int64), u8, u8, np.zeros(0, np.uint16), {}, {}, np.zeros(0, "S10"), u64,
                   np.zeros(0, np.uint16), np.zeros(0, np.uint32), u8, u64, {})

    @property
    def specials(self) -> bool:
        """May it hold a heartbeat or an end of session? (False only when the decoder saw none.)"""
        return self._specials != 0

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
        return gather([self], [idx])

    def slice(self, a: int, b: int) -> Decoded:
        """Messages ``a`` to ``b - 1`` as views (a few numpy calls whatever the types); packet arrays kept."""
        by_type: dict[str, np.ndarray] = {}
        index_by_type: dict[str, np.ndarray] = {}
        if self.by_type:
            key, starts, grp = self._gkey or self._group_key()
            rows = key.searchsorted(np.concatenate((grp + a, grp + b))).tolist()
            nt = len(starts)
            rel = self._grouped_index() - np.int32(a)
            for t, i0, lo, hi in zip(self.by_type, starts, rows[:nt], rows[nt:], strict=True):
                if hi > lo:
                    by_type[t], index_by_type[t] = self.by_type[t][lo - i0 : hi - i0], rel[lo:hi]
        pack = None if self._pack is None else (self._pack[0], self._pack[1][a:b])
        return Decoded(self.seq[a:b], self.pkt[a:b], self.type[a:b], self.error[a:b], self.length[a:b],
                       by_type, index_by_type,
                       self.pkt_session, self.pkt_seq, self.pkt_count, self.pkt_nmsg, self.pkt_error,
                       self.pkt_ts_ns, dict(self.errors), _pack=pack)

    @staticmethod
    def concat(parts: list[Decoded]) -> Decoded:
        """One ``Decoded`` holding ``parts`` one after the other (packet indices are renumbered)."""
        parts = [p for p in parts if p is not None]
        if not parts:
            return Decoded.empty()
        if len(parts) == 1:
            return parts[0]
        return gather(parts)

    # --- memory layout (see the class docstring) ----------------------------------------------------
    def packing(self) -> tuple[np.ndarray, np.ndarray]:
        """``(record bytes, per-message byte offset into them)``; offsets of invalid messages mean nothing."""
        if self._pack is None:
            off = np.zeros(len(self.seq), np.int64)
            if self._raw is not None or self.by_type:
                raw, grouped = self._raw, self._grouped_index()
                if raw is None:
                    raw = np.concatenate([_as_bytes(r) for r in self.by_type.values()])
                sz = _SIZES64.take(self.type.take(grouped))
                starts = sz.cumsum()
                starts -= sz
                off[grouped] = starts
            else:
                raw = _NO_BYTES
            self._pack = (raw, off)
        return self._pack

    def _grouped_index(self) -> np.ndarray:
        """Every valid message's index, type group after type group (in ``by_type`` order)."""
        if self._grouped is None:
            ix = list(self.index_by_type.values())
            self._grouped = (ix[0] if len(ix) == 1 else np.concatenate(ix)) if ix else _EMPTY_I32
        return self._grouped

    def _group_key(self) -> tuple[np.ndarray, list[int], np.ndarray]:
        """A sorted key over ``_grouped_index`` (group number << 32 | message index), each group's
        first position, and each group's number << 32: one ``searchsorted`` finds rows of every type."""
        counts = [len(r) for r in self.by_type.values()]
        starts = np.cumsum([0] + counts[:-1]).tolist()
        grp = np.arange(len(counts), dtype=np.int64) << 32
        key = np.repeat(grp, counts) | self._grouped_index()
        self._gkey = (key, starts, grp)
        return self._gkey

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


def one_session(pkt_session: np.ndarray) -> bool:
    """Are all these (S10) sessions the same? (Compares raw bytes: ~10x faster than ``==`` on S10.)"""
    raw = pkt_session.tobytes()
    return raw == raw[:10] * len(pkt_session)


_NO_BYTES = np.zeros(0, np.uint8)
_LETTER = [chr(c) for c in range(256)]


def _as_bytes(recs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(recs).view(np.uint8).reshape(-1)


def gather(parts: list[Decoded], picks: list[np.ndarray | slice | None] | None = None,
           order: np.ndarray | None = None, clean: bool = False) -> Decoded:
    """Messages ``picks[k]`` (indices, a slice or None for all) of ``parts[k]``, one part after the other,
    then reordered by ``order`` if given (``clean``: every message is known to be valid). Records move
    in one C call (no per-type copies)."""
    picks = picks or [None] * len(parts)
    packs = [p.packing() for p in parts]
    if len(parts) == 1:
        p, sel = parts[0], picks[0]
        if sel is None:
            sel = slice(None)
        seq, typ, err, length, pkt = p.seq[sel], p.type[sel], p.error[sel], p.length[sel], p.pkt[sel]
        raw, off = packs[0][0], packs[0][1][sel]
        pkt_arrays = [p.pkt_session, p.pkt_seq, p.pkt_count, p.pkt_nmsg, p.pkt_error, p.pkt_ts_ns]
        errors = dict(p.errors)
    elif order is None and (run := _adjacent(parts, picks)) is not None:
        seq, typ, err, length, pkt, off, raw, pkt_arrays, errors = _join(parts, picks, packs, run)
    else:
        cols: list[list[np.ndarray]] = [[] for _ in range(13)]
        (seqs, typs, errs, lens, pkts, offs, raws, p_sess, p_seq, p_count, p_nmsg, p_err, p_ts) = cols
        errors: dict[str, int] = {}
        po = bo = 0
        for p, pk, (r, o) in zip(parts, picks, packs, strict=True):
            s = slice(None) if pk is None else pk
            seqs.append(p.seq[s])
            typs.append(p.type[s])
            errs.append(p.error[s])
            lens.append(p.length[s])
            pkts.append(p.pkt[s] + po if po else p.pkt[s])
            offs.append(o[s] + bo if bo else o[s])
            raws.append(r)
            p_sess.append(p.pkt_session)
            p_seq.append(p.pkt_seq)
            p_count.append(p.pkt_count)
            p_nmsg.append(p.pkt_nmsg)
            p_err.append(p.pkt_error)
            p_ts.append(p.pkt_ts_ns)
            po += len(p.pkt_seq)
            bo += len(r)
            for k, v in p.errors.items():
                errors[k] = errors.get(k, 0) + v
        cat = np.concatenate
        seq, typ, err, length, pkt, off, raw, *pkt_arrays = (cat(c) for c in cols)
    if order is not None:
        seq, typ, err, length, pkt, off = seq[order], typ[order], err[order], length[order], pkt[order], off[order]
    by_type, index_by_type, new_raw, grouped = _group(typ, err, off, raw, clean)
    return Decoded(seq, pkt, typ, err, length, by_type, index_by_type, *pkt_arrays, errors,
                   _raw=new_raw, _grouped=grouped)


def _adjacent(parts: list[Decoded], picks: list[np.ndarray | slice | None]) -> tuple[int, int] | None:
    """``(first message row, end row)`` in the decoder's blocks when ``parts`` were decoded one right after
    the other into the same blocks and ``picks`` take one run of them (the end of the first, all of the
    middle ones, the start of the last); else None."""
    ring = parts[0]._ring
    if ring is None:
        return None
    mb, mc, pb, pc, rb, rc = ring
    first = picks[0]
    if first is None:
        lo = mc
    elif type(first) is slice and first.stop == len(parts[0]):
        lo = mc + first.start
    else:
        return None
    last = len(parts) - 1
    for k, p in enumerate(parts):
        r = p._ring
        if r is None or r[0] is not mb or r[2] is not pb or r[4] is not rb or r[1] != mc or r[3] != pc or r[5] != rc:
            return None
        pick = picks[k]
        if k > 0 and pick is not None and (type(pick) is not slice or pick.start != 0
                                           or (k < last and pick.stop != len(p))):
            return None
        mc, pc, rc = mc + len(p), pc + len(p.pkt_seq), rc + (0 if p._raw is None else len(p._raw))
    pick = picks[last]
    return lo, mc if pick is None else mc - len(parts[last]) + pick.stop


def _join(parts: list[Decoded], picks: list[np.ndarray | slice | None], packs: list[tuple[np.ndarray, np.ndarray]],
          run: tuple[int, int]) -> tuple:
    """The arrays of a run of adjacent parts (see :func:`_adjacent`): views of the decoder's blocks, but
    for the packet numbers and record offsets, which are per part."""
    lo, hi = run
    mb, mc, pb, pc, rb, rc = parts[0]._ring
    seq, typ, err, length = mb[0][lo:hi], mb[2][lo:hi], mb[3][lo:hi], mb[4][lo:hi]
    pkts, offs, errors = [], [], {}
    for p, pick, (_, o) in zip(parts, picks, packs, strict=True):
        s = slice(None) if pick is None else pick
        r = p._ring
        pkts.append(p.pkt[s] + (r[3] - pc) if r[3] != pc else p.pkt[s])
        offs.append(o[s] + (r[5] - rc) if r[5] != rc else o[s])
        for k, v in p.errors.items():
            errors[k] = errors.get(k, 0) + v
    end = parts[-1]._ring
    p_hi = end[3] + len(parts[-1].pkt_seq)
    r_hi = end[5] + (0 if parts[-1]._raw is None else len(parts[-1]._raw))
    pkt_arrays = [a[pc:p_hi] for a in pb]
    return (seq, typ, err, length, np.concatenate(pkts), np.concatenate(offs), rb[rc:r_hi], pkt_arrays, errors)


class _GroupScratch(threading.local):
    """Per thread: the C gather's struct, with numpy views of its per-type tables (no copying in)."""

    def __init__(self) -> None:
        self.sc = ffi.new("struct xgw_mold_scratch *")
        self.sizes = ffi.from_buffer("uint8_t[]", itch.SIZE_TABLE)
        self.sc.sizes = self.sizes
        self.info = np.zeros(1, np.int64)
        self.info_c = ffi.from_buffer("int64_t[]", self.info)
        self.sc.info = self.info_c
        self.bstart = np.frombuffer(ffi.buffer(self.sc.bstart), np.int64)
        self.istart = np.frombuffer(ffi.buffer(self.sc.istart), np.int64)


_scratch = _GroupScratch()


def _group(typ: np.ndarray, err: np.ndarray, off: np.ndarray, raw: np.ndarray, clean: bool = False,
           ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Copy every valid message's record (at ``raw[off]``) into one new buffer grouped by type, with the
    decoder's own C gather (a counting sort): ``(by_type, index_by_type, buffer, grouped indices)``.
    ``clean``: the caller knows every message is valid."""
    cnt = np.bincount(typ if clean or not err.any() else typ[err == OK], minlength=256)
    g = _scratch
    bstart, istart = g.bstart, g.istart
    nbytes = cnt * _SIZES64
    nbytes.cumsum(out=bstart)
    cnt.cumsum(out=istart)
    total, nvalid = int(bstart[-1]), int(istart[-1])
    if not nvalid:
        return {}, {}, _NO_BYTES, _EMPTY_I32
    bstart -= nbytes
    istart -= cnt
    out = np.empty(total, np.uint8)
    order = np.empty(nvalid, np.int32)
    g.info[lib.XGW_MI_NMSG] = len(typ)
    sc = g.sc
    typ, err, off = (np.ascontiguousarray(a) for a in (typ, err, off))
    keep = (ffi.from_buffer("uint8_t[]", typ), ffi.from_buffer("uint8_t[]", err),
            ffi.from_buffer("int64_t[]", off))
    sc.msg_type, sc.msg_err, sc.msg_off = keep
    lib.xgw_mold_gather(sc, ffi.from_buffer("uint8_t[]", raw), ffi.from_buffer("uint8_t[]", out),
                        ffi.from_buffer("int32_t[]", order))
    present = cnt.nonzero()[0]
    by_type, index_by_type = {}, {}
    for c, n, b, i in zip(present.tolist(), cnt[present].tolist(), bstart[present].tolist(),
                          istart[present].tolist(), strict=True):
        t, dt = _BY_CODE[c]
        by_type[t], index_by_type[t] = np.ndarray(n, dt, out, b), order[i : i + n]
    return by_type, index_by_type, out, order


_MSG_COLS = (("uint64_t *", np.uint64), ("int64_t *", np.int64), ("uint8_t *", np.uint8), ("uint8_t *", np.uint8),
             ("uint16_t *", np.uint16), ("int32_t *", np.int32))  # seq, pkt, type, error, length; record order
_PKT_COLS = (("char *", "S10"), ("uint64_t *", np.uint64), ("uint16_t *", np.uint16), ("uint32_t *", np.uint32),
             ("uint8_t *", np.uint8), ("uint64_t *", np.uint64))  # session, seq, count, blocks, error; stamp


class Decoder:
    """C scratch for :func:`decode_batch` (one per thread).

    The splitter and the gather write the per-message and per-packet arrays and the records straight
    into blocks that the returned ``Decoded`` views (no copies): each call takes the next free rows and
    a full block is replaced, never reused, so whatever earlier calls returned stays valid (it keeps its
    block alive). A call costs two C calls, a few pointer moves and one view per array and per present
    type. Bursts decoded one after the other lie side by side in the blocks (``Decoded._ring``), so
    :func:`gather` joins consecutive ones with views instead of copies.
    """

    def __init__(self, capacity: int = 1 << 13, packets: int = 2048, record_bytes: int = 1 << 18) -> None:
        self._s = ffi.new("struct xgw_mold_scratch *")
        self._info = np.zeros(_MI_SIZE, np.int64)
        self._keep = [ffi.from_buffer(itch.SIZE_TABLE), ffi.from_buffer(self._info)]
        self._s.sizes = ffi.cast("uint8_t *", self._keep[0])
        self._s.info = ffi.cast("int64_t *", self._keep[1])
        self.block_msgs, self.block_pkts, self.block_bytes = capacity, packets, record_bytes
        self._msg_block(capacity)
        self._pkt_block(packets)
        self._rec_block(record_bytes)

    @staticmethod
    def _carve(cols: tuple[tuple[str, Any], ...], rows: int) -> tuple[list[np.ndarray], list[Any], list[Any]]:
        arrays = [np.empty(rows, dt) for _, dt in cols]
        bufs = [ffi.from_buffer(a) for a in arrays]
        return arrays, bufs, [ffi.cast(ct, b) for (ct, _), b in zip(cols, bufs, strict=True)]

    def _msg_block(self, rows: int) -> None:
        self._m, self._mbufs, self._mp = self._carve(_MSG_COLS, rows)
        self.m_off = np.empty(rows, np.int64)  # scratch only (offsets into the batch buffer)
        self._off_buf = ffi.from_buffer(self.m_off)
        self._s.msg_off = ffi.cast("int64_t *", self._off_buf)
        self._mcur, self._mcap = 0, rows

    def _pkt_block(self, rows: int) -> None:
        self._p, self._pbufs, self._pp = self._carve(_PKT_COLS, rows)
        self._pcur, self._pcap = 0, rows

    def _rec_block(self, size: int) -> None:
        self._r = np.empty(size, np.uint8)
        self._rcur = 0

    def _point(self, mc: int, pc: int) -> None:
        """Aim the splitter at the free rows (message row ``mc``, packet row ``pc``)."""
        s, mp, pp = self._s, self._mp, self._pp
        s.msg_seq, s.msg_pkt, s.msg_type, s.msg_err, s.msg_len = mp[0] + mc, mp[1] + mc, mp[2] + mc, mp[3] + mc, mp[4] + mc
        s.pkt_session, s.pkt_seq, s.pkt_count, s.pkt_nmsg, s.pkt_err = (
            pp[0] + 10 * pc, pp[1] + pc, pp[2] + pc, pp[3] + pc, pp[4] + pc)
        s.cap_msgs = self._mcap - mc

    def decode(self, batch: Batch) -> Decoded:
        n = batch.count
        if n == 0:
            return Decoded.empty()
        if self._pcur + n > self._pcap:
            self._pkt_block(max(self.block_pkts, n))
        buf, offs, lens = batch.buf, batch.offsets, batch.lengths
        if not buf.flags.c_contiguous:
            buf = np.ascontiguousarray(buf)
        if offs.dtype != _I64 or not offs.flags.c_contiguous:
            offs = np.ascontiguousarray(offs[:n], dtype=np.int64)
        if lens.dtype != _U32 or not lens.flags.c_contiguous:
            lens = np.ascontiguousarray(lens[:n], dtype=np.uint32)
        pbuf = ffi.from_buffer("uint8_t[]", buf)
        poffs, plens = ffi.from_buffer("int64_t[]", offs), ffi.from_buffer("uint32_t[]", lens)
        mc, pc = self._mcur, self._pcur
        self._point(mc, pc)
        m = lib.xgw_mold_split(self._s, pbuf, poffs, plens, n)
        if m < 0:  # more messages than the block has left: a new one, to a bound (a message takes >= 2 bytes)
            need = int(np.maximum(lens[:n].astype(np.int64) - HEADER_SIZE, 0).sum()) // 2 + 1
            self._msg_block(max(need, self.block_msgs))
            mc = 0
            self._point(mc, pc)
            m = lib.xgw_mold_split(self._s, pbuf, poffs, plens, n)
            if m < 0:  # cannot happen given ``need``; kept as a guard against a bad Batch
                raise RuntimeError("MoldUDP64 splitter ran out of scratch space: report this as a bug")
        self._mcur, self._pcur = mc + m, pc + n
        info = self._info
        _, nvalid, nbytes, ntypes, first, end, simple, hb, eos, bad = info[:_MI_HEAD].tolist()
        out = order = ty = None
        rc = self._rcur
        if nvalid:
            if rc + nbytes > len(self._r):
                self._rec_block(max(self.block_bytes, nbytes))
                rc = 0
            out = self._r[rc : rc + nbytes]
            order = self._m[5][mc : mc + nvalid]  # a valid message is a message: there is room
            self._rcur = rc + nbytes
            lib.xgw_mold_gather(self._s, pbuf, ffi.from_buffer("uint8_t[]", out), ffi.from_buffer("int32_t[]", order))
            ty = info[_MI_TYPES : _MI_TYPES + 4 * ntypes].tolist()  # per-type views made on first use
        errors: dict[str, int] = {}
        if bad:
            for slot, name in _ERROR_SLOTS:
                if info[slot]:
                    errors[name] = int(info[slot])
        ma, pa = self._m, self._p
        me, pe = mc + m, pc + n
        p_sess, ts = pa[0][pc:pe], pa[5][pc:pe]
        ts[:] = batch.ts_ns[:n]
        facts = BurstFacts(p_sess[0], first, end, hb, eos) if simple and not bad else None
        dec = Decoded(ma[0][mc:me], ma[1][mc:me], ma[2][mc:me], ma[3][mc:me], ma[4][mc:me], None, None,
                      p_sess, pa[1][pc:pe], pa[2][pc:pe], pa[3][pc:pe], pa[4][pc:pe], ts, errors, facts, out, order,
                      None, hb + eos)
        dec._ring, dec._lazy = (ma, mc, pa, pc, self._r, rc), ty
        return dec


_default = Decoder()


def decode_batch(batch: Batch, decoder: Decoder | None = None) -> Decoded:
    """Decode every MoldUDP64 datagram of ``batch``; malformed parts are counted, never raised."""
    return (decoder or _default).decode(batch)


def decode_payloads(payloads: list[bytes], ts_ns: int = 0) -> Decoded:
    """Convenience for tests and tools: decode datagrams given as bytes."""
    return decode_batch(Batch.from_payloads(payloads, ts_ns))
