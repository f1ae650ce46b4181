"""Our XDP program: compile with BCC, attach, feed-port and guard maps, counters, pins, detach.

Pinned maps live under ``/sys/fs/bpf/xdpgw/<iface>/`` and a small state file under
``/run/xdpgw/<iface>.json`` (pid, ports, mode, live stats), so ``xdpgw status`` and ``xdpgw detach``
work from another process and after a crash.

Death notice: tracing hooks attached with the program (DEATH_HOOKS) watch the registered consumer
processes (`register_consumer`); one that starts dying gets its queues marked dead, and their feed goes
to the kernel within microseconds instead of after the kernel has torn down its address space.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from xdpgw.errors import GatewayError
from xdpgw.kernel.netdev import Interface, NetnsRef, interface, netns_tag
from xdpgw.kernel.programs import compile_xdp

PROG_NAME = "xdpgw_rx"
COUNTERS = ("seen", "redirected", "passed", "malformed", "no_socket", "denied", "rate_limited", "no_meta", "stale",
            "consumer_gone")
MAX_QUEUES = 64
PIN_ROOT = Path("/sys/fs/bpf/xdpgw")
STATE_ROOT = Path("/run/xdpgw")
PINNED_MAPS = ("counters", "feed_ports", "xsks", "config", "allowed_src")

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
MODE_FLAGS = {"skb": 1 << 1, "drv": 1 << 2}
FLAG_ALLOWLIST, FLAG_DENY_DROP, FLAG_RATE_CAP, FLAG_WATCHDOG = 1, 2, 4, 8
(CFG_FLAGS, CFG_RATE_INTERVAL_NS, CFG_RATE_BURST_NS, CFG_WATCHDOG_NS, CFG_PIDNS_DEV, CFG_PIDNS_INO,
 CFG_TASK_TGID_OFF) = range(7)
PROC_PID_INIT_INO = 0xEFFFFFFC  # inode of the root pid namespace
# Death notice hooks (xdpgw/kernel/programs/xdpgw_rx.c): every one the kernel offers is attached; any one of them is enough
# for kill -9 (kprobes may be compiled out: then the raw tracepoints carry it). signal_generate runs in the
# killer (needs the kernel's BTF), the others in the dying process.
DEATH_HOOKS = (("raw_tracepoint", "signal_generate", "xgw_death_kill"),
               ("kprobe", "do_group_exit", "xgw_death_kprobe"),
               ("raw_tracepoint", "signal_deliver", "xgw_death_signal"),
               ("raw_tracepoint", "sched_process_exit", "xgw_death_exit"))


def require_root() -> None:
    if os.geteuid() != 0:
        raise GatewayError("XDP and AF_XDP need root (CAP_NET_ADMIN, CAP_BPF)", "run it with sudo")


def possible_cpus() -> int:
    """Per-CPU maps hold one slot per *possible* CPU."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return max(int(part.split("-")[-1]) for part in text.split(",")) + 1


def pin_dir(iface: str) -> Path:
    return PIN_ROOT / f"{iface}{netns_tag()}"


def state_path(iface: str) -> Path:
    return STATE_ROOT / f"{iface}{netns_tag()}.json"


def read_state(iface: str) -> dict | None:
    try:
        return json.loads(state_path(iface).read_text())
    except (OSError, ValueError):
        return None


def write_state(iface: str, state: dict) -> None:
    """Atomically replace the state file (readers never see half a file)."""
    path = state_path(iface)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sum_counters(map_fd: int, queues: int) -> dict[int, dict[str, int]]:
    """Per-queue counters of the per-CPU ``counters`` map, summed over CPUs."""
    import numpy as np

    from xdpgw._xsk import ffi, lib

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


def kprobes_available() -> bool:
    """Can BCC attach a kprobe here (perf kprobe PMU or a tracefs kprobe_events file)?"""
    return any(Path(p).exists() for p in ("/sys/bus/event_source/devices/kprobe", "/sys/kernel/tracing/kprobe_events",
                                          "/sys/kernel/debug/tracing/kprobe_events"))


