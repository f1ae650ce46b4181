"""Per-process latency tuning for the consumer thread: CPU pinning, SCHED_FIFO, locked memory.

Each call acts on the calling process (pid 0) and returns a `Tuned` saying what it did. Failures
the gateway can run without (``lock_memory``) come back as ``ok=False`` plus a warning; failures the
user asked for explicitly (``pin_cpu``, ``set_fifo``) raise `GatewayError` with the command to fix them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import resource
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from xdpgw.errors import GatewayError

MCL_CURRENT = 1
MCL_FUTURE = 2


@dataclass(frozen=True, slots=True)
class Tuned:
    """The outcome of one tuning step: ``detail`` says what changed, ``fix`` what to run if it did not."""

    action: str
    ok: bool
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.action}: {self.detail}" + (f" (fix: {self.fix})" if self.fix else "")


def _cpu_fix(allowed: list[int]) -> str:
    return (f"pick one of the CPUs this process may use ({_cpulist(allowed)}); "
            f"list them: taskset -cp {os.getpid()}")


def pin_cpu(cpu: int) -> Tuned:
    """Pin the calling process to one CPU (``sched_setaffinity``)."""
    before = sorted(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, {cpu})
    except (OSError, ValueError, OverflowError) as e:
        raise GatewayError(f"cannot pin to CPU {cpu} ({e})", _cpu_fix(before)) from e
    return Tuned("pin_cpu", True, f"pinned to CPU {cpu} (was {_cpulist(before)})")


@contextlib.contextmanager
def on_cpu(cpu: int | None) -> Iterator[None]:
    """The block runs pinned to ``cpu`` (None: unchanged); the previous affinity comes back after it."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    pin_cpu(cpu)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def check_cpus(cpus: list[int]) -> None:
    """Raise now (before starting consumers that would pin to them) if this process may not use a CPU."""
    allowed = sorted(os.sched_getaffinity(0))
    bad = [c for c in cpus if c not in allowed]
    if bad:
        raise GatewayError(f"cannot pin to CPU {bad[0]} (not in this process's affinity)", _cpu_fix(allowed))


def set_fifo(priority: int = 10) -> Tuned:
    """Switch the calling process to ``SCHED_FIFO`` at ``priority`` (1..99)."""
    lo, hi = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
    if not lo <= priority <= hi:
        raise GatewayError(f"SCHED_FIFO priority {priority} is out of range", f"use a priority in {lo}..{hi}")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as e:
        rtprio = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
        raise GatewayError(
            f"not allowed to use SCHED_FIFO priority {priority} (RLIMIT_RTPRIO is {_limit(rtprio)}, "
            "no CAP_SYS_NICE)",
            f"run as root, or grant the capability: sudo setcap cap_sys_nice+ep $(readlink -f "
            f"$(which python3)), or raise the limit: ulimit -r {priority}",
        ) from e
    except OSError as e:
        raise GatewayError(f"cannot set SCHED_FIFO priority {priority} ({e})",
                           "run without --fifo, or check `chrt -p $$` works on this machine") from e
    return Tuned("set_fifo", True, f"SCHED_FIFO priority {priority}")


def lock_memory() -> Tuned:
    """``mlockall(MCL_CURRENT | MCL_FUTURE)``: no page faults on the hot path. Not fatal when refused.

    Without CAP_IPC_LOCK the locked total is capped by RLIMIT_MEMLOCK; a Python process usually
    exceeds a small limit, so the call fails with ENOMEM (or EPERM) and this returns ``ok=False`` with
    a warning. (BPF maps are charged to the memory cgroup since Linux 5.11, but AF_XDP UMEM still counts
    against RLIMIT_MEMLOCK for processes without CAP_IPC_LOCK.)
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
        return Tuned("lock_memory", True, "all current and future pages locked in RAM (mlockall)")
    err = ctypes.get_errno()
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    detail = (f"mlockall failed ({errno.errorcode.get(err, err)}: {os.strerror(err)}); "
              f"RLIMIT_MEMLOCK is {_limit(soft, unit=1024, suffix=' KiB')}; continuing with pageable memory")
    fix = "run as root, or raise the limit first: ulimit -l unlimited (systemd: LimitMEMLOCK=infinity)"
    warnings.warn(f"lock_memory: {detail}: {fix}", RuntimeWarning, stacklevel=2)
    return Tuned("lock_memory", False, detail, fix)


def _limit(value: int, unit: int = 1, suffix: str = "") -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else f"{value // unit}{suffix}"


def _cpulist(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the /proc ``*_list`` format)."""
    parts: list[str] = []
    for c in cpus:
        if parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) == c - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{c}"
        elif parts and "-" not in parts[-1] and int(parts[-1]) == c - 1:
            parts[-1] = f"{parts[-1]}-{c}"
        else:
            parts.append(str(c))
    return ",".join(parts)
