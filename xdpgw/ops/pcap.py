"""Nanosecond pcap capture of whole batches: vectorised record headers, one write per file per batch.

Frames are taken from one byte buffer by offset/length arrays (a `Batch`-style layout, e.g. the raw
Ethernet frames in UMEM). A batch is laid out in numpy (16-byte record headers from a structured
array, frame bytes by a row gather plus one boolean mask) and written with a single ``write``; no
Python code runs per packet. Files rotate by size (``path``, ``path.1`` ... ``path.{max_files-1}``;
the oldest is deleted) and ``sample=N`` keeps exactly every N-th frame counted across batches
(frames 0, N, 2N, ...). ``write_packets`` takes a received `Batch` as it is: its frames in place where the
transport kept the headers (XDP), synthesized Ethernet/IPv4/UDP headers where it has none (kernel sockets).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from xdpgw.batch import Batch
from xdpgw.errors import GatewayError

PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
FILE_HEADER_LEN = 24
RECORD_HEADER = np.dtype([("ts_sec", "<u4"), ("ts_nsec", "<u4"), ("incl_len", "<u4"), ("orig_len", "<u4")])
_HLEN = RECORD_HEADER.itemsize
_NS = 1_000_000_000
#: Where a synthesized frame (Ethernet + IPv4 without options + UDP) keeps its UDP destination port and checksum.
_SYNTH_DPORT, _SYNTH_CSUM = 14 + 20 + 2, 14 + 20 + 6


def file_header(snaplen: int, linktype: int = LINKTYPE_ETHERNET) -> bytes:
    """The 24-byte pcap global header for nanosecond timestamps (version 2.4, little endian)."""
    return np.array([(PCAP_MAGIC_NS, 2 | (4 << 16), 0, 0, snaplen, linktype)],
                    dtype=[("magic", "<u4"), ("ver", "<u4"), ("zone", "<i4"), ("sigfigs", "<u4"),
                           ("snaplen", "<u4"), ("linktype", "<u4")]).tobytes()


def monotonic_to_realtime(ts_ns_monotonic: np.ndarray) -> np.ndarray:
    """Shift CLOCK_MONOTONIC stamps (as in `Batch.ts_ns`) to CLOCK_REALTIME for the pcap; 0 stays 'now'."""
    offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    ts = np.asarray(ts_ns_monotonic, dtype=np.uint64)
    now = np.uint64(time.clock_gettime_ns(time.CLOCK_REALTIME))
    return np.where(ts == 0, now, ts + np.uint64(offset))


def synthesize_frames(batch: Batch) -> Batch:
    """Whole frames around payloads that came without headers (kernel sockets), for a pcap: built by the
    sender's frame builder (``transport.xdp.tx.build_frames``) from a template with no MACs, 0.0.0.0 to
    0.0.0.0, source port 0; each frame then gets its packet's ``dports`` entry and UDP checksum 0 (none)."""
    from xdpgw.transport.xdp.tx import build_frames, header_template

    n = batch.count
    longest = int(batch.lengths[:n].max()) if n else 0
    frames = build_frames(header_template("00:00:00:00:00:00", "00:00:00:00:00:00", "0.0.0.0", "0.0.0.0", 0, 0),
                          batch, max_payload=longest)
    at, dport = frames.offsets[:n], batch.dports[:n]
    frames.buf[at + _SYNTH_DPORT] = dport >> 8
    frames.buf[at + _SYNTH_DPORT + 1] = dport & 0xFF
    frames.buf[at + _SYNTH_CSUM] = frames.buf[at + _SYNTH_CSUM + 1] = 0
    return frames


def layout_records(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, ts_ns: np.ndarray,
                   snaplen: int) -> tuple[np.ndarray, np.ndarray]:
    """Pcap records (header + frame truncated to ``snaplen``) of all frames, back to back.

    Returns ``(out, ends)``: ``out`` is the uint8 byte image, ``ends[i]`` the end of record *i* in it
    (so any prefix of whole records is ``out[:ends[k]]``). Each frame is copied as one row of a
    ``(n, 16 + longest)`` table (a row gather over a sliding window of ``buf``), then one boolean mask
    squeezes out the padding: three memcpy-like passes, no per-byte index arrays.
    """
    n = len(offsets)
    orig = np.asarray(lengths, dtype=np.int64)
    incl = np.minimum(orig, snaplen)
    ts = np.asarray(ts_ns, dtype=np.uint64)
    hdr = np.empty(n, dtype=RECORD_HEADER)
    hdr["ts_sec"] = ts // _NS
    hdr["ts_nsec"] = ts % _NS
    hdr["incl_len"] = incl
    hdr["orig_len"] = orig
    ends = np.cumsum(incl + _HLEN)
    width = int(incl.max()) if n else 0
    table = np.empty((n, _HLEN + width), dtype=np.uint8)
    table[:, :_HLEN] = hdr.view(np.uint8).reshape(n, _HLEN)
    if width == 0:
        return table.reshape(-1), ends
    src = np.asarray(buf, dtype=np.uint8).reshape(-1)
    if len(src) < width:
        src = np.concatenate([src, np.zeros(width - len(src), dtype=np.uint8)])
    off = np.asarray(offsets, dtype=np.int64)
    start = np.minimum(off, len(src) - width)  # frames near the end of buf: read a shifted window
    table[:, _HLEN:] = sliding_window_view(src, width)[start]
    col = np.arange(_HLEN + width)
    shift = (off - start)[:, None]
    if shift.any():
        keep = (col < _HLEN) | ((col >= _HLEN + shift) & (col < _HLEN + shift + incl[:, None]))
    else:
        keep = col < _HLEN + incl[:, None]
    return table[keep], ends


