"""The state file ``/run/xdpgw/<iface>.json`` (pid, ports, mode, live stats) and `status_iface`.

Written by the attached gateway, read by ``xdpgw status`` and ``xdpgw detach`` from another process and
after a crash.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from xdpgw.kernel.liveness import pid_alive
from xdpgw.kernel.maps import PROG_NAME, sum_counters, total_counters
from xdpgw.kernel.netdev import interface, netns_tag

STATE_ROOT = Path("/run/xdpgw")


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


def remove_state(iface: str) -> None:
    with contextlib.suppress(OSError):
        state_path(iface).unlink()


def status_iface(iface: str) -> dict:
    """What is attached to ``iface``: program, mode, BPF counters, and the consumer's live stats."""
    from xdpgw._native._bpfobj import lib

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
