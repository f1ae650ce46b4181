"""``xdpgw doctor``: read this machine and say what is ready for XDP/AF_XDP and what to fix.

Every check is a real read (sysfs, /proc, the bpf() syscall, an AF_XDP socket, netlink via pyroute2,
ethtool ioctls, and the ``ethtool`` command for the feature list, which has no simple ioctl). Each
returns one `Check`; ``fix`` is the exact command to run ("" when there is nothing to do).
"""

from __future__ import annotations

import ctypes
import fcntl
import glob
import json
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from xdpgw.errors import GatewayError
from xdpgw.kernel.netdev import Interface, interface
from xdpgw.pipeline.options import DEFAULTS, ReceiverOptions
from xdpgw.transport.xdp.xsk_errors import xsk_open_error

Status = Literal["ok", "warn", "fail", "info"]

AF_XDP = 44
SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO, ETHTOOL_GRINGPARAM, ETHTOOL_GCHANNELS = 0x03, 0x10, 0x3C
WANT_SOCKBUF = DEFAULTS.receiver.rcvbuf  # the socket receiver's SO_RCVBUF (scripts/tune_network.sh sets the same)
TUNE = "scripts/tune_network.sh --apply"
HUGEPAGES = "scripts/setup_hugepages.sh --apply"
CAP_IPC_LOCK = 14


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class DriverCaps:
    """One row of the known-driver table (not probed: a table of what the drivers implement)."""

    native: bool
    zerocopy: bool
    xsk_symbol: str = ""  # kernel symbol present when this kernel's driver has AF_XDP zero-copy
    note: str = ""


DRIVERS: dict[str, DriverCaps] = {
    "veth": DriverCaps(True, False, "", "native XDP; no zero-copy; the peer needs an XDP program or GRO on"),
    "virtio_net": DriverCaps(
        True,
        True,
        "virtnet_xsk_wakeup",
        "native XDP needs the host to let the guest turn LRO/TSO offloads off",
    ),
    "mlx5_core": DriverCaps(True, True, "mlx5e_xsk_wakeup"),
    "mlx4_en": DriverCaps(True, False),
    "ice": DriverCaps(True, True, "ice_xsk_wakeup"),
    "i40e": DriverCaps(True, True, "i40e_xsk_wakeup"),
    "ixgbe": DriverCaps(True, True, "ixgbe_xsk_wakeup"),
    "igc": DriverCaps(True, True, "igc_xsk_wakeup"),
    "igb": DriverCaps(True, False),
    "idpf": DriverCaps(True, True, "idpf_xsk_wakeup"),
    "stmmac": DriverCaps(True, True, "stmmac_xsk_wakeup"),
    "bnxt_en": DriverCaps(True, False),
    "ena": DriverCaps(True, True, "ena_xsk_wakeup"),
    "nfp": DriverCaps(True, True, "nfp_net_xsk_wakeup"),
    "tun": DriverCaps(True, False),
    "hv_netvsc": DriverCaps(True, False),
    "gve": DriverCaps(True, True, "gve_xsk_wakeup"),
    "xsc_eth": DriverCaps(True, False),
    "bond": DriverCaps(True, False),
}


# --- small readers ---------------------------------------------------------------------------------


