"""AF_XDP transport, send side: UDP payloads framed in C straight into UMEM TX frames.

The Ethernet/IP/UDP header is built once per destination (a template: our MAC and address from the
interface, the next hop's MAC from the kernel's neighbour table) and ``xdpgw/_native/frames.c`` copies it in
front of every payload, patching lengths, the IPv4 id and both checksums, for a whole burst per call.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import socket
import struct
import time
from dataclasses import dataclass

import numpy as np
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from xdpgw.batch import Batch
from xdpgw.errors import GatewayError
from xdpgw.kernel.features import require_root
from xdpgw.transport.xdp.xsk_errors import xsk_open_error

XDP_USE_NEED_WAKEUP = 1 << 3
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
#: Neighbour states with a usable link-layer address (NUD_REACHABLE|STALE|DELAY|PROBE|NOARP|PERMANENT).
_NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80
_IFF_NOARP, _IFF_LOOPBACK = 0x80, 0x8
DISCARD_PORT = 9  # where the resolution probe goes (RFC 863 discard): never the feed port


def _ffi():
    from xdpgw._native._xsk import ffi, lib

    return ffi, lib


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach one destination from one interface: what goes into the frame header."""

    iface: str
    ifindex: int
    mtu: int
    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    next_hop: str


def multicast_mac(ip: str) -> str | None:
    """The Ethernet group address of an IPv4/IPv6 multicast address (None for unicast)."""
    addr = ipaddress.ip_address(ip)
    if not addr.is_multicast:
        return None
    raw = addr.packed
    if addr.version == 4:
        return "01:00:5e:" + ":".join(f"{b:02x}" for b in (raw[1] & 0x7F, raw[2], raw[3]))
    return "33:33:" + ":".join(f"{b:02x}" for b in raw[-4:])


def header_template(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, src_port: int, dst_port: int,
                    ttl: int = 64) -> bytes:
    """Ethernet + IPv4 (DF, no options) or IPv6 + UDP header; lengths, id and checksums left 0."""
    src, dst = ipaddress.ip_address(src_ip), ipaddress.ip_address(dst_ip)
    if src.version != dst.version:
        raise GatewayError(f"source {src_ip} and destination {dst_ip} are different IP versions",
                           "give a source address of the destination's family")
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    udp = struct.pack(">HHHH", src_port, dst_port, 0, 0)
    if dst.version == 4:
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, ttl, socket.IPPROTO_UDP, 0, src.packed, dst.packed)
        return eth + struct.pack(">H", ETH_P_IP) + ip + udp
    ip6 = struct.pack(">IHBB16s16s", 6 << 28, 0, socket.IPPROTO_UDP, ttl, src.packed, dst.packed)
    return eth + struct.pack(">H", ETH_P_IPV6) + ip6 + udp


def _neighbour_mac(ipr: IPRoute, ifindex: int, ip: str) -> str | None:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for n in ipr.get_neighbours(family=family, ifindex=ifindex):
        if n.get_attr("NDA_DST") == ip and n["state"] & _NUD_VALID and n.get_attr("NDA_LLADDR"):
            return n.get_attr("NDA_LLADDR")
    return None


