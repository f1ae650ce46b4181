"""Kernel-socket transport: UDP unicast/multicast through the normal stack, one syscall per burst.

`SocketReceiver` pulls up to ``batch`` datagrams per ``recvmmsg`` into a preallocated buffer (datagram
*i* of a burst at ``i * slot``) with kernel software receive stamps; `SocketSender` pushes a whole
`Batch` with ``sendmmsg``. Both do their per-packet work in C (``xdpgw/_native/net.c``); Python only sets
sockets up, decides and counts per burst.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import warnings

import numpy as np

from xdpgw._native._net import ffi, lib
from xdpgw.batch import MAX_BURST, Batch, check_burst
from xdpgw.errors import GatewayError

__all__ = ["SocketReceiver", "SocketSender"]

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _raise_buffer(sock: socket.socket, which: str, size: int) -> int:
    """Raise SO_RCVBUF/SO_SNDBUF to ``size`` (FORCE first: root ignores the sysctl cap); the actual size."""
    force, plain, sysctl = {
        "rcv": (lib.SO_RCVBUFFORCE, socket.SO_RCVBUF, "net.core.rmem_max"),
        "snd": (lib.SO_SNDBUFFORCE, socket.SO_SNDBUF, "net.core.wmem_max"),
    }[which]
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)
    actual = sock.getsockopt(socket.SOL_SOCKET, plain)  # the kernel doubles what it grants
    if actual < size:
        _warn_once(
            f"{which}:{size}",
            f"UDP SO_{which.upper()}BUF capped at {actual} bytes (asked {size}): bursts may be dropped; "
            f"raise the cap with `sysctl -w {sysctl}={size}` (or run as root so SO_{which.upper()}BUFFORCE works)",
        )
    return actual


def _ifindex(iface: str) -> int:
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise GatewayError(f"no network interface {iface!r}", "pick one from `ip -br link`") from None


def _ipv4(host: str, what: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        raise GatewayError(f"cannot resolve {what} {host!r}", "give an IPv4 address such as 239.1.1.1") from None


def _mreqn(group: str, addr: str, ifindex: int) -> bytes:
    """``struct ip_mreqn``: multicast group, local address, interface index."""
    return struct.pack("4s4si", socket.inet_aton(group), socket.inet_aton(addr), ifindex)


class SocketReceiver:
    """Receive UDP datagrams for ``port`` (optionally multicast ``group``) in bursts of ``batch``.

    ``port=0`` binds a free port (see ``.port``); an IPv6 ``bind_addr`` (``"::"``) makes an IPv6 socket. A
    burst's `Batch` is a view of one reused buffer: valid until the next ``recv_batch``; its ``dports`` are
    all ``.port`` and its ``header_lengths`` 0 (the kernel keeps the headers). Datagrams longer than
    ``slot`` bytes are counted as ``truncated`` and left out of the batch (never delivered cut short).
    """

    transport = "socket"

    def __init__(
        self,
        port: int,
        bind_addr: str = "0.0.0.0",
        group: str | None = None,
        iface: str | None = None,
        rcvbuf: int = 64 << 20,
        busy_poll_us: int = 50,
        batch: int = 256,
        slot: int = 2048,
    ) -> None:
        if not 0 <= port <= 65535:
            raise GatewayError(f"UDP port {port} is out of range", "use a port between 1 and 65535")
        check_burst(batch)
        if not 1 <= slot <= 65536:
            raise GatewayError(f"slot={slot} is out of range", "use 1..65536 bytes (2048 fits any 1500-MTU frame)")
        self.iface = iface or ""
        self.group = _ipv4(group, "multicast group") if group else None
        if self.group and not ipaddress.IPv4Address(self.group).is_multicast:
            raise GatewayError(f"group {group} is not a multicast address", "use one in 224.0.0.0/4, or group=None")
        self._batch, self._slot = batch, slot
        family = socket.AF_INET6 if ":" in bind_addr else socket.AF_INET
        if self.group and family == socket.AF_INET6:
            raise GatewayError(f"group {group} needs an IPv4 socket", "bind an IPv4 address (0.0.0.0) to join it")
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._setup(port, bind_addr, rcvbuf, busy_poll_us)
        except BaseException:
            self._sock.close()
            raise
        self.port = self._sock.getsockname()[1]
        self._fd = self._sock.fileno()
        self._mmsg = ffi.gc(lib.xgw_mmsg_new(batch), lib.xgw_mmsg_free)
        if self._mmsg == ffi.NULL:
            self._sock.close()
            raise MemoryError("xgw_mmsg_new failed")
        self._buf = np.zeros(batch * slot, dtype=np.uint8)
        self._offs = np.zeros(batch, dtype=np.int64)
        self._lens = np.zeros(batch, dtype=np.uint32)
        self._ts = np.zeros(batch, dtype=np.uint64)
        self._dports = np.full(batch, self.port, dtype=np.uint16)  # every datagram came to our port
        self._hdr = np.zeros(batch, dtype=np.uint16)  # and without its headers
        self._c_buf = ffi.from_buffer("uint8_t[]", self._buf)
        self._c_offs = ffi.from_buffer("int64_t[]", self._offs)
        self._c_lens = ffi.from_buffer("uint32_t[]", self._lens)
        self._c_ts = ffi.from_buffer("uint64_t[]", self._ts)
        self._c_dports = ffi.from_buffer("uint16_t[]", self._dports)
        self._info = ffi.new("struct xgw_rx_info *")
        self._empty = self.batch_of(0)
        self._packets = self._bytes = self._truncated = self._bursts = self._no_stamp = 0
        self._drops = 0

    def _setup(self, port: int, bind_addr: str, rcvbuf: int, busy_poll_us: int) -> None:
        s = self._sock
        if self.group:
            # Several listeners may share a multicast feed; for unicast it would silently split the feed.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.rcvbuf = _raise_buffer(s, "rcv", rcvbuf)
        self.timestamps = lib.xgw_net_timestamping(s.fileno()) == 0
        self.busy_poll, self.busy_poll_error = False, ""
        if busy_poll_us > 0:
            try:
                s.setsockopt(socket.SOL_SOCKET, lib.SO_BUSY_POLL, busy_poll_us)
                self.busy_poll = True
            except OSError as e:  # EPERM without CAP_NET_ADMIN: fine, just slower
                self.busy_poll_error = f"{errno.errorcode.get(e.errno, e.errno)}: SO_BUSY_POLL needs CAP_NET_ADMIN"
        self.busy_poll_us = busy_poll_us if self.busy_poll else 0
        addr = self.group or bind_addr
        try:
            s.bind((addr, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise GatewayError(
                    f"UDP port {port} on {addr} is already in use",
                    f"find the owner with `ss -ulpn 'sport = :{port}'` and stop it, or pick another port",
                ) from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise GatewayError(
                    f"bind address {addr} is not on this host", "use 0.0.0.0 or an address from `ip -4 -br addr`"
                ) from None
            if e.errno == errno.EACCES:
                raise GatewayError(f"binding UDP port {port} needs privileges", "run as root or use a port >= 1024") from None
            raise GatewayError(f"cannot bind UDP {addr}:{port}: {e.strerror}", "check the address and port") from None
        if self.group:
            ifindex = _ifindex(self.iface) if self.iface else 0
            local = bind_addr if not ifindex else "0.0.0.0"
            try:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, _mreqn(self.group, local, ifindex))
            except OSError as e:
                where = self.iface or "the default multicast route"
                raise GatewayError(
                    f"cannot join multicast group {self.group} on {where}: {e.strerror}",
                    "pass iface= (the feed's NIC, which must be up and have MULTICAST on) "
                    "or add a route: `ip route add 224.0.0.0/4 dev IFACE`",
                ) from None

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv_batch(self, max_packets: int = 256, timeout: float | None = 0.0) -> Batch:
        """Up to ``max_packets`` (at most ``batch``) datagrams; waits up to ``timeout`` s (None: forever)."""
        n = self.recv_raw(max_packets, timeout)
        return self.batch_of(n) if n else self._empty

    def recv_raw(self, max_packets: int = 256, timeout: float | None = 0.0) -> int:
        """``recv_batch`` without the ``Batch``: the count; the datagrams are in ``c_arrays`` (hot path)."""
        if self._fd < 0:
            raise GatewayError("the socket receiver is closed", "open a new SocketReceiver")
        limit = min(max_packets, self._batch)
        if limit <= 0:
            return 0
        wait_ns = -1 if timeout is None else max(0, int(timeout * 1e9))
        info = self._info
        while True:
            n = lib.xgw_recvmmsg(self._fd, self._mmsg, self._c_buf, self._slot, limit, self._c_offs,
                                 self._c_lens, self._c_ts, wait_ns, info)
            if n < 0:
                raise GatewayError(
                    f"recvmmsg on UDP port {self.port} failed: {os.strerror(-n)}",
                    "the socket is unusable: close this receiver and open a new one",
                )
            self._truncated += info.truncated
            if n or timeout is not None:
                break
        if n:
            self._packets += n
            self._bytes += info.bytes
            self._no_stamp += info.no_stamp
            self._bursts += 1
        return n

    def batch_of(self, n: int) -> Batch:
        """The last ``recv_raw``'s ``n`` datagrams as a ``Batch`` (payloads only: ``header_lengths`` 0)."""
        return Batch(self._buf, self._offs[:n], self._lens[:n], self._ts[:n], n, self._dports, self._hdr)

    @property
    def c_arrays(self) -> tuple:
        """C pointers to the burst arrays ``recv_raw`` fills: (buffer, offsets, lengths, stamps, UDP ports)."""
        return self._c_buf, self._c_offs, self._c_lens, self._c_ts, self._c_dports

    def sendto(self, payload: bytes, addr: tuple) -> None:
        """Send one datagram from this socket's port: for a request/answer peer (a MoldUDP64 re-request
        server) whose answers come back to that port and arrive in bursts like any feed. OSError on failure."""
        self._sock.sendto(payload, addr)

    def stats(self) -> dict[str, int]:
        """packets/bytes delivered, kernel ``drops`` (SO_MEMINFO), ``truncated``, non-empty ``bursts``."""
        if self._fd >= 0:
            d = lib.xgw_sock_drops(self._fd)
            if d >= 0:
                self._drops = int(d)
        return {
            "packets": self._packets,
            "bytes": self._bytes,
            "drops": self._drops,
            "truncated": self._truncated,
            "bursts": self._bursts,
            "no_stamp": self._no_stamp,
        }

    def describe(self) -> dict[str, object]:
        return {
            "transport": "socket",
            "mode": "kernel",
            "iface": self.iface,
            "queue": None,
            "port": self.port,
            "group": self.group,
            "rcvbuf": self.rcvbuf,
            "busy_poll": self.busy_poll,
            "busy_poll_us": self.busy_poll_us,
            "busy_poll_error": self.busy_poll_error,
            "timestamps": "software" if self.timestamps else "none",
            "batch": self._batch,
            "slot": self._slot,
        }

    def close(self) -> None:
        if self._fd >= 0:
            self.stats()  # keep the last drop count readable after close
            self._fd = -1
            self._sock.close()

    def __enter__(self) -> SocketReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SocketSender:
    """Send `Batch`es as UDP datagrams to ``dest_host:dest_port`` (unicast or multicast), one sendmmsg each.

    ``source`` binds the local address; ``ttl``, ``loopback`` and ``iface`` apply to multicast
    (``loopback``: local listeners on this host see the feed too). A full socket buffer is waited out
    for up to ``stall_timeout`` s without progress, then ``send_batch`` returns short.
    """

    transport = "socket"

    def __init__(
        self,
        dest_host: str,
        dest_port: int,
        source: str | None = None,
        ttl: int = 1,
        loopback: bool = True,
        iface: str | None = None,
        sndbuf: int = 16 << 20,
        stall_timeout: float = 1.0,
    ) -> None:
        if not 1 <= dest_port <= 65535:
            raise GatewayError(f"UDP port {dest_port} is out of range", "use a port between 1 and 65535")
        self.dest = (_ipv4(dest_host, "destination"), dest_port)
        self.multicast = ipaddress.IPv4Address(self.dest[0]).is_multicast
        self._stall_ns = max(0, int(stall_timeout * 1e9))
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._setup(source, ttl, loopback, iface, sndbuf)
        except BaseException:
            self._sock.close()
            raise
        self._fd = self._sock.fileno()
        self._mmsg = ffi.gc(lib.xgw_mmsg_new(MAX_BURST), lib.xgw_mmsg_free)
        self._info = ffi.new("struct xgw_tx_info *")
        self._packets = self._bytes = self._errors = self._refused = self._short = 0
        self.last_error = ""

    def _setup(self, source: str | None, ttl: int, loopback: bool, iface: str | None, sndbuf: int) -> None:
        s = self._sock
        self.sndbuf = _raise_buffer(s, "snd", sndbuf)
        if source:
            try:
                s.bind((source, 0))
            except OSError as e:
                raise GatewayError(f"cannot use source address {source}: {e.strerror}",
                                   "use an address from `ip -4 -br addr`, or source=None") from None
        if self.multicast:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(loopback))
            if iface or source:
                ifindex = _ifindex(iface) if iface else 0
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                             _mreqn("0.0.0.0", source or "0.0.0.0", ifindex))
        try:
            s.connect(self.dest)
        except OSError as e:
            raise GatewayError(
                f"no route to {self.dest[0]}:{self.dest[1]}: {e.strerror}",
                "check `ip route get " + self.dest[0] + "`; for multicast pass iface= or source=",
            ) from None

    def fileno(self) -> int:
        return self._sock.fileno()

    def send_batch(self, batch: Batch) -> int:
        """Send payloads in order; returns how many from the front were consumed (retry the rest).

        Consumed means sent, or dropped for a permanent error (e.g. EMSGSIZE above 65507 bytes),
        which is counted in ``stats()["errors"]``.
        """
        if self._fd < 0:
            raise GatewayError("the socket sender is closed", "open a new SocketSender")
        n = batch.count
        if n == 0:
            return 0
        buf, offs, lens = batch.arrays()
        info = self._info
        done = lib.xgw_sendmmsg(self._fd, self._mmsg, ffi.from_buffer("uint8_t[]", buf),
                                ffi.from_buffer("int64_t[]", offs), ffi.from_buffer("uint32_t[]", lens),
                                n, self._stall_ns, info)
        self._packets += info.sent
        self._bytes += info.bytes
        self._errors += info.errors
        self._refused += info.refused
        if info.errors or info.refused or done < n:
            self.last_error = os.strerror(info.last_errno) if info.last_errno else ""
        if done < n:
            self._short += 1
        return done

    def stats(self) -> dict[str, int]:
        """packets/bytes sent, ``errors`` (datagrams dropped), ``refused`` (ICMP errors seen), ``short`` sends."""
        return {
            "packets": self._packets,
            "bytes": self._bytes,
            "errors": self._errors,
            "refused": self._refused,
            "short": self._short,
        }

    def close(self) -> None:
        if self._fd >= 0:
            self._fd = -1
            self._sock.close()

    def __enter__(self) -> SocketSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
