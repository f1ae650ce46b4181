"""The XDP program's maps as user space sees them: its name, counter order, config slots, and access.

The layout is the program's ABI header ``xdpgw/kernel/programs/xdpgw_rx.h``, read through the cffi build
(``lib``), never mirrored here. `ProgramMaps` is the map access the other
kernel modules build on (`guards.Guards`, `liveness.Liveness`); `XdpProgram` combines them.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

from xdpgw._native._bpfobj import ffi, lib
from xdpgw.errors import GatewayError
from xdpgw.kernel.features import possible_cpus

PROG_NAME = "xdpgw_rx"  # the XDP function: an attached program of this name is ours
# Counter slots by enum order, named by their tails (C_SEEN -> "seen"); queues; config slots; guard flags.
_SLOTS = ffi.typeof("enum xgw_counter").elements
COUNTERS = tuple(_SLOTS[i].removeprefix("C_").lower() for i in range(lib.XGW_NCOUNTERS))
MAX_QUEUES = lib.XGW_MAX_QUEUES
FLAG_ALLOWLIST, FLAG_DENY_DROP, FLAG_RATE_CAP, FLAG_WATCHDOG = (
    lib.FLAG_ALLOWLIST, lib.FLAG_DENY_DROP, lib.FLAG_RATE_CAP, lib.FLAG_WATCHDOG)
(CFG_FLAGS, CFG_RATE_INTERVAL_NS, CFG_RATE_BURST_NS, CFG_WATCHDOG_NS, CFG_PIDNS_DEV, CFG_PIDNS_INO,
 CFG_TASK_TGID_OFF) = (lib.CFG_FLAGS, lib.CFG_RATE_INTERVAL_NS, lib.CFG_RATE_BURST_NS, lib.CFG_WATCHDOG_NS,
                       lib.CFG_PIDNS_DEV, lib.CFG_PIDNS_INO, lib.CFG_TASK_TGID_OFF)


def sum_counters(map_fd: int, queues: int) -> dict[int, dict[str, int]]:
    """Per-queue counters of the per-CPU ``counters`` map, summed over CPUs."""
    import numpy as np

    n = min(queues, MAX_QUEUES) * len(COUNTERS)
    scratch = np.zeros(possible_cpus(), dtype=np.uint64)
    out = np.zeros(n, dtype=np.uint64)
    err = lib.xgw_percpu_sum(
        map_fd, n, len(scratch), ffi.from_buffer("uint64_t[]", scratch), ffi.from_buffer("uint64_t[]", out)
    )
    if err:
        raise GatewayError(f"cannot read BPF counters: {os.strerror(-err)}", "is the program still attached?")
    rows = out.reshape(-1, len(COUNTERS))
    return {q: dict(zip(COUNTERS, map(int, rows[q]), strict=True)) for q in range(len(rows))}


def total_counters(per_queue: dict[int, dict[str, int]]) -> dict[str, int]:
    return {name: sum(q[name] for q in per_queue.values()) for name in COUNTERS}


class ProgramMaps:
    """Access to the loaded program's maps (BCC tables): feed ports, config slots, counters, the XSKMAP.

    Needs ``_bpf`` (the BCC object), ``ports`` and ``info`` (the interface) from the class it is mixed into.
    """

    def table(self, name: str):
        return self._bpf[name.encode()]

    @property
    def xsks_map_fd(self) -> int:
        return self.table("xsks").map_fd

    def set_ports(self, ports: Iterable[int]) -> None:
        """Replace the set of feed ports (takes effect for the next packet)."""
        t = self.table("feed_ports")
        wanted = {int(p) for p in ports}
        for key in list(t.keys()):
            if key.value not in wanted:
                del t[key]
        for p in wanted:
            t[ctypes.c_uint16(p)] = ctypes.c_uint8(1)
        self.ports = sorted(wanted)

    def _set_config(self, slot: int, value: int) -> None:
        self.table("config")[ctypes.c_int(slot)] = ctypes.c_uint64(value)

    def _flags(self) -> int:
        return int(self.table("config")[ctypes.c_int(CFG_FLAGS)].value)

    def counters(self) -> dict[int, dict[str, int]]:
        queues = self.info.rx_queues if self.info else 1
        return sum_counters(self.table("counters").map_fd, queues)
