"""PcapWriter: files read back by scapy and tshark, exact ns stamps, bounded rotation, exact sampling."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from tests.helpers import require
from xdpgw.errors import GatewayError
from xdpgw.ops.pcap import FILE_HEADER_LEN, PcapWriter, layout_records, monotonic_to_realtime

T0 = 1_700_000_000_123_456_789  # ns since the epoch


def frames(n: int, start: int = 0, pad: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
    """n Ethernet/IPv4/UDP frames packed into one buffer with gaps between them (like UMEM chunks)."""
    payloads = [b"%06d" % (start + i) + b"x" * (i % 7 + pad) for i in range(n)]
    raw = [bytes(Ether() / IP(dst="10.0.0.2") / UDP(dport=26400) / p) for p in payloads]
    stride = max(len(f) for f in raw) + 13
    buf = np.zeros(stride * n, dtype=np.uint8)
    offsets = np.arange(n, dtype=np.int64) * stride + 5
    for o, f in zip(offsets, raw, strict=True):
        buf[o : o + len(f)] = np.frombuffer(f, dtype=np.uint8)
    return buf, offsets, np.array([len(f) for f in raw], dtype=np.uint32), raw


def test_layout_matches_byte_by_byte_reference() -> None:
    buf, offs, lens, raw = frames(9)
    ts = np.arange(9, dtype=np.uint64) * 1_000_000_007 + np.uint64(T0)
    out, ends = layout_records(buf, offs, lens, ts, snaplen=50)
    ref = b""
    for i, f in enumerate(raw):
        t = int(ts[i])
        ref += np.array([t // 10**9, t % 10**9, min(len(f), 50), len(f)], "<u4").tobytes() + f[:50]
    assert out.tobytes() == ref
    assert ends[-1] == len(ref)


def test_layout_frames_at_buffer_end_and_empty_frames() -> None:
    buf = np.arange(40, dtype=np.uint8)
    offs = np.array([0, 30, 35, 39, 10], dtype=np.int64)
    lens = np.array([25, 10, 5, 1, 0], dtype=np.uint32)  # widest frame is 25 bytes; three end at the tail
    out, ends = layout_records(buf, offs, lens, np.zeros(5, np.uint64), snaplen=65535)
    body = [bytes(buf[o : o + n]) for o, n in zip(offs, lens, strict=True)]
    ref = b"".join(np.array([0, 0, len(b), len(b)], "<u4").tobytes() + b for b in body)
    assert out.tobytes() == ref and list(ends) == list(np.cumsum([16 + len(b) for b in body]))
    tiny, _ = layout_records(np.arange(3, dtype=np.uint8), np.array([1]), np.array([2]), np.zeros(1), 9)
    assert tiny.tobytes()[16:] == bytes([1, 2])


def test_readback_scapy_exact_ns_and_content(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    buf, offs, lens, raw = frames(20)
    ts = np.uint64(T0) + np.arange(20, dtype=np.uint64) * np.uint64(999_999_999)
    with PcapWriter(path) as w:
        assert w.write_batch(buf, offs[:12], lens[:12], ts[:12]) == 12
        assert w.write_batch(buf, offs[12:], lens[12:], ts[12:]) == 8
        assert w.write_batch(buf, offs[:0], lens[:0], ts[:0]) == 0
    assert w.stats() == {"written": 20, "bytes_written": int(lens.sum()) + 20 * 16,
                         "sampled_out": 0, "rotations": 0}
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == raw
    # scapy keeps the pcap's seconds and nanoseconds as an exact Decimal
    assert [int(p.time * 10**9) for p in pkts] == [int(t) for t in ts]
    assert pkts[3][UDP].dport == 26400


def test_scalar_timestamp_and_snaplen(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    buf, offs, lens, raw = frames(4, pad=100)
    with PcapWriter(path, snaplen=60) as w:
        w.write_batch(buf, offs, lens, T0)
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == [f[:60] for f in raw]
    assert [p.wirelen for p in pkts] == [len(f) for f in raw]
    assert {int(p.time * 10**9) for p in pkts} == {T0}


def test_readback_tshark_nanoseconds(tmp_path: Path) -> None:
    require(shutil.which("tshark") is not None, "tshark is not installed (scripts/setup.sh installs it)")
    path = tmp_path / "ts.pcap"
    buf, offs, lens, _ = frames(3)
    ts = np.array([T0, T0 + 1, T0 + 10**9 - 1], dtype=np.uint64)
    with PcapWriter(path) as w:
        w.write_batch(buf, offs, lens, ts)
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "udp.dstport"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout.split("\n")
    rows = [line.split("\t") for line in out if line]
    assert [r[0] for r in rows] == ["1700000000.123456789", "1700000000.123456790", "1700000001.123456788"]
    assert {r[1] for r in rows} == {"26400"}


def test_rotation_keeps_files_bounded(tmp_path: Path) -> None:
    path = tmp_path / "rot.pcap"
    buf, offs, lens, raw = frames(50)
    max_bytes = 600
    with PcapWriter(path, max_bytes=max_bytes, max_files=3) as w:
        for start in range(0, 50, 7):  # batches that straddle file boundaries
            w.write_batch(buf, offs[start : start + 7], lens[start : start + 7], T0 + start)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["rot.pcap", "rot.pcap.1", "rot.pcap.2"]
    assert all(FILE_HEADER_LEN < f.stat().st_size <= max_bytes for f in files)
    assert w.rotations >= 5 and w.written == 50
    # the kept files hold the newest frames, in order, with nothing lost between them
    kept = [bytes(p) for f in (path.with_name("rot.pcap.2"), path.with_name("rot.pcap.1"), path)
            for p in rdpcap(str(f))]
    assert kept == raw[-len(kept):]


def test_oversized_record_goes_alone(tmp_path: Path) -> None:
    path = tmp_path / "big.pcap"
    buf, offs, lens, raw = frames(3, pad=200)
    with PcapWriter(path, max_bytes=100, max_files=5) as w:
        w.write_batch(buf, offs, lens, T0)
    got = [rdpcap(str(path.with_name(n))) for n in ("big.pcap.2", "big.pcap.1", "big.pcap")]
    assert [[bytes(p) for p in g] for g in got] == [[raw[0]], [raw[1]], [raw[2]]]


def test_sampling_exact_across_batches(tmp_path: Path) -> None:
    path = tmp_path / "s.pcap"
    buf, offs, lens, raw = frames(100)
    with PcapWriter(path, sample=7) as w:
        for a, b in ((0, 3), (3, 40), (40, 41), (41, 100)):
            w.write_batch(buf, offs[a:b], lens[a:b], np.arange(a, b, dtype=np.uint64) + np.uint64(T0))
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == raw[::7]
    assert [int(p.time * 10**9) - T0 for p in pkts] == list(range(0, 100, 7))
    assert w.written == 15 and w.sampled_out == 85


def test_bad_arguments_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(GatewayError, match="N >= 1"):
        PcapWriter(tmp_path / "x.pcap", sample=0)
    with pytest.raises(GatewayError, match="mkdir -p"):
        PcapWriter(tmp_path / "no" / "such" / "x.pcap")
    w = PcapWriter(tmp_path / "c.pcap")
    w.close()
    with pytest.raises(GatewayError, match="closed"):
        w.write_batch(*frames(1)[:3], T0)


def test_monotonic_to_realtime() -> None:
    import time

    before = time.clock_gettime_ns(time.CLOCK_REALTIME)
    mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    real = monotonic_to_realtime(np.array([mono, mono - 10**9, 0], dtype=np.uint64))
    after = time.clock_gettime_ns(time.CLOCK_REALTIME)
    # ``mono`` was read between ``before`` and ``after``: so is its wall-clock time (give or take the span
    # the converter took to sample both clocks, itself inside the window)
    span = after - before
    assert before - span <= int(real[0]) <= after + span
    assert int(real[0]) - int(real[1]) == 10**9  # an offset, not a rescale
    assert before <= int(real[2]) <= after  # no stamp: the time of writing


def test_write_packets_takes_any_transports_batch_as_whole_frames(tmp_path: Path) -> None:
    """One path for every receiver: frames in place where the headers are in the buffer (XDP), synthesized
    Ethernet/IPv4/UDP headers with each packet's port where the transport has none (kernel sockets)."""
    from xdpgw.batch import Batch

    buf, offs, lens, raw = frames(4)
    hdr = np.full(4, 14 + 20 + 8, np.uint16)  # as XdpReceiver: payloads after their headers in the buffer
    framed = Batch(buf, offs + hdr, lens - hdr, np.zeros(4, np.uint64), 4, np.full(4, 26400, np.uint16), hdr)
    bare = Batch.from_payloads([b"a" * 5, b"", b"bc" * 700], dport=[9001, 9002, 9001])  # as SocketReceiver
    with PcapWriter(tmp_path / "x.pcap") as w:
        assert w.write_packets(framed) == 4
        assert w.write_packets(bare) == 3
        assert w.write_packets(Batch.empty()) == 0
    got = rdpcap(str(tmp_path / "x.pcap"))
    assert [bytes(p) for p in got[:4]] == raw  # in place: the very frames
    for p, payload, port in zip(got[4:], bare.payloads(), (9001, 9002, 9001), strict=True):
        assert bytes(p[UDP].payload) == payload and p[UDP].dport == port and p[UDP].len == 8 + len(payload)
        fresh = IP(bytes(p[IP]))
        del fresh.chksum  # scapy computes it again
        assert p[IP].len == 28 + len(payload) and IP(bytes(fresh)).chksum == p[IP].chksum
        assert p[UDP].chksum == 0  # none (IPv4 allows it): the addresses are not known
    mixed = Batch(np.concatenate([buf, bare.buf]), np.concatenate([offs + hdr, bare.offsets + len(buf)]),
                  np.concatenate([lens - hdr, bare.lengths]), np.zeros(7, np.uint64), 7,
                  np.concatenate([framed.dports, bare.dports]), np.concatenate([hdr, np.zeros(3, np.uint16)]))
    with PcapWriter(tmp_path / "m.pcap") as w:  # no receiver mixes them; still whole frames, framed first
        assert w.write_packets(mixed) == 7
    assert [bytes(p) for p in rdpcap(str(tmp_path / "m.pcap"))] == [bytes(p) for p in got]
