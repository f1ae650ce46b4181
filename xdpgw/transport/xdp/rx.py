"""AF_XDP transport: a UMEM + rings from libxdp (via the cffi module), fed by our XDP program.

One ``recv_batch`` is one C call that drains up to a burst of RX descriptors into preallocated numpy
arrays (payload offsets into the UMEM, lengths, XDP receive stamps, header lengths, UDP destination
ports) and recycles the previous burst's frames to the fill ring. Payloads are read in place through a
numpy view of the UMEM.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from typing import Any

import numpy as np

from xdpgw.batch import Batch, check_burst
from xdpgw.errors import GatewayError
from xdpgw.kernel.features import require_root
from xdpgw.kernel.maps import sum_counters
from xdpgw.kernel.program import XdpProgram
from xdpgw.transport.xdp.xsk_errors import xsk_open_error

XDP_USE_NEED_WAKEUP = 1 << 3


def _ffi():
    from xdpgw._native._xsk import ffi, lib

    return ffi, lib


def idle_wait_ms(left: float | None, watchdog_ns: int = 0) -> int:
    """How long one idle wait may sleep (ms): the ``left`` seconds of the caller's timeout (None: forever,
    in 100 ms steps so signals get through). Under the XDP watchdog (limit ``watchdog_ns``) a quarter of
    the limit at most: the heartbeat is stamped on every wake, so a healthy idle consumer never looks hung
    (its feed would go to the kernel and never wake it). Under a 4 ms limit: 0, poll without sleeping."""
    ms = 100 if left is None else max(1, int(left * 1000))
    return min(ms, watchdog_ns // 4_000_000) if watchdog_ns > 0 else ms


class XdpReceiver:
    """Receive feed packets from one RX queue through AF_XDP.

    With no ``program`` given, it attaches our XDP program itself (and detaches it on close); pass a
    shared ``XdpProgram`` to run one receiver per queue under one program (also from forked worker
    processes). The process that opens the receiver is registered as the queue's consumer: if it dies
    (even by kill -9), the program's death notice sends the queue's feed to the kernel at once.

    UDP checksums are verified like the kernel does (IPv4: unless 0; IPv6: always); packets with a wrong
    one are dropped and counted (``stats()["bad_checksum"]``). ``verify_checksums=False`` skips that.
    """

    transport = "xdp"

    def __init__(
        self,
        iface: str,
        queue: int = 0,
        ports: tuple[int, ...] | list[int] = (9001,),
        *,
        mode: str = "auto",
        force: bool = False,
        program: XdpProgram | None = None,
        frames: int = 16384,
        frame_size: int = 2048,
        rx_size: int = 8192,
        tx_frames: int = 0,
        tx_size: int = 0,
        hugepages: bool = False,
        spin_us: int = 0,
        batch: int = 256,
        verify_checksums: bool = True,
    ) -> None:
        require_root()
        check_burst(batch)
        self.iface, self.queue, self.spin_ns = iface, int(queue), int(spin_us) * 1000
        self._xsk = None
        self._consumer_pid = 0
        self._owns_program = program is None
        self.program = program or XdpProgram(iface, ports, mode=mode, force=force)
        try:
            if self._owns_program:
                self.program.attach()
            nq = self.program.info.rx_queues
            if not 0 <= self.queue < nq:
                raise GatewayError(
                    f"queue {self.queue} is out of range: {iface} has {nq} RX queue(s)",
                    f"use --queue 0..{nq - 1} (see `ethtool -l {iface}`)",
                )
            self._open(frames, frame_size, rx_size, tx_frames, tx_size, hugepages)
            _ffi()[1].xgw_xsk_set_verify_csum(self._xsk, int(verify_checksums))
        except BaseException:
            self.close()
            raise
        self._offs = np.zeros(batch, dtype=np.int64)
        self._lens = np.zeros(batch, dtype=np.uint32)
        self._ts = np.zeros(batch, dtype=np.uint64)
        self._hdr = np.zeros(batch, dtype=np.uint16)  # Batch.header_lengths: Ethernet/IP/UDP bytes in the UMEM
        self._dport = np.zeros(batch, dtype=np.uint16)  # Batch.dports: read from the UDP header by the C burst
        ffi, _ = _ffi()
        self._p_offs = ffi.from_buffer("int64_t[]", self._offs)
        self._p_lens = ffi.from_buffer("uint32_t[]", self._lens)
        self._p_ts = ffi.from_buffer("uint64_t[]", self._ts)
        self._p_hdr = ffi.from_buffer("uint16_t[]", self._hdr)
        self._p_dport = ffi.from_buffer("uint16_t[]", self._dport)
        self._batch_cap = batch
        self._lib = _ffi()[1]
        self._p_umem = ffi.from_buffer("uint8_t[]", self.umem)

    def _open(self, frames: int, frame_size: int, rx_size: int, tx_frames: int, tx_size: int, huge: bool) -> None:
        ffi, lib = _ffi()
        pow2 = 1 << math.ceil(math.log2(max(frames, 2)))
        cfg = ffi.new(
            "struct xgw_xsk_config *",
            {
                "nframes": pow2,
                "tx_frames": tx_frames,
                "frame_size": frame_size,
                "rx_size": rx_size,
                "tx_size": tx_size,
                "bind_flags": XDP_USE_NEED_WAKEUP,
                "hugepages": int(huge),
            },
        )
        err = ffi.new("char[]", 256)
        xsk = lib.xgw_xsk_open(self.iface.encode(), self.queue, cfg, err, 256)
        if xsk == ffi.NULL:
            raise xsk_open_error(ffi.string(err).decode(), self.iface, self.queue)
        self._xsk = xsk
        ret = lib.xgw_xsk_update_map(xsk, self.program.xsks_map_fd)
        if ret:
            raise GatewayError(
                f"cannot put the AF_XDP socket into the XSKMAP: {errno.errorcode.get(-ret, ret)}",
                "report this with `xdpgw doctor` output",
            )
        lib.xgw_xsk_set_heartbeat(xsk, self.program.heartbeat_slot(self.queue))  # for the XDP watchdog
        self._consumer_pid = os.getpid()  # the socket is in the XSKMAP: now clear the queue's dead flag
        self.program.register_consumer(self.queue, self._consumer_pid)
        self.umem = np.frombuffer(ffi.buffer(lib.xgw_xsk_area(xsk), lib.xgw_xsk_area_size(xsk)), dtype=np.uint8)
        self.zerocopy = bool(lib.xgw_xsk_zerocopy(xsk))
        self.hugepages = bool(lib.xgw_xsk_hugepages(xsk))
        self.frames, self.rx_size = pow2, rx_size

    # --- receiving ----------------------------------------------------------------------------
    def recv_batch(self, max_packets: int = 256, timeout: float | None = 0.0) -> Batch:
        """Up to ``max_packets`` payloads (valid until the next call); waits up to ``timeout`` s."""
        return self.batch_of(self.recv_raw(max_packets, timeout))

    def recv_raw(self, max_packets: int = 256, timeout: float | None = 0.0) -> int:
        """``recv_batch`` without the ``Batch``: the count; the payloads are in ``c_arrays`` (hot path)."""
        lib = self._lib
        m = min(max_packets, self._batch_cap)
        n = lib.xgw_rx_burst(self._xsk, m, self._p_offs, self._p_lens, self._p_ts, self._p_hdr, self._p_dport,
                             self.spin_ns)
        if n == 0 and timeout != 0:
            watchdog_ns = self.program.watchdog_ns()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                r = lib.xgw_xsk_wait(self._xsk, idle_wait_ms(left, watchdog_ns))
                n = lib.xgw_rx_burst(self._xsk, m, self._p_offs, self._p_lens, self._p_ts, self._p_hdr,
                                     self._p_dport, 0)  # stamps
                if n or r < 0 or (deadline is not None and time.monotonic() >= deadline):
                    break
        if n < 0:
            raise GatewayError(f"AF_XDP receive failed: {errno.errorcode.get(-n, n)}", "restart the gateway")
        return n

    def recv_fast(self, fast: Any, max_packets: int, t_poll: int) -> int:
        """Receive a burst and run the feed's C fast path (``struct xgw_fast``) on it in one C call; the
        count (``fast.result``: the fast path's answer; the payloads are in ``c_arrays`` as after
        ``recv_raw``). Never waits longer than the spin."""
        n = self._lib.xgw_fast_rx_xdp(fast, self._xsk, min(max_packets, self._batch_cap), self._p_offs,
                                      self._p_lens, self._p_ts, self._p_hdr, self._p_dport, self.spin_ns, t_poll)
        if n < 0:
            raise GatewayError(f"AF_XDP receive failed: {errno.errorcode.get(-n, n)}", "restart the gateway")
        return n

    def batch_of(self, n: int) -> Batch:
        """The last ``recv_raw``'s ``n`` payloads as a ``Batch`` over the UMEM, whose frames still hold each
        payload's headers (``header_lengths``) and UDP destination port (``dports``)."""
        return Batch(self.umem, self._offs[:n], self._lens[:n], self._ts[:n], n, self._dport, self._hdr)

    @property
    def c_arrays(self) -> tuple:
        """C pointers to the burst arrays ``recv_raw`` fills: (UMEM, offsets, lengths, stamps, UDP ports)."""
        return self._p_umem, self._p_offs, self._p_lens, self._p_ts, self._p_dport

    # --- facts and counters ---------------------------------------------------------------------
    def fileno(self) -> int:
        return _ffi()[1].xgw_xsk_fd(self._xsk)

    def stats(self) -> dict[str, int]:
        ffi, lib = _ffi()
        st = ffi.new("struct xgw_xsk_stats *")
        lib.xgw_xsk_stats(self._xsk, st)
        out = {
            "packets": st.rx_packets,
            "bytes": st.rx_bytes,
            "drops": st.rx_dropped + st.rx_ring_full,
            "bad_frames": st.rx_bad_frames,
            "bad_checksum": st.rx_bad_csum,
            "no_stamp": st.rx_no_stamp,
            "wakeups": st.rx_wakeups,
            "xdp_rx_dropped": st.rx_dropped,
            "xdp_rx_invalid_descs": st.rx_invalid_descs,
            "xdp_rx_ring_full": st.rx_ring_full,
            "xdp_rx_fill_ring_empty_descs": st.rx_fill_ring_empty_descs,
            "tx_packets": st.tx_packets,
            "tx_bytes": st.tx_bytes,
            "xdp_tx_invalid_descs": st.tx_invalid_descs,
            "xdp_tx_ring_empty_descs": st.tx_ring_empty_descs,
        }
        bpf = sum_counters(self.program.table("counters").map_fd, self.queue + 1)[self.queue]
        out.update({f"bpf_{k}": v for k, v in bpf.items()})
        return out

    def describe(self) -> dict[str, object]:
        ports = list(self.program.ports)
        return {
            "transport": "xdp",
            "mode": self.program.attached_mode,
            "iface": self.iface,
            "queue": self.queue,
            "port": ports[0] if len(ports) == 1 else ports,
            "zerocopy": self.zerocopy,
            "hugepages": self.hugepages,
            "frames": self.frames,
            "rx_size": self.rx_size,
            "death_notice": list(self.program.death_notice),
        }

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Detach the program (if ours) *before* closing the socket; safe to call twice."""
        if self._consumer_pid == os.getpid() and self.program is not None and self.program.attached_mode:
            with contextlib.suppress(Exception):  # a normal close is no death
                self.program.unregister_consumer(self.queue, self._consumer_pid)
        self._consumer_pid = 0
        if self._owns_program and self.program is not None:
            self.program.close()
        if self._xsk is not None:
            ffi, lib = _ffi()
            self.umem = self._p_umem = None
            xsk, self._xsk = self._xsk, None
            lib.xgw_xsk_close(xsk)

    def __enter__(self) -> XdpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
