"""Every default of the receive pipeline, in one typed place.

`Options` is what `xdpgw attach|listen`, `xdpgw demo`, `xdpgw bench` and `xdpgw doctor` build from and
check against (their click defaults are read from `DEFAULTS`); :mod:`xdpgw.pipeline.assembly` turns it
into receivers, a feed decoder, handlers, a Gateway, workers, a metrics server and taps. Plain frozen
data: no I/O, no imports of the parts it describes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from xdpgw.errors import GatewayError

XDP_PACKET_HEADROOM = 256  # the kernel keeps this much of every UMEM frame in front of the packet
NATIVE_XDP_MAX_MTU = 3498  # a 4 KiB page - XDP_PACKET_HEADROOM - skb_shared_info (~320) - Ethernet/VLAN header
ETH_VLAN_HEADER = 18  # Ethernet header + one VLAN tag: what a frame carries beyond the MTU


@dataclass(frozen=True)
class ReceiverOptions:
    """Where the feed comes from and how each queue's socket is opened."""

    transport: Literal["xdp", "socket"] = "xdp"
    ports: tuple[int, ...] = (9001,)  # feed UDP ports (line B's, if any, is FeedOptions.line_b)
    iface: str | None = None  # AF_XDP: the interface; kernel sockets: the multicast join's
    # AF_XDP (`xdpgw attach`)
    queues: tuple[int, ...] = (0,)
    mode: Literal["auto", "drv", "skb"] = "auto"
    frames: int = 16384  # UMEM frames per queue (rounded up to a power of two)
    frame_size: int = 2048  # bytes per UMEM frame
    rx_size: int = 8192  # RX ring entries
    hugepages: bool = False  # UMEM on huge pages (falls back to normal pages)
    verify_checksums: bool = True
    # both transports
    batch: int = 256  # packets per burst: the receiver's arrays and the Gateway's burst
    spin_us: int = 200  # idle policy: busy-poll this long in C before returning an empty burst (XDP)
    # kernel sockets (`xdpgw listen`)
    bind_addr: str = "0.0.0.0"
    group: str | None = None  # multicast group to join (on ``iface``)
    rcvbuf: int = 64 << 20
    busy_poll_us: int = 50  # SO_BUSY_POLL
    slot: int = 2048  # bytes per datagram slot (longer datagrams are counted as truncated)

    @property
    def umem_frames(self) -> int:
        """Frames the receiver actually allocates (``frames`` rounded up to a power of two)."""
        return 1 << math.ceil(math.log2(max(self.frames, 2)))

    @property
    def umem_bytes(self) -> int:
        """UMEM bytes per queue: what memlock and huge pages must cover."""
        return self.umem_frames * self.frame_size

    @property
    def max_frame(self) -> int:
        """The longest Ethernet frame a UMEM frame holds (longer ones are dropped by the kernel)."""
        return self.frame_size - XDP_PACKET_HEADROOM

    @property
    def max_mtu(self) -> int:
        """The largest interface MTU whose frames fit: the UMEM frame, and a page for native XDP."""
        return min(self.max_frame - ETH_VLAN_HEADER, NATIVE_XDP_MAX_MTU)


@dataclass(frozen=True)
class ProgramOptions:
    """The XDP program's guards (`xdpgw attach`)."""

    force: bool = False  # replace an XDP program that is not ours
    allow_src: tuple[str, ...] = ()  # redirect only feed packets from these sources
    deny: Literal["pass", "drop"] = "pass"  # with allow_src: what happens to other sources
    rate_cap: float | None = None  # per-source packets/s
    rate_burst: int = 64
    watchdog_us: float | None = None  # pass the feed to the kernel if the consumer stops polling this long


@dataclass(frozen=True)
class FeedOptions:
    """What is done with the packets: decoding, lines, books, user handlers, a strategy."""

    protocol: Literal["moldudp64"] | None = None  # None: raw packets go to the handlers
    symbols: tuple[str, ...] = ()  # deliver only these (needs protocol)
    retransmit: tuple[str, int] | None = None  # MoldUDP64 re-request server (needs protocol)
    line_b: int | None = None  # UDP port of the redundant line B (needs protocol)
    book: bool = False  # order books (needs protocol)
    handlers: tuple[str, ...] = ()  # module:function, called per batch
    strategy: str | None = None  # module:function called as f(decoded, ctx); one queue
    venues: tuple[str, ...] = ()  # the strategy's order venues
    router_config: str | None = None  # the strategy router's TOML

    @property
    def lines(self) -> int:
        return 1 if self.line_b is None else 2


@dataclass(frozen=True)
class RunOptions:
    """How the consumer runs and what it reports."""

    count: int | None = None  # stop after N packets
    duration: float | None = None  # stop after S seconds
    quiet: bool = False  # no live status line
    status_interval: float = 1.0  # s between status lines, state file and metrics updates (and workers' snapshots)
    cpus: tuple[int, ...] | None = None  # one CPU per consumer (per queue), in queue order
    fifo: int | None = None  # SCHED_FIFO priority of the consumer
    mlock: bool = False  # mlockall() the consumer
    metrics_port: int | None = None  # Prometheus metrics on 127.0.0.1:P
    trace_latency: str | None = None  # flight recorder CSV written at exit
    pcap: str | None = None  # write bypassed frames here (several queues: PATH-qN.pcap)
    pcap_max_mb: float = 100.0  # rotate the pcap at this size
    pcap_sample: int = 1  # keep 1 frame in N


@dataclass(frozen=True)
class Options:
    """The whole receive pipeline: ``DEFAULTS`` is what every command starts from."""

    receiver: ReceiverOptions = field(default_factory=ReceiverOptions)
    program: ProgramOptions = field(default_factory=ProgramOptions)
    feed: FeedOptions = field(default_factory=FeedOptions)
    run: RunOptions = field(default_factory=RunOptions)

    def with_(self, **parts: dict[str, Any]) -> Options:
        """A copy with some fields of some parts changed: ``opts.with_(run={"count": 10})``."""
        return replace(self, **{k: replace(getattr(self, k), **v) for k, v in parts.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON-able data (tuples become lists); `from_dict` gives the same Options back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]]) -> Options:
        parts = {}
        for f in fields(cls):
            part = f.default_factory()  # type: ignore[misc]
            given = data.get(f.name, {})
            unknown = set(given) - {g.name for g in fields(part)}
            if unknown:
                raise GatewayError(f"unknown {f.name} option(s): {', '.join(sorted(unknown))}",
                                   f"use only these: {', '.join(g.name for g in fields(part))}")
            parts[f.name] = replace(part, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
        return cls(**parts)


DEFAULTS = Options()
