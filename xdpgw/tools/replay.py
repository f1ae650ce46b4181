"""Replay the UDP payloads of a capture (pcap or pcapng) through any `Sender`, at its own pace or a given rate.

`load_pcap` reads the file once with scapy's raw reader (the only per-packet Python) and finds the UDP
payloads of every frame with numpy (Ethernet with one VLAN tag, Linux cooked v1/v2, raw IP, BSD
loopback; IPv4 and IPv6; fragments and non-UDP skipped and counted). `replay` then sends bursts of
whatever is due: the destination MAC/IP/port are the sender's, so a replay is re-addressed by design.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xdpgw.batch import Batch
from xdpgw.errors import GatewayError
from xdpgw.transport.base import Sender, send_with_retries

LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = 0, 1, 101, 113, 228, 229, 276
_PAD = 64  # zero bytes after the last frame: header reads of short frames stay in bounds


@dataclass(slots=True)
class Capture:
    """The UDP payloads of a capture: one buffer, offsets/lengths, capture times (ns, first = 0), ports."""

    buf: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    ts_ns: np.ndarray
    dst_ports: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets)

    def batch(self, a: int, b: int) -> Batch:
        return Batch(self.buf, self.offsets[a:b], self.lengths[a:b], np.zeros(b - a, np.uint64))


def _be16(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (buf[pos].astype(np.int64) << 8) | buf[pos + 1]


def udp_payloads(buf: np.ndarray, starts: np.ndarray, caplens: np.ndarray, linktypes: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Vectorised: for frames at ``starts`` find UDP payload offset/length and destination port.

    Returns ``(keep, offsets, lengths, dst_ports, skipped)`` where ``keep`` masks the UDP frames.
    ``buf`` must have at least 64 zero bytes after the last frame.
    """
    n = len(starts)
    end = starts + caplens
    link_ok = np.isin(linktypes, [LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2])
    l3 = starts.copy()
    eth = linktypes == LINK_ETHERNET
    etype = np.zeros(n, np.int64)
    etype[eth] = _be16(buf, starts[eth] + 12)
    vlan = eth & np.isin(etype, [0x8100, 0x88A8])
    etype[vlan] = _be16(buf, starts[vlan] + 16)
    l3 += np.select([eth & vlan, eth, linktypes == LINK_SLL, linktypes == LINK_SLL2, linktypes == LINK_NULL],
                    [18, 14, 16, 20, 4], 0)
    sll = linktypes == LINK_SLL
    etype[sll] = _be16(buf, starts[sll] + 14)
    sll2 = linktypes == LINK_SLL2
    etype[sll2] = _be16(buf, starts[sll2])
    version = buf[np.minimum(l3, len(buf) - 1)] >> 4
    ip_layer = np.where(eth | sll | sll2, np.isin(etype, [0x0800, 0x86DD]), True)
    v4 = link_ok & ip_layer & (version == 4) & (l3 + 20 <= end)
    v6 = link_ok & ip_layer & (version == 6) & (l3 + 40 <= end)
    ihl = np.where(v4, (buf[l3] & 0x0F).astype(np.int64) * 4, 40)
    proto = np.where(v4, buf[l3 + 9], buf[l3 + 6])
    frag = v4 & ((_be16(buf, l3 + 6) & 0x3FFF) != 0)
    udp = l3 + ihl
    is_udp = (v4 | v6) & (proto == 17) & ~frag & (udp + 8 <= end) & (~v4 | (ihl >= 20))
    ulen = np.where(is_udp, _be16(buf, np.where(is_udp, udp + 4, 0)), 0)
    keep = is_udp & (ulen >= 8)
    offs = udp + 8
    lens = np.clip(np.minimum(ulen - 8, end - offs), 0, None)  # a capture cut short keeps what is there
    ports = np.where(keep, _be16(buf, np.where(keep, udp + 2, 0)), 0)
    skipped = {"not_ip": int((~(v4 | v6)).sum()), "not_udp": int(((v4 | v6) & ~keep & ~frag).sum()),
               "fragments": int(frag.sum())}
    return keep, offs, lens, ports, {k: v for k, v in skipped.items() if v}


