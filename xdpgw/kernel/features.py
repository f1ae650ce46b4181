"""What this process and kernel offer: root, the possible CPUs, kprobes (probed, never assumed)."""

from __future__ import annotations

import os
from pathlib import Path

from xdpgw.errors import GatewayError


def require_root(needs: str = "XDP and AF_XDP (CAP_NET_ADMIN, CAP_BPF)") -> None:
    """Raise unless this process runs as root; ``needs`` says what root is for (in the message)."""
    if os.geteuid() != 0:
        raise GatewayError(f"root is needed for {needs}", "run it as root (e.g. with sudo)")


def possible_cpus() -> int:
    """Per-CPU maps hold one slot per *possible* CPU."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return max(int(part.split("-")[-1]) for part in text.split(",")) + 1


def kprobes_available() -> bool:
    """Can BCC attach a kprobe here (perf kprobe PMU or a tracefs kprobe_events file)?"""
    return any(Path(p).exists() for p in ("/sys/bus/event_source/devices/kprobe", "/sys/kernel/tracing/kprobe_events",
                                          "/sys/kernel/debug/tracing/kprobe_events"))
