"""Is the consumer still there? Death notice hooks, the consumer registry, the watchdog heartbeat.

Death notice: tracing hooks attached with the program (DEATH_HOOKS) watch the registered consumer
processes (`Liveness.register_consumer`); one that starts dying gets its queues marked dead, and their
feed goes to the kernel within microseconds instead of after the kernel has torn down its address space.
A consumer that hangs while alive is caught by the watchdog (`guards.Guards.set_watchdog`) through the
heartbeat its burst loop stamps (`Liveness.heartbeat_slot`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time

from xdpgw.errors import GatewayError
from xdpgw.kernel.features import kprobes_available
from xdpgw.kernel.maps import CFG_PIDNS_DEV, CFG_PIDNS_INO, CFG_TASK_TGID_OFF, MAX_QUEUES, ProgramMaps

PROC_PID_INIT_INO = 0xEFFFFFFC  # inode of the root pid namespace
# Death notice hooks (xdpgw/kernel/programs/xdpgw_rx.c): every one the kernel offers is attached; any one of them is enough
# for kill -9 (kprobes may be compiled out: then the raw tracepoints carry it). signal_generate runs in the
# killer (needs the kernel's BTF), the others in the dying process.
DEATH_HOOKS = (("raw_tracepoint", "signal_generate", "xgw_death_kill"),
               ("kprobe", "do_group_exit", "xgw_death_kprobe"),
               ("raw_tracepoint", "signal_deliver", "xgw_death_signal"),
               ("raw_tracepoint", "sched_process_exit", "xgw_death_exit"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Liveness(ProgramMaps):
    """The liveness side of `XdpProgram`: death notice hooks, consumers, heartbeats.

    Uses ``_bpf``, ``notify_death``, ``death_notice``, ``notes`` and ``_heartbeat`` of `XdpProgram`.
    """

    def _attach_death_notice(self) -> None:
        """Attach the death-notice hooks (see DEATH_HOOKS); without any, a note says what that costs."""
        if not self.notify_death:
            self.notes.append("death notice off (XDPGW_DEATH_NOTICE=0): a killed consumer's feed goes back to the "
                              "kernel only when its socket closes; unset it to turn the notice back on")
            return
        hooks, errors = [], []
        for kind, target, fn in DEATH_HOOKS:
            try:
                if kind == "kprobe":
                    if not kprobes_available():
                        errors.append("kprobes: not in this kernel")
                        continue
                    self._bpf.attach_kprobe(event=target.encode(), fn_name=fn.encode())
                elif target == "signal_generate":
                    if not self._task_tgid_offset():
                        errors.append("signal_generate: no kernel BTF for task_struct.tgid")
                        continue
                    self._bpf.attach_raw_tracepoint(tp=target.encode(), fn_name=fn.encode())
                else:
                    self._bpf.attach_raw_tracepoint(tp=target.encode(), fn_name=fn.encode())
            except Exception as exc:  # BCC raises bare Exception
                errors.append(f"{kind} {target}: {exc}")
                continue
            hooks.append(f"{kind}:{target}")
        self.death_notice = tuple(hooks)
        if not hooks:
            self.notes.append(
                "no death notice (" + "; ".join(errors) + "): after kill -9 of a consumer its feed goes back to "
                "the kernel only when the dead socket closes (tens of ms); bound that with --watchdog-us")

    def _task_tgid_offset(self) -> bool:
        """Tell the program where task_struct.tgid is (from the kernel's BTF); False if unknown."""
        from xdpgw._native._bpfobj import lib

        off = lib.xgw_btf_member_offset(b"task_struct", b"tgid")
        self._set_config(CFG_TASK_TGID_OFF, off + 1 if off >= 0 else 0)
        return off >= 0

    def _detach_death_notice(self) -> None:
        for hook in self.death_notice:
            kind, target = hook.split(":", 1)
            with contextlib.suppress(Exception):
                if kind == "kprobe":
                    self._bpf.detach_kprobe(event=target.encode())
                else:
                    self._bpf.detach_raw_tracepoint(tp=target.encode())
        self.death_notice = ()

    def heartbeat_slot(self, queue: int):
        """A ``uint64_t *`` to ``queue``'s heartbeat in the mmapped map (stamped now), for the C burst loop."""
        import mmap

        from xdpgw._native._bpfobj import ffi

        if self._heartbeat is None:
            self._heartbeat = mmap.mmap(self.table("heartbeat").map_fd, 4096 * ((MAX_QUEUES * 8 + 4095) // 4096),
                                        mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        slot = ffi.cast("uint64_t *", ffi.from_buffer(self._heartbeat)) + queue
        slot[0] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        return slot

    def _close_heartbeat(self) -> None:
        if self._heartbeat is not None:
            with contextlib.suppress(BufferError):  # a receiver still holding a pointer: freed at exit
                self._heartbeat.close()
            self._heartbeat = None

    def register_consumer(self, queue: int, pid: int | None = None) -> None:
        """Process ``pid`` (as this process sees it; default: this process) consumes ``queue``.

        When that process starts dying (kill -9, a fatal signal, exit without close), the death notice
        marks the queue dead and the XDP program passes its feed to the kernel at once. Clears the queue's
        dead flag: call it once the queue's socket is in the XSKMAP. All consumers of one program must
        share one pid namespace (worker processes forked from one parent do).
        """
        if not 0 <= queue < MAX_QUEUES:
            raise GatewayError(f"queue {queue} out of range", f"use a queue below {MAX_QUEUES}")
        pid = os.getpid() if pid is None else int(pid)
        ns = os.stat("/proc/self/ns/pid")
        root = ns.st_ino == PROC_PID_INIT_INO  # else the probes translate pids into this namespace
        self._set_config(CFG_PIDNS_DEV, 0 if root else ns.st_dev)
        self._set_config(CFG_PIDNS_INO, 0 if root else ns.st_ino)
        t, bit = self.table("consumers"), 1 << queue
        for key, mask in list(t.items()):  # a queue has one consumer
            if key.value != pid and mask.value & bit:
                self._set_mask(t, key.value, mask.value & ~bit)
        mine = t.get(ctypes.c_uint32(pid))
        self._set_mask(t, pid, (mine.value if mine is not None else 0) | bit)
        self.table("dead")[ctypes.c_int(queue)] = ctypes.c_uint64(0)

    def unregister_consumer(self, queue: int, pid: int | None = None) -> None:
        """``pid`` (default: this process) no longer consumes ``queue`` (a normal close)."""
        pid = os.getpid() if pid is None else int(pid)
        t = self.table("consumers")
        mine = t.get(ctypes.c_uint32(pid))
        if mine is not None:
            self._set_mask(t, pid, mine.value & ~(1 << queue))

    @staticmethod
    def _set_mask(t, pid: int, mask: int) -> None:
        if mask:
            t[ctypes.c_uint32(pid)] = ctypes.c_uint64(mask)
        else:
            with contextlib.suppress(KeyError):
                del t[ctypes.c_uint32(pid)]

    def dead_queues(self) -> list[int]:
        """Queues whose consumer process has died since it registered (their feed goes to the kernel)."""
        return [k.value for k, v in self.table("dead").items() if v.value]