def load_pcap(path: str | Path, port: int | None = None) -> Capture:
    """Every UDP payload of ``path`` (only those to ``port`` if given), with capture times."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader

    frames: list[bytes] = []
    ts: list[int] = []
    links: list[int] = []
    try:
        reader = RawPcapReader(str(path))
    except (OSError, Scapy_Exception) as exc:
        raise GatewayError(f"cannot read capture {path} ({exc})", "give a pcap or pcapng file (tcpdump -w)") from None
    with reader:
        default_link = getattr(reader, "linktype", LINK_ETHERNET)
        nano = bool(getattr(reader, "nano", False))
        for data, meta in reader:  # the one per-packet loop: scapy hands out records one by one
            frames.append(data)
            if hasattr(meta, "tshigh"):  # pcapng
                resol = getattr(meta, "tsresol", 1_000_000) or 1_000_000
                ts.append(((meta.tshigh << 32) | meta.tslow) * 1_000_000_000 // resol)
                links.append(getattr(meta, "linktype", default_link))
            else:
                ts.append(meta.sec * 1_000_000_000 + meta.usec * (1 if nano else 1000))
                links.append(default_link)
    lens = np.fromiter((len(f) for f in frames), np.int64, len(frames))
    starts = np.zeros(len(frames), np.int64)
    if len(frames) > 1:
        np.cumsum(lens[:-1], out=starts[1:])
    buf = np.frombuffer(b"".join(frames) + bytes(_PAD), np.uint8)
    keep, offs, plen, ports, skipped = udp_payloads(buf, starts, lens, np.asarray(links, np.int64))
    if port is not None:
        other = keep & (ports != port)
        if other.any():
            skipped["other_ports"] = int(other.sum())
        keep &= ports == port
    t = np.asarray(ts, np.int64)[keep]
    t = t - t[0] if len(t) else t
    return Capture(buf, offs[keep], plen[keep].astype(np.uint32), np.maximum.accumulate(t) if len(t) else t,
                   ports[keep].astype(np.uint16), skipped)


def replay(sender: Sender, cap: Capture, *, rate: float | None = None, speed: float = 1.0, loop: int = 1,
           max_burst: int = 256, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep, should_stop: Callable[[], bool] | None = None) -> dict:
    """Send the capture's payloads ``loop`` times (0: until stopped): original timing / ``speed``, or ``rate``/s."""
    if not len(cap):
        raise GatewayError("the capture holds no UDP payloads to replay", "check the file and --port")
    if rate is not None and rate <= 0 or speed <= 0:
        raise GatewayError("--rate and --speed must be positive", "leave --rate out to keep the original timing")
    n = len(cap)
    offsets_s = (np.arange(n) / rate) if rate is not None else cap.ts_ns / 1e9 / speed
    span = float(offsets_s[-1]) + (1.0 / rate if rate is not None else 0.0)
    t0 = clock()
    packets = nbytes = unsent = bursts = 0
    laps = 0
    stopped = False
    while (loop == 0 or laps < loop) and not stopped:
        lap_t0 = t0 + laps * span
        i = 0
        while i < n:
            if should_stop is not None and should_stop():
                stopped = True
                break
            now = clock() - lap_t0
            due = int(np.searchsorted(offsets_s, now, side="right"))
            if due <= i:
                sleep(min(0.05, max(1e-4, float(offsets_s[i]) - now)))  # > 0: float rounding never spins
                continue
            j = min(due, i + max_burst)
            b = cap.batch(i, j)
            sent = send_with_retries(sender, b)  # a short send is retried twice, then counted
            unsent += b.count - sent
            packets += sent
            nbytes += int(cap.lengths[i : i + sent].sum())
            bursts += 1
            i = j
        laps += 1 if not stopped else 0
    elapsed = clock() - t0
    return {"packets": packets, "bytes": nbytes, "unsent": unsent, "bursts": bursts, "loops": laps,
            "seconds": elapsed, "pps": packets / elapsed if elapsed > 0 else 0.0, "capture_packets": n,
            "skipped": dict(cap.skipped), "transport": getattr(sender, "transport", "?")}
