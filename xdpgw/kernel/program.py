"""Our XDP program: compiled with BCC, loaded, attached to one interface, closed.

`XdpProgram` is the one object callers hold. It is put together from the kernel modules beside it:
its maps (`maps.ProgramMaps`: feed ports, counters, XSKMAP), guards (`guards.Guards`: allowlist, rate
cap, watchdog), liveness (`liveness.Liveness`: death notice, consumers, heartbeats), attaching and
detaching (`attach`), pins (`pins`) and the state file (`state`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from xdpgw.errors import GatewayError
from xdpgw.kernel.attach import MODES, attach_xdp, detach_iface, replace_existing
from xdpgw.kernel.features import require_root
from xdpgw.kernel.guards import Guards
from xdpgw.kernel.liveness import Liveness
from xdpgw.kernel.maps import PROG_NAME
from xdpgw.kernel.netdev import Interface, NetnsRef, interface
from xdpgw.kernel.pins import pin_maps
from xdpgw.kernel.programs import compile_xdp


def _compile():
    """Compile the XDP program (xdpgw/kernel/programs/xdpgw_rx.c) with BCC; a clear error when it cannot."""
    return compile_xdp("xdpgw_rx.c", PROG_NAME, "the XDP program")


@dataclass
class XdpProgram(Guards, Liveness):
    """Our XDP program attached to one interface. Use as a context manager; ``close()`` detaches."""

    iface: str
    ports: Iterable[int]
    mode: str = "auto"  # auto | drv | skb
    force: bool = False
    # Death notice (see liveness.DEATH_HOOKS); XDPGW_DEATH_NOTICE=0 turns it off (e.g. to measure without it).
    notify_death: bool = field(default_factory=lambda: os.environ.get("XDPGW_DEATH_NOTICE", "1") != "0")
    info: Interface | None = field(default=None, init=False)
    attached_mode: str = field(default="", init=False)
    notes: list[str] = field(default_factory=list, init=False)
    _bpf: object = field(default=None, init=False, repr=False)
    _fn: object = field(default=None, init=False, repr=False)
    _netns: NetnsRef | None = field(default=None, init=False, repr=False)
    _heartbeat: object = field(default=None, init=False, repr=False)
    death_notice: tuple[str, ...] = field(default=(), init=False)  # attached death-notice hooks

    def attach(self) -> XdpProgram:
        require_root()
        if self.mode not in MODES:
            raise GatewayError(f"unknown XDP mode {self.mode!r}", "use --mode auto, drv or skb")
        self.ports = sorted({int(p) for p in self.ports})
        if not self.ports or not all(0 < p < 65536 for p in self.ports):
            raise GatewayError(f"bad feed port(s) {self.ports}", "give UDP ports between 1 and 65535")
        self.info = info = interface(self.iface)
        self._netns = NetnsRef()  # detach must happen in this namespace, wherever close() runs
        self.notes += replace_existing(info, self.force)
        self._bpf, self._fn = _compile()
        self.set_ports(self.ports)
        self.attached_mode, notes = attach_xdp(self.iface, self._fn, self.mode)
        self.notes += notes
        self._attach_death_notice()
        self.notes += pin_maps(self._bpf, self.iface)
        self.info = interface(self.iface)
        return self

    def detach(self) -> None:
        """Remove our program (only if it is still ours) and our pins. Safe to call twice."""
        self._detach_death_notice()
        if not self.attached_mode:
            return
        with self._netns.entered(), contextlib.suppress(GatewayError):
            detach_iface(self.iface, only_ours=True)
        self.attached_mode = ""

    def close(self) -> None:
        self.detach()
        self._close_heartbeat()
        if self._bpf is not None:
            with contextlib.suppress(Exception):
                self._bpf.cleanup()
            self._bpf = None
        if self._netns is not None:
            self._netns.close()
            self._netns = None

    def __enter__(self) -> XdpProgram:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.close()