class PcapWriter:
    """Append batches of Ethernet frames to a rotating nanosecond pcap file.

    ``max_bytes`` bounds each file (a file always takes at least one record, so it can exceed the
    bound only when one record alone is bigger); ``max_files`` is how many files are kept in total.
    Counters: ``written`` (records), ``bytes_written``, ``sampled_out``, ``rotations``.
    """

    def __init__(self, path: str | os.PathLike[str], snaplen: int = 65535, max_bytes: int | None = None,
                 max_files: int = 5, sample: int = 1, linktype: int = LINKTYPE_ETHERNET) -> None:
        if sample < 1:
            raise GatewayError(f"pcap sample={sample} is invalid", "use sample=N with N >= 1 (1 keeps all)")
        if max_files < 1:
            raise GatewayError(f"pcap max_files={max_files} is invalid", "keep at least one: max_files >= 1")
        if not 1 <= snaplen <= 0x3FFFFFFF:
            raise GatewayError(f"pcap snaplen={snaplen} is invalid", "use snaplen in 1..65535 (65535: all)")
        if max_bytes is not None and max_bytes <= FILE_HEADER_LEN:
            raise GatewayError(f"pcap max_bytes={max_bytes} is too small",
                               f"use more than {FILE_HEADER_LEN} bytes (e.g. 100_000_000) or None")
        self.path = Path(path)
        self.snaplen, self.max_bytes, self.max_files = snaplen, max_bytes, max_files
        self.sample, self.linktype = sample, linktype
        self.written = self.bytes_written = self.sampled_out = self.rotations = 0
        self._seen = 0  # frames offered so far: the sampling phase
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise GatewayError(
                f"cannot create pcap file {self.path} ({e.strerror})",
                f"pick a writable path, or create the directory: mkdir -p {self.path.parent}",
            ) from e
        self._write(file_header(self.snaplen, self.linktype))
        self._size = FILE_HEADER_LEN

    def _write(self, data: bytes | memoryview | np.ndarray) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        name = str(self.path)
        if self.max_files == 1:
            os.unlink(name)
        else:
            for k in range(self.max_files - 2, 0, -1):
                if os.path.exists(f"{name}.{k}"):
                    os.replace(f"{name}.{k}", f"{name}.{k + 1}")
            os.replace(name, f"{name}.1")
        self.rotations += 1
        self._open()

    def write_batch(self, buf: np.ndarray, frame_offsets: np.ndarray, frame_lengths: np.ndarray,
                    ts_ns_realtime: np.ndarray | int) -> int:
        """Write the frames ``buf[off:off+len]`` stamped ``ts_ns_realtime`` (array or one value, ns since
        the epoch). Returns how many records were written after sampling."""
        if self._fd < 0:
            raise GatewayError(f"pcap writer for {self.path} is closed", "open a new PcapWriter")
        n = len(frame_offsets)
        if n == 0:
            return 0
        offsets, lengths = np.asarray(frame_offsets), np.asarray(frame_lengths)
        ts = np.broadcast_to(np.asarray(ts_ns_realtime, dtype=np.uint64), (n,))
        if self.sample > 1:
            keep = (np.arange(self._seen, self._seen + n, dtype=np.int64) % self.sample) == 0
            offsets, lengths, ts = offsets[keep], lengths[keep], ts[keep]
            self.sampled_out += n - len(offsets)
        self._seen += n
        if len(offsets) == 0:
            return 0
        out, ends = layout_records(buf, offsets, lengths, ts, self.snaplen)
        done = 0  # bytes of `out` already written
        while done < len(out):
            room = None if self.max_bytes is None else self.max_bytes - self._size
            if room is None or ends[-1] - done <= room:
                cut = len(out)
            else:
                k = int(np.searchsorted(ends, done + room, side="right"))  # whole records that fit
                if k == 0 or ends[k - 1] <= done:
                    if self._size > FILE_HEADER_LEN:
                        self._rotate()
                        continue
                    k = int(np.searchsorted(ends, done, side="right")) + 1  # oversized record: alone
                cut = int(ends[k - 1])
            self._write(out[done:cut])
            self._size += cut - done
            done = cut
            if done < len(out):
                self._rotate()
        self.written += len(ends)
        self.bytes_written += len(out)
        return len(ends)

    def write_packets(self, batch: Batch) -> int:
        """Write a received batch as whole frames stamped with their receive times (``ts_ns``, monotonic):
        in place where the transport kept each packet's headers (``header_lengths``), synthesized where it
        has none (``synthesize_frames``). Returns how many records were written after sampling."""
        n = batch.count
        hdr = batch.header_lengths[:n]
        bare = hdr == 0
        if bare.any() and not bare.all():  # no receiver makes such a burst: framed packets first
            return self.write_packets(batch.select(~bare)) + self.write_packets(batch.select(bare))
        ts = monotonic_to_realtime(batch.ts_ns[:n])
        if n and bare[0]:
            frames = synthesize_frames(batch)
            return self.write_batch(frames.buf, frames.offsets, frames.lengths, ts)
        return self.write_batch(batch.buf, batch.offsets[:n] - hdr, batch.lengths[:n] + hdr, ts)

    def stats(self) -> dict[str, int]:
        return {"written": self.written, "bytes_written": self.bytes_written,
                "sampled_out": self.sampled_out, "rotations": self.rotations}

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