def _compile():
    """Compile the XDP program (xdpgw/kernel/programs/xdpgw_rx.c) with BCC; a clear error when it cannot."""
    return compile_xdp("xdpgw_rx.c", PROG_NAME, "the XDP program")


@dataclass
class XdpProgram:
    """Our XDP program attached to one interface. Use as a context manager; ``close()`` detaches."""

    iface: str
    ports: Iterable[int]
    mode: str = "auto"  # auto | drv | skb
    force: bool = False
    # Death notice (see DEATH_HOOKS); XDPGW_DEATH_NOTICE=0 turns it off (e.g. to measure without it).
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
        if self.mode not in ("auto", "drv", "skb"):
            raise GatewayError(f"unknown XDP mode {self.mode!r}", "use --mode auto, drv or skb")
        self.ports = sorted({int(p) for p in self.ports})
        if not self.ports or not all(0 < p < 65536 for p in self.ports):
            raise GatewayError(f"bad feed port(s) {self.ports}", "give UDP ports between 1 and 65535")
        self.info = info = interface(self.iface)
        self._netns = NetnsRef()  # detach must happen in this namespace, wherever close() runs
        self._check_existing(info)
        self._bpf, self._fn = _compile()
        self.set_ports(self.ports)
        self._attach_mode()
        self._attach_death_notice()
        self._pin()
        self.info = interface(self.iface)
        return self

    def _check_existing(self, info: Interface) -> None:
        if info.xdp is None:
            return
        if info.xdp.name != PROG_NAME:
            if not self.force:
                raise GatewayError(
                    f"{self.iface} already runs a foreign XDP program "
                    f"(id {info.xdp.prog_id}, name {info.xdp.name or '?'}, {info.xdp.mode} mode)",
                    "find its owner with `bpftool prog show id "
                    f"{info.xdp.prog_id}`; pass --force to replace it",
                )
            self.notes.append(f"replacing foreign XDP program id {info.xdp.prog_id} (--force)")
        else:
            state = read_state(self.iface) or {}
            pid = int(state.get("pid") or 0)
            if pid and pid != os.getpid() and pid_alive(pid) and not self.force:
                raise GatewayError(
                    f"xdpgw (pid {pid}) is already attached to {self.iface}",
                    f"stop it first (kill {pid}) or run `xdpgw detach {self.iface}`",
                )
            self.notes.append(f"replacing the xdpgw program left by an earlier run (id {info.xdp.prog_id})")
        _remove_xdp(self.iface, info.xdp.mode)

    def _attach_mode(self) -> None:
        from bcc import BPF

        modes = ["drv", "skb"] if self.mode == "auto" else [self.mode]
        errors = []
        for mode in modes:
            try:
                BPF.attach_xdp(self.iface.encode(), self._fn, XDP_FLAGS_UPDATE_IF_NOEXIST | MODE_FLAGS[mode])
            except Exception as exc:
                errors.append(f"{mode}: {exc}")
                continue
            self.attached_mode = mode
            if errors:
                self.notes.append(f"native (drv) XDP failed, using generic (skb) mode: {errors[0]}")
            return
        raise GatewayError(
            f"cannot attach XDP to {self.iface} ({'; '.join(errors)})",
            "try --mode skb, or check the driver with `xdpgw doctor " + self.iface + "`",
        )

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
        from xdpgw._xsk import lib

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

    def _pin(self) -> None:
        from xdpgw._xsk import lib

        d = pin_dir(self.iface)
        try:
            if not os.path.ismount("/sys/fs/bpf"):  # e.g. under `ip netns exec`, which remounts /sys
                subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True, capture_output=True)
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True, exist_ok=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            self.notes.append(f"maps not pinned ({exc}); `xdpgw status` reads them by program id instead")
            return
        for name in PINNED_MAPS:
            err = lib.xgw_obj_pin(self._bpf[name.encode()].map_fd, str(d / name).encode())
            if err:
                self.notes.append(f"could not pin {name} under {d}: {os.strerror(-err)}")

    # --- maps ---------------------------------------------------------------------------------
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

    def heartbeat_slot(self, queue: int):
        """A ``uint64_t *`` to ``queue``'s heartbeat in the mmapped map (stamped now), for the C burst loop."""
        import mmap

        from xdpgw._xsk import ffi

        if self._heartbeat is None:
            self._heartbeat = mmap.mmap(self.table("heartbeat").map_fd, 4096 * ((MAX_QUEUES * 8 + 4095) // 4096),
                                        mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        slot = ffi.cast("uint64_t *", ffi.from_buffer(self._heartbeat)) + queue
        slot[0] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        return slot

    def set_watchdog(self, limit_us: float | None) -> None:
        """Pass the feed to the kernel when a queue's consumer has not polled for ``limit_us`` (None: off).

        For a consumer that hangs while alive (a dying one is covered by the death notice, on by default):
        its black hole lasts at most ``limit_us``. A consumer pause longer than that (descheduled, a long
        handler) also diverts the feed, so it is opt-in.
        """
        flags = self._flags() & ~FLAG_WATCHDOG
        if limit_us:
            self._set_config(CFG_WATCHDOG_NS, int(limit_us * 1000))
            flags |= FLAG_WATCHDOG
        self._set_config(CFG_FLAGS, flags)

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

    def counters(self) -> dict[int, dict[str, int]]:
        queues = self.info.rx_queues if self.info else 1
        return sum_counters(self.table("counters").map_fd, queues)

    # --- lifecycle ----------------------------------------------------------------------------
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
        if self._heartbeat is not None:
            with contextlib.suppress(BufferError):  # a receiver still holding a pointer: freed at exit
                self._heartbeat.close()
            self._heartbeat = None
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


def _remove_xdp(iface: str, mode: str) -> None:
    from bcc import BPF

    try:
        BPF.remove_xdp(iface.encode(), MODE_FLAGS.get(mode, 0))
    except Exception as exc:
        raise GatewayError(
            f"cannot remove the XDP program from {iface}: {exc}",
            f"remove it by hand: ip link set dev {iface} xdp off (or xdpgeneric off)",
        ) from exc


def detach_iface(iface: str, only_ours: bool = True) -> str:
    """Remove xdpgw's program from ``iface`` (from any process). Returns what was done."""
    require_root()
    info = interface(iface)
    shutil.rmtree(pin_dir(iface), ignore_errors=True)
    with contextlib.suppress(OSError):
        state_path(iface).unlink()
    if info.xdp is None:
        return f"{iface}: no XDP program attached"
    if only_ours and info.xdp.name != PROG_NAME:
        raise GatewayError(
            f"{iface} runs XDP program id {info.xdp.prog_id} ({info.xdp.name or '?'}), not xdpgw's",
            "leave it alone, or remove it yourself: ip link set dev " + iface + " xdp off",
        )
    _remove_xdp(iface, info.xdp.mode)
    return f"{iface}: detached xdpgw program id {info.xdp.prog_id} ({info.xdp.mode} mode)"


def status_iface(iface: str) -> dict:
    """What is attached to ``iface``: program, mode, BPF counters, and the consumer's live stats."""
    from xdpgw._xsk import lib

    info = interface(iface)
    out: dict = {"iface": iface, "index": info.index, "rx_queues": info.rx_queues, "attached": False}
    if info.xdp is not None:
        out.update(
            attached=True,
            ours=info.xdp.name == PROG_NAME,
            prog_id=info.xdp.prog_id,
            prog_name=info.xdp.name,
            mode=info.xdp.mode,
        )
    # By program id, not by pin: works from any mount namespace and never reads a stale pin.
    fd = lib.xgw_prog_map_fd(out["prog_id"], b"counters") if out.get("ours") else -1
    if fd >= 0:
        try:
            per_queue = sum_counters(fd, info.rx_queues)
        finally:
            lib.xgw_close_fd(fd)
        out["bpf_counters"] = total_counters(per_queue)
        out["bpf_counters_by_queue"] = {str(q): c for q, c in per_queue.items() if c["seen"]}
    state = read_state(iface)
    if state:
        state["consumer_alive"] = bool(state.get("pid")) and pid_alive(int(state["pid"]))
        state["age_s"] = round(time.time() - float(state.get("updated", 0)), 1)
        out["consumer"] = state
    return out