def _read(path: str | Path, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _sysctl(name: str) -> str:
    return _read("/proc/sys/" + name.replace(".", "/"))


def _kernel_version(release: str | None = None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release or os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _ethtool_ioctl(iface: str, cmd: int, size: int) -> bytes | None:
    """One SIOCETHTOOL request: ``size`` bytes starting with the u32 ``cmd``; None if unsupported."""
    buf = ctypes.create_string_buffer(struct.pack("I", cmd), size)
    ifreq = struct.pack("16sP", iface.encode()[:15], ctypes.addressof(buf)).ljust(40, b"\0")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return None
    return buf.raw


def driver_of(iface: str) -> str:
    """The driver name (``ethtool -i``: ETHTOOL_GDRVINFO ioctl, else the sysfs driver link)."""
    raw = _ethtool_ioctl(iface, ETHTOOL_GDRVINFO, 196)
    if raw:
        name = raw[4:36].split(b"\0", 1)[0].decode()
        if name:
            return name
    link = Path(f"/sys/class/net/{iface}/device/driver")
    return os.path.basename(os.readlink(link)) if link.is_symlink() else ""


def channels_of(iface: str) -> dict[str, int] | None:
    """``ethtool -l``: max and current rx/tx/other/combined channel counts (ETHTOOL_GCHANNELS)."""
    raw = _ethtool_ioctl(iface, ETHTOOL_GCHANNELS, 36)
    if raw is None:
        return None
    v = struct.unpack("9I", raw)
    keys = ("max_rx", "max_tx", "max_other", "max_combined", "rx", "tx", "other", "combined")
    return dict(zip(keys, v[1:], strict=True))


def rings_of(iface: str) -> dict[str, int] | None:
    """``ethtool -g``: rx/tx ring sizes and maxima (ETHTOOL_GRINGPARAM)."""
    raw = _ethtool_ioctl(iface, ETHTOOL_GRINGPARAM, 36)
    if raw is None:
        return None
    v = struct.unpack("9I", raw)
    return {"max_rx": v[1], "max_tx": v[4], "rx": v[5], "tx": v[8]}


def features_of(iface: str) -> dict[str, tuple[bool, bool]]:
    """``ethtool -k IFACE`` parsed: feature -> (on, fixed). Empty when ethtool is missing."""
    exe = shutil.which("ethtool")
    if not exe:
        return {}
    p = subprocess.run([exe, "-k", iface], capture_output=True, text=True, timeout=5, check=False)
    out = {}
    for m in re.finditer(r"^\s*([\w-]+): (on|off)( \[fixed\])?", p.stdout, re.M):
        out[m.group(1)] = (m.group(2) == "on", bool(m.group(3)))
    return out


def _kallsyms_has(symbol: str) -> bool | None:
    """Whether the running kernel (or a loaded module) has ``symbol``; None when unreadable."""
    try:
        with open("/proc/kallsyms") as f:
            return any(line.rstrip().split(" ")[2:3] == [symbol] for line in f)
    except OSError:
        return None


def _link(iface: str) -> Interface | None:
    """The interface's netlink facts (xdpgw.kernel.netdev); None if there is no such interface."""
    try:
        return interface(iface)
    except GatewayError:
        return None


def _xdp_attached(link: Interface | None) -> str:
    if link is None:
        return "?"
    x = link.xdp
    return f"{x.mode} prog {x.prog_id} ({x.name or '?'})" if x else "none"


def _cap_effective(bit: int) -> bool:
    m = re.search(r"^CapEff:\s*([0-9a-f]+)", _read("/proc/self/status"), re.M)
    return bool(m and int(m.group(1), 16) >> bit & 1)


def _bpf_prog_load_xdp() -> tuple[int, int]:
    """Load ``r0 = XDP_PASS; exit`` with bpf(BPF_PROG_LOAD); returns (fd or -1, errno)."""
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(struct.pack("<BBhiBBhi", 0xB7, 0, 0, 2, 0x95, 0, 0, 0), 16)
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQQ", 6, 2, ctypes.addressof(insns), ctypes.addressof(license_)), 128
    )  # BPF_PROG_TYPE_XDP
    fd = libc.syscall(321, 5, attr, 128)  # __NR_bpf on x86_64, BPF_PROG_LOAD
    return fd, ctypes.get_errno()


# --- checks ----------------------------------------------------------------------------------------


def check_kernel() -> Check:
    rel = os.uname().release
    v = _kernel_version(rel)
    if v < (4, 18):
        return Check(
            "kernel",
            "fail",
            f"{rel}: AF_XDP needs Linux >= 4.18 (5.10+ advised)",
            "apt-get install -t bookworm-backports linux-image-amd64 && reboot",
        )
    if v < (5, 10):
        return Check(
            "kernel",
            "warn",
            f"{rel}: works, but need_wakeup/busy-poll want >= 5.11",
            "apt-get install linux-image-amd64 && reboot",
        )
    return Check("kernel", "ok", f"{rel} (AF_XDP, need_wakeup, bpf_link, memcg BPF accounting)")


def check_bpf_syscall() -> Check:
    fd, err = _bpf_prog_load_xdp()
    if fd >= 0:
        os.close(fd)
        return Check("bpf", "ok", "bpf(BPF_PROG_LOAD) of a trivial XDP program works")
    if err == 1:
        return Check(
            "bpf",
            "fail",
            "bpf() refused (EPERM): not root and no CAP_BPF/CAP_NET_ADMIN",
            "run as root: sudo xdpgw doctor",
        )
    return Check(
        "bpf",
        "fail",
        f"bpf(BPF_PROG_LOAD) failed: {os.strerror(err)}",
        "use a kernel built with CONFIG_BPF_SYSCALL=y and CONFIG_XDP_SOCKETS=y (Debian's is)",
    )


def check_af_xdp() -> Check:
    try:
        socket.socket(AF_XDP, socket.SOCK_RAW, 0).close()
    except OSError as e:
        err = xsk_open_error(e.errno)
        return Check("af_xdp", "fail", err.what, err.fix)
    return Check("af_xdp", "ok", "socket(AF_XDP, SOCK_RAW) works")


def check_bcc() -> Check:
    try:
        import bcc  # noqa: F401
    except ImportError:
        return Check(
            "bcc",
            "fail",
            "python module bcc not importable (BCC is not on PyPI)",
            "apt-get install python3-bpfcc and create the venv with --system-site-packages "
            "(scripts/setup.sh does both)",
        )
    return Check("bcc", "ok", "import bcc works")


def check_btf() -> Check:
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        return Check("btf", "ok", "/sys/kernel/btf/vmlinux present")
    return Check(
        "btf",
        "warn",
        "no /sys/kernel/btf/vmlinux: CO-RE tools will not work (BCC still does)",
        "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's linux-image-amd64)",
    )


def check_bpffs() -> Check:
    mounts = _read("/proc/mounts").splitlines()
    if any(m.split()[1:3] == ["/sys/fs/bpf", "bpf"] for m in mounts if len(m.split()) > 2):
        return Check("bpffs", "ok", "bpffs mounted at /sys/fs/bpf")
    return Check(
        "bpffs",
        "fail",
        "bpffs not mounted at /sys/fs/bpf (libxdp pins its dispatcher there)",
        "mount -t bpf bpf /sys/fs/bpf",
    )


def check_headers() -> Check:
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if (build / "Makefile").exists() or (build / "include").is_dir():
        return Check("kernel headers", "ok", f"{build} -> {os.path.realpath(build)}")
    return Check(
        "kernel headers",
        "fail",
        f"{build} missing: BCC cannot compile the XDP program",
        f"apt-get install linux-headers-{os.uname().release} || scripts/setup.sh",
    )


def check_driver(iface: str) -> Check:
    drv = driver_of(iface) or "unknown"
    caps = DRIVERS.get(drv)
    attached = f"; XDP attached: {_xdp_attached(_link(iface))}"
    if caps is None:
        return Check(
            "driver",
            "warn",
            f"{iface}: driver {drv!r} not in xdpgw's known-driver table: expect "
            f"generic (skb) XDP in copy mode{attached}",
            f"ethtool -i {iface}  # check the driver's XDP support, or use a NIC from the table",
        )
    zc = caps.zerocopy
    zc_why = "table"
    if zc and caps.xsk_symbol:
        has = _kallsyms_has(caps.xsk_symbol)
        if has is not None:
            zc, zc_why = has, f"{caps.xsk_symbol} {'in' if has else 'not in'} this kernel"
    detail = (
        f"{iface}: {drv} (known-driver table): native XDP {'yes' if caps.native else 'no'}, "
        f"zero-copy {'yes' if zc else 'no'} ({zc_why}){attached}" + (f"; {caps.note}" if caps.note else "")
    )
    return Check(
        "driver",
        "ok" if caps.native else "warn",
        detail,
        ""
        if caps.native
        else f"ethtool -i {iface}  # expect generic (skb) XDP; use a NIC from the table for native",
    )


def check_mtu(iface: str, receiver: ReceiverOptions = DEFAULTS.receiver) -> Check:
    link = _link(iface)
    mtu = link.mtu if link else 0
    # a frame must fit the receiver's UMEM frame after XDP_PACKET_HEADROOM (the kernel drops longer ones),
    # and a 4 KiB page for native XDP (which refuses the MTU otherwise)
    if mtu > receiver.max_mtu:
        return Check(
            "mtu",
            "warn",
            f"{iface} MTU {mtu} too big: frames up to {receiver.max_frame} bytes fit the receiver's "
            f"{receiver.frame_size}-byte UMEM frames (MTU <= {receiver.max_mtu}); longer ones are dropped",
            f"ip link set dev {iface} mtu 1500",
        )
    return Check("mtu", "ok", f"{iface} MTU {mtu}, state {link.state if link else '?'}")


def check_queues(iface: str, port: int | None, queue: int) -> list[Check]:
    ch = channels_of(iface)
    rx_dirs = len(glob.glob(f"/sys/class/net/{iface}/queues/rx-*"))
    if ch:
        n = ch["combined"] + ch["rx"]
        detail = f"{iface}: {n} rx channel(s) (combined {ch['combined']}/{ch['max_combined']}, rx {ch['rx']})"
    else:
        n = rx_dirs
        detail = f"{iface}: {n} rx queue(s) (sysfs; ethtool -l unsupported)"
    out = [
        Check(
            "queues",
            "ok" if queue < max(n, 1) else "fail",
            detail,
            ""
            if queue < max(n, 1)
            else f"use --queue 0..{max(n, 1) - 1}, or: ethtool -L {iface} combined {queue + 1}",
        )
    ]
    rings = rings_of(iface)
    if rings and (rings["rx"] < rings["max_rx"] or rings["tx"] < rings["max_tx"]):
        out.append(
            Check(
                "rings",
                "warn",
                f"{iface} rings rx {rings['rx']}/{rings['max_rx']} tx "
                f"{rings['tx']}/{rings['max_tx']}: bursts may overflow",
                f"ethtool -G {iface} rx {rings['max_rx']} tx {rings['max_tx']}",
            )
        )
    elif rings:
        out.append(Check("rings", "ok", f"{iface} rings at max (rx {rings['rx']}, tx {rings['tx']})"))
    feats = features_of(iface)
    steer = f"ethtool -N {iface} flow-type udp4 dst-port {port if port else 'PORT'} action {queue}"
    if "ntuple-filters" not in feats:
        out.append(
            Check(
                "flow steering",
                "info",
                f"{iface}: cannot read features (ethtool missing?)",
                "apt-get install ethtool",
            )
        )
    elif n <= 1:
        out.append(
            Check("flow steering", "ok", f"{iface} has one rx queue: the feed always lands on queue 0")
        )
    else:
        on, fixed = feats["ntuple-filters"]
        if on:
            out.append(Check("flow steering", "info", f"ntuple on: steer the feed to queue {queue}", steer))
        elif fixed:
            out.append(
                Check(
                    "flow steering",
                    "warn",
                    f"{iface}: ntuple off [fixed], {n} queues: RSS decides the feed's queue",
                    f"ethtool -L {iface} combined 1  # or attach to every queue",
                )
            )
        else:
            out.append(
                Check(
                    "flow steering",
                    "warn",
                    f"{iface}: ntuple off, {n} queues: the feed may land on any queue",
                    f"ethtool -K {iface} ntuple on && {steer}",
                )
            )
    return out


def check_sockbuf() -> list[Check]:
    out = []
    for name in ("net.core.rmem_max", "net.core.wmem_max"):
        v = int(_sysctl(name) or 0)
        ok = v >= WANT_SOCKBUF
        out.append(
            Check(
                name,
                "ok" if ok else "warn",
                f"{v} ({v >> 20} MiB), want >= {WANT_SOCKBUF >> 20} MiB",
                "" if ok else f"sysctl -w {name}={WANT_SOCKBUF}  # persistent: {TUNE}",
            )
        )
    return out


def check_hugepages(umem_bytes: int = DEFAULTS.receiver.umem_bytes) -> Check:
    info = dict(re.findall(r"^(\w+):\s+(\d+)", _read("/proc/meminfo"), re.M))
    total, free, size = (int(info.get(k, 0)) for k in ("HugePages_Total", "HugePages_Free", "Hugepagesize"))
    need = -(-umem_bytes // max(size << 10, 1))
    detail = f"{total} x {size} kB reserved, {free} free; a queue's UMEM ({umem_bytes >> 20} MiB) needs {need}"
    if free >= need:
        return Check("hugepages", "ok", detail)
    return Check(
        "hugepages",
        "warn",
        detail + " (UMEM falls back to 4 KiB pages: more TLB misses)",
        f"{HUGEPAGES} --pages 512",
    )


def check_thp() -> Check:
    raw = _read("/sys/kernel/mm/transparent_hugepage/enabled")
    m = re.search(r"\[(\w+)\]", raw)
    mode = m.group(1) if m else "absent"
    if mode == "always":
        return Check(
            "thp",
            "warn",
            "transparent huge pages: always (khugepaged compaction can stall the consumer)",
            "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
        )
    return Check("thp", "ok" if mode != "absent" else "info", f"transparent huge pages: {mode}")


def _irqs_of(iface: str) -> list[tuple[int, str]]:
    """IRQs of IFACE: its PCI device's msi_irqs, and /proc/interrupts lines naming IFACE or its device
    (``eth0-TxRx-0``, ``virtio2-input.0``, ``mlx5_comp0@pci:0000:3b:00.0``)."""
    dev = Path(f"/sys/class/net/{iface}/device")
    names = [iface]
    msi: set[int] = set()
    if dev.exists():
        real = Path(os.path.realpath(dev))
        names.append(real.name)  # virtio2, or a PCI address
        for d in (real, real.parent):
            msi |= {int(p.name) for p in (d / "msi_irqs").glob("*") if p.name.isdigit()}
    out = []
    for line in _read("/proc/interrupts").splitlines()[1:]:
        head, _, rest = line.partition(":")
        if not head.strip().isdigit():
            continue
        irq, label = int(head), (rest.split() or [""])[-1]
        named = any(label == n or label.startswith(n + "-") or n in label.partition("@")[2] for n in names)
        if named or irq in msi:
            out.append((irq, label))
    return out


def _irqbalance_running() -> bool:
    return any(_read(comm) == "irqbalance" for comm in glob.glob("/proc/[0-9]*/comm"))


def check_irq_affinity(iface: str) -> Check:
    irqs = _irqs_of(iface)
    if not irqs:
        return Check(
            "irq affinity",
            "info",
            f"{iface}: no IRQs of its own (virtual device: softirq runs on the sender's CPU)",
        )
    parts = [f"{irq} {label}->{_read(f'/proc/irq/{irq}/smp_affinity_list', '?')}" for irq, label in irqs]
    detail = f"{iface}: " + ", ".join(parts)
    rx = next((i for i, lab in irqs if re.search(r"input|rx|TxRx|comp", lab, re.I)), irqs[0][0])
    last = max(os.sched_getaffinity(0))
    fix = f"echo 0 > /proc/irq/{rx}/smp_affinity_list  # consumer on CPU {last}: taskset -c {last}"
    if _irqbalance_running():
        return Check(
            "irq affinity",
            "warn",
            detail + "; irqbalance is running and will move them",
            "systemctl stop irqbalance && " + fix,
        )
    return Check("irq affinity", "info", detail + " (keep the feed queue's IRQ off the consumer's CPU)", fix)


def check_governor() -> Check:
    govs = {_read(p) for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")}
    if not govs:
        return Check("cpu governor", "info", "no cpufreq (typical of VMs): frequency is the host's business")
    if govs == {"performance"}:
        return Check("cpu governor", "ok", "performance on every CPU")
    return Check(
        "cpu governor",
        "warn",
        f"governors: {', '.join(sorted(govs))} (frequency ramps add latency)",
        "cpupower frequency-set -g performance",
    )


def check_memlock(umem_bytes: int = DEFAULTS.receiver.umem_bytes) -> Check:
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    shown = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft >> 10} KiB"
    note = "BPF maps: memcg-accounted since 5.11, limit irrelevant"
    if _cap_effective(CAP_IPC_LOCK):
        return Check("memlock", "ok", f"RLIMIT_MEMLOCK {shown}; CAP_IPC_LOCK held, UMEM not limited ({note})")
    if soft == resource.RLIM_INFINITY or soft >= umem_bytes:
        return Check("memlock", "ok", f"RLIMIT_MEMLOCK {shown} >= UMEM {umem_bytes >> 20} MiB ({note})")
    return Check(
        "memlock",
        "fail",
        f"RLIMIT_MEMLOCK {shown} < UMEM {umem_bytes >> 20} MiB: AF_XDP UMEM is still "
        f"charged to it without CAP_IPC_LOCK (ENOBUFS) ({note})",
        "ulimit -l unlimited  # systemd: LimitMEMLOCK=infinity; or run as root",
    )


def check_busy_poll() -> Check:
    poll, read = int(_sysctl("net.core.busy_poll") or 0), int(_sysctl("net.core.busy_read") or 0)
    detail = f"net.core.busy_poll={poll} busy_read={read} (us the socket fallback spins before sleeping)"
    if poll and read:
        return Check("busy poll", "ok", detail)
    return Check(
        "busy poll", "info", detail, f"sysctl -w net.core.busy_poll=50 net.core.busy_read=50  # or {TUNE}"
    )


def check_iface(iface: str) -> Check:
    link = _link(iface)
    if link is None:
        names = sorted(os.listdir("/sys/class/net"))
        return Check("iface", "fail", f"no interface {iface!r} (have: {', '.join(names)})", "ip -br link")
    state = link.state
    return Check(
        "iface",
        "ok" if state in ("UP", "UNKNOWN") else "warn",
        f"{iface} index {link.index} state {state}",
        "" if state in ("UP", "UNKNOWN") else f"ip link set dev {iface} up",
    )


def _guard(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; a crash in a check becomes a 'warn' line instead of killing the report."""
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001 - the doctor must always print its report
        return [
            Check(
                name,
                "warn",
                f"check crashed: {type(e).__name__}: {e}",
                "report it with the output of: xdpgw doctor --json",
            )
        ]
    return r if isinstance(r, list) else [r]


def run_checks(
    iface: str | None, port: int | None = None, queue: int = 0, receiver: ReceiverOptions = DEFAULTS.receiver
) -> list[Check]:
    """Every check, in display order. Interface checks only when ``iface`` is given and exists. Sizes
    (UMEM, frames) are those of ``receiver``: by default what `xdpgw attach` opens."""
    plan: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("kernel", check_kernel),
        ("bpf", check_bpf_syscall),
        ("af_xdp", check_af_xdp),
        ("bcc", check_bcc),
        ("btf", check_btf),
        ("bpffs", check_bpffs),
        ("kernel headers", check_headers),
    ]
    checks: list[Check] = []
    for name, fn in plan:
        checks += _guard(name, fn)
    if iface:
        first = _guard("iface", lambda: check_iface(iface))
        checks += first
        if first[0].status != "fail":
            for name, fn in (
                ("driver", lambda: check_driver(iface)),
                ("mtu", lambda: check_mtu(iface, receiver)),
                ("queues", lambda: check_queues(iface, port, queue)),
                ("irq affinity", lambda: check_irq_affinity(iface)),
            ):
                checks += _guard(name, fn)
    for name, fn in (
        ("sockbuf", check_sockbuf),
        ("hugepages", lambda: check_hugepages(receiver.umem_bytes)),
        ("thp", check_thp),
        ("cpu governor", check_governor),
        ("memlock", lambda: check_memlock(receiver.umem_bytes)),
        ("busy poll", check_busy_poll),
    ):
        checks += _guard(name, fn)
    return checks


def format_checks(checks: list[Check]) -> str:
    """One aligned line per check: ``[warn] name   detail  -> fix: command``."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        line = f"[{c.status:<4}] {c.name:<{width}}  {c.detail}"
        lines.append(line + (f"  -> fix: {c.fix}" if c.fix else ""))
    return "\n".join(lines)


def checks_to_json(checks: list[Check]) -> str:
    return json.dumps([asdict(c) for c in checks], indent=2)


def exit_status(checks: list[Check]) -> int:
    """1 if any check failed, else 0 (for ``xdpgw doctor``)."""
    return int(any(c.status == "fail" for c in checks))
