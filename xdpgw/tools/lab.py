"""A veth lab: two network namespaces joined by a multi-queue veth pair (pyroute2, no `ip` shelling).

    tx namespace "<name>-tx"  iface "<name>-t"  10.77.0.1/24  fd77::1/64
    rx namespace "<name>-rx"  iface "<name>-r"  10.77.0.2/24  fd77::2/64

Addresses exist only inside the namespaces. ``up()`` is idempotent and first removes leftovers of a
crashed run, but refuses a lab whose maker still runs (its pid is kept in /run/xdpgw/lab-<name>.pid);
``down()`` removes everything (deleting a namespace deletes its veth end). Programs that make a lab for
themselves (bench, demo) take a name of their own, ``Lab.unique(prefix)``, so two runs never meet.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute, NetNS, netns

from xdpgw.errors import GatewayError
from xdpgw.kernel.features import require_root

IFA_F_NODAD = 0x02


@dataclass(frozen=True)
class Lab:
    name: str = "xgw"
    queues: int = 2
    tx_ip: str = "10.77.0.1"
    rx_ip: str = "10.77.0.2"
    tx_ip6: str = "fd77::1"
    rx_ip6: str = "fd77::2"
    prefix: int = 24

    @property
    def tx_ns(self) -> str:
        return f"{self.name}-tx"

    @property
    def rx_ns(self) -> str:
        return f"{self.name}-rx"

    @property
    def tx_if(self) -> str:
        return f"{self.name}-t"

    @property
    def rx_if(self) -> str:
        return f"{self.name}-r"

    def macs(self) -> tuple[str, str]:
        """(tx MAC, rx MAC) of the veth ends, each read in its own namespace."""
        from xdpgw.kernel.netdev import interface

        with in_netns(self.tx_ns):
            tx = interface(self.tx_if).mac
        with in_netns(self.rx_ns):
            return tx, interface(self.rx_if).mac

    @classmethod
    def unique(cls, prefix: str, queues: int = 2) -> Lab:
        """A lab named ``prefix`` + 6 random hex digits (``prefix`` at most 7 characters)."""
        return cls(prefix + secrets.token_hex(3), queues=queues)

    def exists(self) -> bool:
        return self.tx_ns in netns.listnetns() and self.rx_ns in netns.listnetns()

    @property
    def owner_path(self):
        from xdpgw.kernel.state import STATE_ROOT

        return STATE_ROOT / f"lab-{self.name}.pid"

    def owner(self) -> int | None:
        """The pid of the process that made this lab and still runs (None: nobody, or it is gone)."""
        from xdpgw.kernel.liveness import pid_alive

        try:
            pid = int(self.owner_path.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid != os.getpid() and pid_alive(pid) else None

    def up(self) -> Lab:
        require_root("the lab (network namespaces)")
        if len(self.tx_if) > 15:
            raise GatewayError(f"lab name {self.name!r} too long", "use at most 13 characters")
        if (pid := self.owner()) is not None and (self.tx_ns in netns.listnetns() or self.rx_ns in netns.listnetns()):
            raise GatewayError(f"lab {self.name!r} is in use by pid {pid}",
                               f"use another lab name, or stop pid {pid} first (xdpgw lab down --name {self.name})")
        self.down()
        self.owner_path.parent.mkdir(parents=True, exist_ok=True)
        self.owner_path.write_text(str(os.getpid()))
        for ns in (self.tx_ns, self.rx_ns):
            netns.create(ns)
        try:
            with IPRoute() as ipr:
                ipr.link(
                    "add",
                    ifname=self.tx_if,
                    kind="veth",
                    num_tx_queues=self.queues,
                    num_rx_queues=self.queues,
                    peer={
                        "ifname": self.rx_if,
                        "net_ns_fd": self.rx_ns,
                        "num_tx_queues": self.queues,
                        "num_rx_queues": self.queues,
                    },
                )
                idx = ipr.link_lookup(ifname=self.tx_if)[0]
                ipr.link("set", index=idx, net_ns_fd=self.tx_ns)
            self._configure(self.tx_ns, self.tx_if, self.tx_ip, self.tx_ip6)
            self._configure(self.rx_ns, self.rx_if, self.rx_ip, self.rx_ip6)
            self._wait_up(self.tx_ns, self.tx_if)  # a veth end has carrier only once both are up
            self._wait_up(self.rx_ns, self.rx_if)
        except Exception:
            self.down()
            raise
        return self

    def _configure(self, ns: str, ifname: str, ip4: str, ip6: str) -> None:
        with NetNS(ns) as n:
            lo = n.link_lookup(ifname="lo")[0]
            n.link("set", index=lo, state="up")
            idx = n.link_lookup(ifname=ifname)[0]
            n.addr("add", index=idx, address=ip4, prefixlen=self.prefix)
            n.addr("add", index=idx, address=ip6, prefixlen=64, flags=IFA_F_NODAD)
            n.link("set", index=idx, state="up")

    @staticmethod
    def _wait_up(ns: str, ifname: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with NetNS(ns) as n:
            while time.monotonic() < deadline:
                link = n.get_links(n.link_lookup(ifname=ifname)[0])[0]
                if link.get_attr("IFLA_OPERSTATE") == "UP":
                    return
                time.sleep(0.02)

    def down(self) -> None:
        """Remove the namespaces (and with them the veth and any XDP program on it); also a veth stranded
        in this namespace, and what a killed gateway leaves outside them (pinned maps, state files)."""
        from xdpgw.kernel.pins import unpin
        from xdpgw.kernel.state import remove_state

        for ns in (self.tx_ns, self.rx_ns):
            if ns in netns.listnetns():
                with contextlib.suppress(Exception), in_netns(ns):
                    for ifname in (self.tx_if, self.rx_if):
                        unpin(ifname)
                        remove_state(ifname)
                with contextlib.suppress(Exception):
                    netns.remove(ns)
        with IPRoute() as ipr:
            for ifname in (self.tx_if, self.rx_if):
                for idx in ipr.link_lookup(ifname=ifname):
                    with contextlib.suppress(Exception):
                        ipr.link("del", index=idx)
        self.owner_path.unlink(missing_ok=True)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread inside namespace ``name`` (sockets made there stay there)."""
    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()
