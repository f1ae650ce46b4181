"""Pinned maps under ``/sys/fs/bpf/xdpgw/<iface>/``: readable from another process and after a crash."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from xdpgw.kernel.netdev import netns_tag

PIN_ROOT = Path("/sys/fs/bpf/xdpgw")
PINNED_MAPS = ("counters", "feed_ports", "xsks", "config", "allowed_src")


def pin_dir(iface: str) -> Path:
    return PIN_ROOT / f"{iface}{netns_tag()}"


def pin_maps(bpf, iface: str) -> list[str]:
    """Pin PINNED_MAPS of the BCC object ``bpf`` under `pin_dir` (replacing old pins); notes on what failed."""
    from xdpgw._native._bpfobj import lib

    d = pin_dir(iface)
    try:
        if not os.path.ismount("/sys/fs/bpf"):  # e.g. under `ip netns exec`, which remounts /sys
            subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True, capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return [f"maps not pinned ({exc}); `xdpgw status` reads them by program id instead"]
    notes = []
    for name in PINNED_MAPS:
        err = lib.xgw_obj_pin(bpf[name.encode()].map_fd, str(d / name).encode())
        if err:
            notes.append(f"could not pin {name} under {d}: {os.strerror(-err)}")
    return notes


def unpin(iface: str) -> None:
    """Remove ``iface``'s pins (nothing if there are none)."""
    shutil.rmtree(pin_dir(iface), ignore_errors=True)
