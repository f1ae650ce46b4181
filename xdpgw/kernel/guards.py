"""Guards the XDP program applies before redirecting: source allowlist, per-source rate cap, watchdog limit.

Each writes the program's ``config`` map (flags and limits) and its own map; they take effect for the
next packet, while the program runs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

from xdpgw.kernel.maps import (
    CFG_FLAGS,
    CFG_RATE_BURST_NS,
    CFG_RATE_INTERVAL_NS,
    CFG_WATCHDOG_NS,
    FLAG_ALLOWLIST,
    FLAG_DENY_DROP,
    FLAG_RATE_CAP,
    FLAG_WATCHDOG,
    ProgramMaps,
)


class Guards(ProgramMaps):
    """The guard settings of `XdpProgram`."""

    def set_allowlist(self, sources: Iterable[str] | None, deny: str = "pass") -> None:
        """Redirect only packets from ``sources`` (IPv4/IPv6); others are passed or dropped (``deny``)."""
        import ipaddress

        t = self.table("allowed_src")
        t.clear()
        flags = self._flags() & ~(FLAG_ALLOWLIST | FLAG_DENY_DROP)
        if sources:
            for s in sources:
                addr = ipaddress.ip_address(s)
                raw = (addr.ipv4_mapped or addr).packed if addr.version == 6 else addr.packed
                key = (b"\0" * 10 + b"\xff\xff" + raw) if len(raw) == 4 else raw
                t[t.Key.from_buffer_copy(key)] = ctypes.c_uint8(1)
            flags |= FLAG_ALLOWLIST | (FLAG_DENY_DROP if deny == "drop" else 0)
        self._set_config(CFG_FLAGS, flags)

    def set_rate_cap(self, pps: float | None, burst: int = 64) -> None:
        """Cap each source at ``pps`` packets/s with a burst tolerance of ``burst`` packets (None: off).

        Every call starts all sources afresh: their GCRA state, earned under the old cap, is cleared."""
        flags = self._flags() & ~FLAG_RATE_CAP
        self._set_config(CFG_FLAGS, flags)  # off while the state is cleared
        self.table("src_tat").clear()
        if pps:
            interval = max(1, int(1e9 / pps))
            self._set_config(CFG_RATE_INTERVAL_NS, interval)
            self._set_config(CFG_RATE_BURST_NS, interval * max(0, burst - 1))
            flags |= FLAG_RATE_CAP
        self._set_config(CFG_FLAGS, flags)

    def set_watchdog(self, limit_us: float | None) -> None:
        """Pass the feed to the kernel when a queue's consumer has not polled for ``limit_us`` (None: off).

        For a consumer that hangs while alive (a dying one is covered by the death notice, on by default):
        its black hole lasts at most ``limit_us``. A consumer pause longer than that (descheduled, a long
        handler) also diverts the feed, so it is opt-in. The consumer's heartbeat: `Liveness.heartbeat_slot`.
        """
        flags = self._flags() & ~FLAG_WATCHDOG
        if limit_us:
            self._set_config(CFG_WATCHDOG_NS, int(limit_us * 1000))
            flags |= FLAG_WATCHDOG
        self._set_config(CFG_FLAGS, flags)

    def watchdog_ns(self) -> int:
        """The watchdog's limit in ns as the program has it now (0: off); right in forked workers too."""
        if self._bpf is None or not self._flags() & FLAG_WATCHDOG:  # closed (detached): no watchdog
            return 0
        return int(self.table("config")[ctypes.c_int(CFG_WATCHDOG_NS)].value)
