"""`xdpgw blast`: a kernel-speed MoldUDP64/ITCH generator in the manner of xdp-trafficgen.

An XDP program (``xdpgw/kernel/programs/blast.c``, compiled by BCC) is run with ``BPF_PROG_RUN`` in live-frames mode
over one Ethernet/IPv4/UDP/MoldUDP64 frame template: it stamps the next sequence number and the
time into each copy and returns ``XDP_TX``, so the kernel transmits it on the interface without a
socket or a copy from user space. One syscall runs a chunk of frames; we run chunks until done.

On a veth the peer must have a native XDP program or GRO on (``ethtool -K PEER gro on``), otherwise
the kernel silently drops what is transmitted; the peer's receive work runs on the blaster's CPU.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import time

from xdpgw.errors import GatewayError
from xdpgw.kernel.features import require_root
from xdpgw.kernel.programs import compile_xdp
from xdpgw.ops.tuning import on_cpu
from xdpgw.tools.synth import synth_packets
from xdpgw.transport.xdp.tx import Route, header_template, resolve_route

PROG_NAME = "xgw_blast"
S_NEXT_SEQ, S_CLOCK_OFFSET, S_FRAMES, S_BAD, S_IFINDEX = range(5)
NS_PER_DAY = 86_400 * 10**9
MAX_MSGS = 64  # the program stamps at most this many messages per frame
XDP_TX = 3


def ipv4_checksum(header: bytes) -> int:
    """The IPv4 header checksum (checksum field zero in ``header``)."""
    words = struct.unpack(f">{len(header) // 2}H", header)
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def blast_frame(route: Route, src_port: int, dst_port: int, msgs_per_packet: int, session: str,
                seed: int = 0) -> bytes:
    """The frame template: Ethernet/IPv4/UDP (checksum 0) + one MoldUDP64 packet of ITCH messages."""
    if ":" in route.dst_ip:
        raise GatewayError("blast sends IPv4 only (its UDP checksum is 0, which IPv6 forbids)",
                           "give an IPv4 destination, or use `xdpgw send --transport xdp` for IPv6")
    if not 1 <= msgs_per_packet <= MAX_MSGS:
        raise GatewayError(f"--msgs-per-packet {msgs_per_packet} is out of range", f"use 1..{MAX_MSGS}")
    batch, _ = synth_packets(1, (msgs_per_packet, msgs_per_packet), first_seq=0, session=session, seed=seed)
    payload = bytes(batch.payload(0))
    hdr = bytearray(header_template(route.src_mac, route.dst_mac, route.src_ip, route.dst_ip, src_port, dst_port))
    struct.pack_into(">H", hdr, 16, 20 + 8 + len(payload))
    struct.pack_into(">H", hdr, 18, 0)  # id 0 with DF set: fine for never-fragmented datagrams
    struct.pack_into(">H", hdr, 24, ipv4_checksum(bytes(hdr[14:34])))
    struct.pack_into(">H", hdr, 38, 8 + len(payload))
    frame = bytes(hdr) + payload
    if len(frame) - 14 > route.mtu:
        fit = max(1, msgs_per_packet * (route.mtu - 48) // len(payload))
        raise GatewayError(f"a frame of {msgs_per_packet} messages ({len(frame)} bytes) exceeds the MTU "
                           f"{route.mtu} of {route.iface}", f"use --msgs-per-packet {fit} or less")
    return frame


def _compile():
    return compile_xdp("blast.c", PROG_NAME, "the blast program")


def _clock_offset() -> int:
    """Add to CLOCK_MONOTONIC (bpf_ktime_get_ns) to get CLOCK_REALTIME ns since midnight (UTC), mod one day."""
    return (time.time_ns() - time.monotonic_ns()) % NS_PER_DAY


def _run_error(code: int, iface: str) -> GatewayError:
    e = -code
    if e == errno.ENODEV:
        return GatewayError(f"{iface} is not in this network namespace", "run blast in the namespace of the interface")
    if e in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUPP if hasattr(errno, "ENOTSUPP") else 524):
        return GatewayError(f"BPF_PROG_RUN live-frames mode refused ({os.strerror(e)})",
                            "it needs Linux >= 5.18 and an XDP-capable interface; use `xdpgw send` instead")
    if e == errno.EPERM:
        return GatewayError("BPF_PROG_RUN is not allowed", "run it as root (CAP_BPF + CAP_NET_ADMIN)")
    return GatewayError(f"BPF_PROG_RUN failed: {os.strerror(e)}", "check the interface and `xdpgw doctor`")


class Blaster:
    """The blast program loaded and bound to one destination; ``run()`` continues the sequence each time.

    Create and run it in the network namespace of ``iface``. ``close()`` unloads the program.
    """

    def __init__(self, iface: str, dst_ip: str, port: int, *, dst_mac: str | None = None,
                 src_ip: str | None = None, src_port: int = 40000, msgs_per_packet: int = 1,
                 session: str = "BLAST", first_seq: int = 1, batch_size: int = 64, queue: int = 0) -> None:
        require_root("blast (BPF_PROG_RUN, CAP_BPF)")
        if not 1 <= batch_size <= 256:
            raise GatewayError(f"batch size {batch_size} is out of range", "use 1..256 frames per batch")
        self._bpf, self._anchor_fd = None, None
        self.route = resolve_route(iface, dst_ip, src_ip, dst_mac=dst_mac)
        self.port, self.msgs_per_packet, self.session = port, msgs_per_packet, session
        self.batch_size, self.queue = batch_size, queue
        self.frame = blast_frame(self.route, src_port, port, msgs_per_packet, session)
        self._bpf, fn = _compile()
        self.prog_fd = fn.fd
        self._state = self._bpf[b"blast_state"]
        self._set(S_NEXT_SEQ, first_seq)
        self._set(S_CLOCK_OFFSET, _clock_offset())
        self._set(S_IFINDEX, self.route.ifindex)

    def _set(self, slot: int, value: int) -> None:
        self._state[ctypes.c_int(slot)] = ctypes.c_uint64(value)

    def _get(self, slot: int) -> int:
        return int(self._state[ctypes.c_int(slot)].value)

    @property
    def next_seq(self) -> int:
        """The sequence number the next frame will carry."""
        return self._get(S_NEXT_SEQ)

    def anchor(self) -> bool:
        """Keep the program registered with the kernel's XDP dispatcher, so that runs of a few frames do
        not each pay a dispatcher update (~24 ms: a synchronize_rcu). It is attached, through a bpf_link
        that dies with this process, to the loopback of the current network namespace, where it passes
        every frame. False if that is impossible (runs stay correct, small ones only slower)."""
        if self._anchor_fd is None:
            from xdpgw._native._blast import lib

            fd = lib.xgw_xdp_link(self.prog_fd, socket.if_nametoindex("lo"))
            if fd < 0:
                return False
            self._anchor_fd = fd
        return True

    def release_anchor(self) -> None:
        """Give the loopback anchor up (another blaster in this namespace may take it: one program per
        interface, so of several blasters only one is anchored at a time)."""
        if self._anchor_fd is not None:
            fd, self._anchor_fd = self._anchor_fd, None
            os.close(fd)

    def run(self, packets: int, chunk: int = 1 << 20, duration: float | None = None,
            cpu: int | None = None) -> dict:
        """Send ``packets`` frames (fewer if ``duration`` s pass or Ctrl-C) at full speed, in BPF_PROG_RUN
        chunks; a report."""
        from xdpgw._native._blast import ffi, lib

        frame = ffi.from_buffer("uint8_t[]", self.frame)
        retval = ffi.new("uint32_t *")
        first_seq, frames0, dropped0 = self._start()
        interrupted = False
        with on_cpu(cpu):
            t0 = time.perf_counter()
            try:
                left = packets
                while left > 0:
                    if duration is not None and time.perf_counter() - t0 >= duration:
                        break
                    n = min(chunk, left)
                    err = lib.xgw_blast_run(self.prog_fd, self.route.ifindex, self.queue, frame, len(self.frame), n,
                                            self.batch_size, retval)
                    if err == -errno.EINTR:
                        interrupted = True
                        break
                    if err:
                        raise _run_error(err, self.route.iface)
                    left -= n
            except KeyboardInterrupt:
                interrupted = True
            elapsed = time.perf_counter() - t0
        return self._report(first_seq, frames0, dropped0, elapsed, interrupted, cpu)

    def run_paced(self, pps: float, seconds: float, cpu: int | None = None, max_per_call: int = 256) -> dict:
        """Send at ``pps`` frames per second for ``seconds`` (runs of what is due, paced on the clock in C;
        the program is anchored first, see :meth:`anchor`); a report whose ``pps`` is what was achieved."""
        from xdpgw._native._blast import ffi, lib

        if pps <= 0 or seconds <= 0:
            raise GatewayError(f"bad pacing {pps} pps for {seconds} s", "give a positive rate and duration")
        anchored = self.anchor()
        frame = ffi.from_buffer("uint8_t[]", self.frame)
        sent = ffi.new("uint64_t *")
        total = max(1, round(pps * seconds))
        step = max(1, round(pps * 0.05))  # return to Python every 50 ms: Ctrl-C stays responsive
        first_seq, frames0, dropped0 = self._start()
        interrupted = False
        with on_cpu(cpu):
            t0 = time.perf_counter()
            start_ns = time.monotonic_ns()
            try:
                while sent[0] < total:
                    err = lib.xgw_blast_paced(self.prog_fd, self.route.ifindex, self.queue, frame, len(self.frame),
                                              self.batch_size, start_ns, pps, min(total, sent[0] + step),
                                              max_per_call, sent)
                    if err == -errno.EINTR:
                        interrupted = True
                        break
                    if err:
                        raise _run_error(err, self.route.iface)
            except KeyboardInterrupt:
                interrupted = True
            elapsed = time.perf_counter() - t0
        report = self._report(first_seq, frames0, dropped0, elapsed, interrupted, cpu)
        report["target_pps"] = pps
        report["anchored"] = anchored  # False: runs of several frames each paid a dispatcher update
        return report

    def _start(self) -> tuple[int, int, int]:
        self._set(S_CLOCK_OFFSET, _clock_offset())
        return self.next_seq, self._get(S_FRAMES), _tx_dropped(self.route.iface)

    def _report(self, first_seq: int, frames0: int, dropped0: int, elapsed: float, interrupted: bool,
                cpu: int | None) -> dict:
        sent = self._get(S_FRAMES) - frames0
        dropped = _tx_dropped(self.route.iface) - dropped0
        r = self.route
        return {
            "packets": sent, "messages": sent * self.msgs_per_packet, "seconds": elapsed,
            "pps": sent / elapsed if elapsed > 0 else 0.0,
            "mps": sent * self.msgs_per_packet / elapsed if elapsed > 0 else 0.0,
            "gbps": sent * (len(self.frame) + 24) * 8 / elapsed / 1e9 if elapsed > 0 else 0.0,
            "tx_dropped": dropped, "bad_template": self._get(S_BAD), "first_seq": first_seq,
            "next_seq": self.next_seq, "frame_len": len(self.frame), "msgs_per_packet": self.msgs_per_packet,
            "batch_size": self.batch_size, "iface": r.iface, "dest": f"{r.dst_ip}:{self.port}",
            "dst_mac": r.dst_mac, "session": self.session, "cpu": cpu, "interrupted": interrupted,
        }

    def close(self) -> None:
        self.release_anchor()
        if self._bpf is not None:
            bpf, self._bpf = self._bpf, None
            bpf.cleanup()

    def __enter__(self) -> Blaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tx_dropped(iface: str) -> int:
    """The interface's tx_dropped counter (on a veth it counts frames the peer's XDP ring refused)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:  # netlink, not /sys: this thread may be in another network namespace
        idx = ipr.link_lookup(ifname=iface)
        if not idx:
            return 0
        st = ipr.link("get", index=idx[0])[0].get_attr("IFLA_STATS64")
    return int(st["tx_dropped"]) if st else 0


def blast(iface: str, dst_mac: str | None, src_ip: str | None, dst_ip: str, port: int, packets: int,
          msgs_per_packet: int = 1, session: str = "BLAST", *, first_seq: int = 1, src_port: int = 40000,
          batch_size: int = 64, chunk: int = 1 << 20, duration: float | None = None,
          cpu: int | None = None, rate: float | None = None) -> dict:
    """Blast ``packets`` MoldUDP64 frames of ``msgs_per_packet`` ITCH messages at ``dst_ip:port``; the report.

    ``dst_mac``/``src_ip`` None: taken from the neighbour table / the interface. Run it in the network
    namespace of ``iface``; ``cpu`` pins the blaster (keep the consumer on another CPU). ``rate``: paced
    at that many frames/s (for ``packets`` frames, or ``duration`` s if given) instead of full speed.
    """
    with Blaster(iface, dst_ip, port, dst_mac=dst_mac, src_ip=src_ip, src_port=src_port,
                 msgs_per_packet=msgs_per_packet, session=session, first_seq=first_seq,
                 batch_size=batch_size) as b:
        if rate:
            return b.run_paced(rate, duration if duration is not None else packets / rate, cpu=cpu)
        return b.run(packets, chunk=chunk, duration=duration, cpu=cpu)
