"""Interface facts from netlink (pyroute2): index, MAC, RX queues, MTU, state, and the XDP program attached."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute

from xdpgw.errors import GatewayError

XDP_MODES = {1: "drv", 2: "skb", 3: "hw", 4: "multi"}
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class XdpAttachment:
    prog_id: int
    mode: str  # drv | skb | hw | multi
    name: str  # BPF program name ("" if it could not be read)


@dataclass(frozen=True)
class Interface:
    name: str
    index: int
    mac: str
    rx_queues: int
    xdp: XdpAttachment | None
    mtu: int = 0
    state: str = ""  # operstate: UP, DOWN, UNKNOWN, ...


def prog_name(prog_id: int) -> str:
    """The name of a loaded BPF program ("" if it is gone or unreadable)."""
    from xdpgw._native._bpfobj import ffi, lib

    buf = ffi.new("char[]", 64)
    return ffi.string(buf).decode() if lib.xgw_prog_name_by_id(prog_id, buf, 64) == 0 else ""


def interface(name: str) -> Interface:
    """Look ``name`` up in the current network namespace; GatewayError if it is not there."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            names = sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
            raise GatewayError(
                f"interface {name!r} not found",
                f"pick one of {', '.join(names)} (see `ip -br link`), or create it",
            )
        link = ipr.link("get", index=idx[0])[0]
    xdp = None
    nest = link.get_attr("IFLA_XDP")
    if nest is not None:
        mode = nest.get_attr("IFLA_XDP_ATTACHED")
        prog_id = nest.get_attr("IFLA_XDP_PROG_ID") or 0
        if mode and prog_id:
            mode_code = {"xdp": 1, "xdpgeneric": 2, "xdpoffload": 3, "xdpmulti": 4}.get(mode, mode)
            xdp = XdpAttachment(prog_id, XDP_MODES.get(mode_code, str(mode)), prog_name(prog_id))
    return Interface(
        name=name,
        index=idx[0],
        mac=link.get_attr("IFLA_ADDRESS") or "",
        rx_queues=link.get_attr("IFLA_NUM_RX_QUEUES") or 1,
        xdp=xdp,
        mtu=link.get_attr("IFLA_MTU") or 0,
        state=link.get_attr("IFLA_OPERSTATE") or "",
    )


def netns_tag() -> str:
    """"" in the initial network namespace, else "@ns<inode>" (keeps pin paths of namespaces apart)."""
    try:
        own = os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return ""
    for ref in ("/proc/2/ns/net", "/proc/1/ns/net"):  # kthreadd lives in the initial namespace; init may
        try:                                           # be unreadable (a sandbox's own pid 1)
            init = os.stat(ref).st_ino
            break
        except OSError:
            continue
    else:
        return ""
    return "" if own == init else f"@ns{own}"


class NetnsRef:
    """A handle on the network namespace current at creation, to come back to it later (e.g. detach)."""

    def __init__(self) -> None:
        self.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block inside this namespace (this thread only), then return to where we were."""
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self.fd)
            try:
                yield
            finally:
                _setns(here)
        finally:
            os.close(here)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")