def _probe(iface: str, ip: str) -> None:
    """Make the kernel resolve ``ip``: one empty UDP datagram to its discard port through ``iface``."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        with contextlib.suppress(OSError):  # without CAP_NET_RAW the route decides (same interface here)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        with contextlib.suppress(OSError):  # e.g. EHOSTUNREACH after a failed resolution: keep polling
            s.sendto(b"", (ip, DISCARD_PORT))


def resolve_route(iface: str, dest_ip: str, src_ip: str | None = None, timeout: float = 1.0,
                  dst_mac: str | None = None) -> Route:
    """Source MAC/IP of ``iface`` and the MAC of the next hop towards ``dest_ip`` (resolving it if needed).

    A given ``dst_mac`` is used as is (no neighbour lookup).
    """
    try:
        dest_ip = str(ipaddress.ip_address(dest_ip))
    except ValueError:
        try:
            dest_ip = socket.gethostbyname(dest_ip)
        except OSError:
            raise GatewayError(f"cannot resolve destination {dest_ip!r}", "give an IPv4 or IPv6 address") from None
    family = socket.AF_INET6 if ":" in dest_ip else socket.AF_INET
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=iface)
        if not found:
            raise GatewayError(f"interface {iface!r} not found", "pick one from `ip -br link` (in this namespace)")
        idx = found[0]
        link = ipr.link("get", index=idx)[0]
        src_mac, mtu = link.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00", link.get_attr("IFLA_MTU") or 1500
        try:
            r = ipr.route("get", dst=dest_ip, oif=idx)[0]
        except NetlinkError as e:
            raise GatewayError(f"no route to {dest_ip} via {iface} ({os.strerror(e.code)})",
                               f"check `ip route get {dest_ip} oif {iface}`; add an address/route on {iface}") from None
        next_hop = r.get_attr("RTA_GATEWAY") or dest_ip
        src_ip = src_ip or r.get_attr("RTA_PREFSRC")
        if not src_ip:
            addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=family, index=idx)]
            if not addrs:
                raise GatewayError(f"{iface} has no {'IPv6' if family == socket.AF_INET6 else 'IPv4'} address",
                                   f"add one (`ip addr add ADDR/PREFIX dev {iface}`) or pass src_ip=")
            src_ip = addrs[0]
        dst_mac = dst_mac or multicast_mac(dest_ip)
        if dst_mac is None and link["flags"] & (_IFF_NOARP | _IFF_LOOPBACK):
            dst_mac = "00:00:00:00:00:00"
        if dst_mac is None:
            dst_mac = _neighbour_mac(ipr, idx, next_hop)
            deadline = time.monotonic() + timeout
            while dst_mac is None and time.monotonic() < deadline:
                _probe(iface, next_hop)
                time.sleep(0.01)
                dst_mac = _neighbour_mac(ipr, idx, next_hop)
        if dst_mac is None:
            raise GatewayError(
                f"the MAC address of next hop {next_hop} on {iface} is unknown (no ARP/ND answer in {timeout:g}s)",
                f"check that {next_hop} is up (`ping -I {iface} {next_hop}`), or pass the MAC (--dest-mac)",
            )
    return Route(iface, idx, int(mtu), src_mac, dst_mac, str(src_ip), dest_ip, next_hop)


def _tx_hdr(tmpl: bytes, max_payload: int, ip_id: int = 0):
    ffi, _ = _ffi()
    hdr = ffi.new("struct xgw_tx_hdr *")
    ffi.memmove(hdr.tmpl, tmpl, len(tmpl))
    hdr.hlen, hdr.l3off, hdr.ipv6 = len(tmpl), 14, int(tmpl[12:14] == b"\x86\xdd")
    hdr.max_payload, hdr.ip_id = max_payload, ip_id
    return hdr


def build_frames(template: bytes, batch: Batch, max_payload: int = 1472, ip_id: int = 0) -> Batch:
    """Whole frames (template + payload, lengths and checksums set) for every payload, as the sender makes them.

    Sans-IO (tests, pcap tools). A payload over ``max_payload`` gets a zero-length frame.
    """
    ffi, lib = _ffi()
    n = batch.count
    slot = len(template) + max(max_payload, 0)
    out = np.zeros(n * slot, np.uint8)
    offs, lens = np.zeros(n, np.int64), np.zeros(n, np.uint32)
    src, src_offs, src_lens = batch.arrays()
    lib.xgw_frames_build(_tx_hdr(template, max_payload, ip_id), ffi.from_buffer("uint8_t[]", src),
                         ffi.from_buffer("int64_t[]", src_offs), ffi.from_buffer("uint32_t[]", src_lens), n,
                         ffi.from_buffer("uint8_t[]", out), slot, ffi.from_buffer("int64_t[]", offs),
                         ffi.from_buffer("uint32_t[]", lens))
    return Batch(out, offs, lens, np.zeros(n, np.uint64), n)


class XdpSender:
    """Send `Batch`es of UDP payloads to ``dest_ip:dest_port`` through an AF_XDP TX ring on ``iface``.

    ``dst_mac`` skips the neighbour lookup (e.g. a peer that answers no ARP). ``send_batch`` returns once
    the kernel has taken every frame, or after ``stall_timeout`` s without progress (then short).
    Payloads larger than the MTU allows are consumed but not sent (``stats()["oversize"]``).
    """

    transport = "xdp"

    def __init__(self, iface: str, dest_ip: str, dest_port: int, src_port: int = 40000, queue: int = 0, *,
                 src_ip: str | None = None, dst_mac: str | None = None, frames: int = 2048,
                 frame_size: int = 2048, tx_size: int = 2048, zerocopy: bool | None = None,
                 stall_timeout: float = 1.0, resolve_timeout: float = 1.0, ttl: int = 64) -> None:
        require_root("AF_XDP (CAP_NET_ADMIN, CAP_NET_RAW)")
        for name, port in (("destination", dest_port), ("source", src_port)):
            if not 1 <= port <= 65535:
                raise GatewayError(f"{name} UDP port {port} is out of range", "use a port between 1 and 65535")
        self._xsk = None
        self.queue = int(queue)
        self.route = resolve_route(iface, dest_ip, src_ip, resolve_timeout, dst_mac=dst_mac)
        r = self.route
        self.dest = (r.dst_ip, dest_port)
        tmpl = header_template(r.src_mac, r.dst_mac, r.src_ip, r.dst_ip, src_port, dest_port, ttl)
        ffi, _ = _ffi()
        self.max_payload = min(r.mtu - (40 if ":" in r.dst_ip else 20) - 8, frame_size - len(tmpl))
        self._hdr = _tx_hdr(tmpl, self.max_payload, int.from_bytes(os.urandom(2), "little"))
        self._res = ffi.new("struct xgw_tx_result *")
        self._stall_ns = max(0, int(stall_timeout * 1e9))
        self._open(frames, frame_size, tx_size, zerocopy)
        self._packets = self._bytes = self._oversize = self._dropped = self._kicks = self._stalls = 0
        self.last_error = ""

    def _open(self, frames: int, frame_size: int, tx_size: int, zerocopy: bool | None) -> None:
        ffi, lib = _ffi()
        tx_frames = 1 << math.ceil(math.log2(max(frames, 64)))
        flags = XDP_USE_NEED_WAKEUP | ({True: lib.XDP_ZEROCOPY, False: lib.XDP_COPY}.get(zerocopy, 0))
        cfg = ffi.new("struct xgw_xsk_config *", {
            # The UMEM's fill ring takes the other half; no RX ring is bound.
            "nframes": 2 * tx_frames, "tx_frames": tx_frames, "frame_size": frame_size,
            "rx_size": 0, "tx_size": 1 << math.ceil(math.log2(max(tx_size, 64))), "bind_flags": flags,
            "hugepages": 0,
        })
        err = ffi.new("char[]", 256)
        xsk = lib.xgw_xsk_open(self.route.iface.encode(), self.queue, cfg, err, 256)
        if xsk == ffi.NULL:
            raise xsk_open_error(ffi.string(err).decode(), self.route.iface, self.queue)
        self._xsk = xsk
        self.zerocopy = bool(lib.xgw_xsk_zerocopy(xsk))
        self.frames = tx_frames

    def send_batch(self, batch: Batch) -> int:
        """Frame and send payloads in order; returns how many from the front were consumed (retry the rest)."""
        if self._xsk is None:
            raise GatewayError("the AF_XDP sender is closed", "open a new XdpSender")
        n = batch.count
        if n == 0:
            return 0
        ffi, lib = _ffi()
        buf, offs, lens = batch.arrays()
        res = self._res
        done = lib.xgw_tx_frames(self._xsk, self._hdr, ffi.from_buffer("uint8_t[]", buf),
                                 ffi.from_buffer("int64_t[]", offs), ffi.from_buffer("uint32_t[]", lens), n,
                                 self._stall_ns, res)
        if done < 0:
            raise GatewayError(f"AF_XDP transmit on {self.route.iface} failed: {os.strerror(-done)}",
                               f"check that {self.route.iface} is up (`ip link show {self.route.iface}`), "
                               "then open a new sender")
        self._packets += res.sent
        self._bytes += res.bytes
        self._oversize += res.oversize
        self._dropped += res.dropped
        self._kicks += res.kicks
        self._stalls += res.stalled
        if res.last_errno:
            self.last_error = os.strerror(res.last_errno)
        return done

    def stats(self) -> dict[str, int]:
        """packets/bytes handed to the kernel, ``errors`` = ``oversize`` (not sent) + ``dropped`` (by the device)."""
        out = {
            "packets": self._packets, "bytes": self._bytes, "errors": self._oversize + self._dropped,
            "oversize": self._oversize, "dropped": self._dropped, "kicks": self._kicks, "stalls": self._stalls,
        }
        if self._xsk is not None:
            ffi, lib = _ffi()
            st = ffi.new("struct xgw_xsk_stats *")
            lib.xgw_xsk_stats(self._xsk, st)
            out.update(tx_ring_full=st.tx_ring_full, xdp_tx_invalid_descs=st.tx_invalid_descs,
                       xdp_tx_ring_empty_descs=st.tx_ring_empty_descs)
        return out

    def describe(self) -> dict[str, object]:
        r = self.route
        return {"transport": "xdp", "iface": r.iface, "queue": self.queue, "dest": f"{r.dst_ip}:{self.dest[1]}",
                "src_ip": r.src_ip, "src_mac": r.src_mac, "dst_mac": r.dst_mac, "next_hop": r.next_hop,
                "zerocopy": getattr(self, "zerocopy", False), "frames": getattr(self, "frames", 0),
                "max_payload": self.max_payload}

    def close(self) -> None:
        if self._xsk is not None:
            _, lib = _ffi()
            xsk, self._xsk = self._xsk, None
            lib.xgw_xsk_close(xsk)

    def __enter__(self) -> XdpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

