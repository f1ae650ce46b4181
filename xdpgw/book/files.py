"""Books offline: a NASDAQ TotalView-ITCH 5.0 daily file (optionally gzipped) or a MoldUDP64 capture.

A daily file is read in large chunks straight into :meth:`Books.apply_stream` (its framing, a u16
big-endian length before each message, is walked in C). A pcap/pcapng goes through the live
pipeline: :func:`xdpgw.tools.replay.load_pcap` finds the UDP payloads, a ``FeedHandler`` decodes, sequences
(duplicates of an A/B capture dropped, gaps counted) and a :class:`~xdpgw.book.live.BookFeed` applies,
with the capture's own timestamps as the sequencer's clock.
"""

from __future__ import annotations

import gzip
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from xdpgw.book.engine import Books
from xdpgw.book.records import BBO
from xdpgw.errors import GatewayError

_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"}
_GZIP = b"\x1f\x8b"


def file_kind(path: str | Path) -> str:
    """``"pcap"`` for a pcap/pcapng, ``"itch"`` otherwise (a daily file, raw or gzipped)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return "pcap" if head in _PCAP_MAGICS else "itch"


class Progress:
    """A one-line progress bar on a terminal (or every few seconds in a log) for long files."""

    def __init__(self, total: int, stream: IO[str] | None = sys.stderr, every: float = 0.5) -> None:
        self.total, self.stream, self.every = total, stream, every
        self.t0 = self.last = time.monotonic()
        self.tty = bool(stream is not None and stream.isatty())
        if not self.tty:
            self.every = max(every, 5.0)

    def update(self, done: int, messages: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.stream is None or (not force and now - self.last < self.every):
            return
        self.last = now
        frac = min(done / self.total, 1.0) if self.total else 1.0
        rate = messages / max(now - self.t0, 1e-9)
        bar = "#" * int(frac * 30)
        line = f"[{bar:<30}] {frac:4.0%} {done / 1e6:,.0f}/{self.total / 1e6:,.0f} MB {messages / 1e6:.1f} M msgs {rate / 1e6:.1f} M msgs/s"
        self.stream.write("\r\x1b[K" + line if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")


@dataclass
class FileRun:
    """What reading a file produced: the books, the BBO records kept (if asked), counters."""

    books: Books
    kind: str
    messages: int = 0
    seconds: float = 0.0
    bbo: list[np.ndarray] = field(default_factory=list)
    feed: dict[str, Any] = field(default_factory=dict)

    def bbo_records(self) -> np.ndarray:
        return np.concatenate(self.bbo) if self.bbo else np.zeros(0, BBO)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file_kind": self.kind, "messages": self.messages, "duration_s": round(self.seconds, 6),
                               "msgs_per_s": round(self.messages / self.seconds, 1) if self.seconds else None}
        out.update(self.feed)
        out["books"] = self.books.summary()
        return out


def read_itch(path: str | Path, books: Books, keep_bbo: bool = False, chunk: int = 16 << 20,
              progress: Progress | None = None, on_update: Callable[[Any], None] | None = None) -> FileRun:
    """Apply every message of a daily file to ``books``."""
    run = FileRun(books, "itch")
    buf = np.empty(chunk, np.uint8)
    view = memoryview(buf)
    have = 0  # bytes in buf (a frame cut by the chunk boundary is moved to the front)
    seq = 1
    t0 = time.perf_counter()
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as f:
        read_total = 0
        while True:
            got = f.readinto(view[have:])
            read_total += got or 0
            have += got or 0
            pos = 0
            while pos < have:
                used, m, upd = books.apply_stream(buf[pos:have], seq)
                if m == 0 and used == 0:
                    break
                pos += used
                seq += m
                if keep_bbo and len(upd.bbo):
                    run.bbo.append(upd.bbo.copy())
                if on_update is not None:
                    on_update(upd)
            if not got:
                break
            rest = have - pos
            if rest == len(buf):  # one frame cannot be larger than 2 + 65535 bytes; chunk is far larger
                raise GatewayError(f"{path}: no ITCH frame in {len(buf)} bytes", "is it a TotalView-ITCH 5.0 file?")
            buf[:rest] = buf[pos:have]
            have = rest
            if progress is not None:
                progress.update(f.fileobj.tell() if opener is gzip.open else read_total, seq - 1)
    run.seconds = time.perf_counter() - t0
    run.messages = seq - 1
    run.feed = {"truncated_bytes": have, "bad_frames": books.bad_frames}
    if run.messages == 0:
        raise GatewayError(f"{path}: no ITCH 5.0 message found",
                           "give a TotalView-ITCH 5.0 daily file (u16 length before each message) or a pcap")
    return run


def _is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP


def read_pcap(path: str | Path, books: Books, symbols: Iterable[str] | None = None, port: int | None = None,
              keep_bbo: bool = False, burst: int = 256, progress: Progress | None = None) -> FileRun:
    """Decode, sequence and apply the MoldUDP64 payloads of a capture (one feed; A/B copies deduplicated)."""
    from xdpgw.book.live import BookFeed
    from xdpgw.pipeline.feed import FeedHandler
    from xdpgw.tools.replay import load_pcap

    cap = load_pcap(path, port=port)
    if not len(cap):
        raise GatewayError(f"{path}: no UDP payload in the capture", "check the file (and --port)")
    now = [0.0]
    feed = BookFeed(FeedHandler(symbols=list(symbols) if symbols else None, clock=lambda: now[0]), books,
                    clock=lambda: now[0])
    run = FileRun(books, "pcap")
    t0 = time.perf_counter()

    def take(out: Any) -> None:
        if out is not None and keep_bbo and len(out.bbo):
            run.bbo.append(out.bbo.copy())

    for a in range(0, len(cap), burst):
        b = min(a + burst, len(cap))
        now[0] = float(cap.ts_ns[b - 1]) / 1e9
        take(feed.on_batch(cap.batch(a, b)))
        if progress is not None:
            progress.update(int(cap.offsets[b - 1]), feed.feed.delivered)
    now[0] += 3600.0  # the capture is over: whatever still waits behind a hole is given up
    take(feed.poll())
    run.seconds = time.perf_counter() - t0
    stats = feed.feed.stats()
    run.messages = stats["messages"]
    run.feed = {k: stats[k] for k in ("gaps", "missing", "duplicates", "decode_errors")}
    run.feed["packets"] = len(cap)
    if cap.skipped:
        run.feed["skipped"] = dict(cap.skipped)
    return run


def read_file(path: str | Path, symbols: Iterable[str] | None = None, port: int | None = None,
              keep_bbo: bool = False, progress: bool = True) -> FileRun:
    """Books from a daily file or a capture (``symbols``: only those books)."""
    p = Path(path)
    if not p.is_file():
        raise GatewayError(f"no such file: {path}", "give a TotalView-ITCH 5.0 daily file or a pcap/pcapng")
    syms = list(symbols) if symbols else None
    size = p.stat().st_size
    bar = Progress(size) if progress and size >= 64 << 20 else None
    try:
        if file_kind(p) == "pcap":
            return read_pcap(p, Books(), syms, port, keep_bbo, progress=bar)
        return read_itch(p, Books(syms, burst=1 << 16), keep_bbo, progress=bar)
    finally:
        if bar is not None:
            bar.close()


def write_bbo(records: np.ndarray, out: str | Path) -> None:
    """The BBO records as Parquet (``.parquet``, needs pyarrow) or CSV (``.csv``); prices as decimals."""
    out = str(out)
    cols = {
        "seq": records["seq"], "ts": records["ts"], "locate": records["locate"],
        "symbol": np.char.strip(records["symbol"].astype("U8")),
        "bid_price": records["bid_price"] / 10_000, "bid_size": records["bid_size"], "bid_count": records["bid_count"],
        "ask_price": records["ask_price"] / 10_000, "ask_size": records["ask_size"], "ask_count": records["ask_count"],
        "stale": (records["flags"] & 1).astype(bool),
    }
    if out.endswith(".parquet"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise GatewayError("writing Parquet needs pyarrow", "pip install pyarrow, or write --bbo OUT.csv") from None
        table = pa.table({k: np.where(v == 0, np.nan, v) if k.endswith("_price") else v for k, v in cols.items()})
        pq.write_table(table, out)
    elif out.endswith(".csv"):
        with open(out, "w") as f:
            f.write(",".join(cols) + "\n")
            bid, ask = cols["bid_price"], cols["ask_price"]
            for i in range(0, len(records), 1 << 16):  # one formatting call per block of rows
                s = slice(i, i + (1 << 16))
                rows = zip(cols["seq"][s].tolist(), cols["ts"][s].tolist(), cols["locate"][s].tolist(),
                           cols["symbol"][s].tolist(), _fmt(bid[s]), cols["bid_size"][s].tolist(),
                           cols["bid_count"][s].tolist(), _fmt(ask[s]), cols["ask_size"][s].tolist(),
                           cols["ask_count"][s].tolist(), cols["stale"][s].tolist(), strict=True)
                f.writelines(",".join(map(str, r)) + "\n" for r in rows)
    else:
        raise GatewayError(f"--bbo {out}: unknown format", "name the file OUT.parquet or OUT.csv")


def _fmt(prices: np.ndarray) -> list[str]:
    return ["" if p == 0 else f"{p:.4f}" for p in prices.tolist()]
