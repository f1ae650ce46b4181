"""Putting an XDP program on an interface and taking it off: modes, what is already there, detach.

`detach_iface` works from any process (``xdpgw detach``), also after the gateway was killed.
"""

from __future__ import annotations

import os

from xdpgw.errors import GatewayError
from xdpgw.kernel.features import require_root
from xdpgw.kernel.liveness import pid_alive
from xdpgw.kernel.maps import PROG_NAME
from xdpgw.kernel.netdev import Interface, interface
from xdpgw.kernel.pins import unpin
from xdpgw.kernel.state import read_state, remove_state

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
MODE_FLAGS = {"skb": 1 << 1, "drv": 1 << 2}
MODES = ("auto", "drv", "skb")


def attach_xdp(iface: str, fn, mode: str) -> tuple[str, list[str]]:
    """Attach the loaded BCC function ``fn`` to ``iface`` in ``mode`` (auto: drv, else skb).
    Returns (the mode it runs in, notes)."""
    from bcc import BPF

    modes = ["drv", "skb"] if mode == "auto" else [mode]
    errors = []
    for m in modes:
        try:
            BPF.attach_xdp(iface.encode(), fn, XDP_FLAGS_UPDATE_IF_NOEXIST | MODE_FLAGS[m])
        except Exception as exc:
            errors.append(f"{m}: {exc}")
            continue
        return m, [f"native (drv) XDP failed, using generic (skb) mode: {errors[0]}"] if errors else []
    raise GatewayError(
        f"cannot attach XDP to {iface} ({'; '.join(errors)})",
        "try --mode skb, or check the driver with `xdpgw doctor " + iface + "`",
    )


def replace_existing(info: Interface, force: bool) -> list[str]:
    """Make room on ``info``'s interface: remove an XDP program left there (ours from a dead run, or a
    foreign one with ``force``); refuse a foreign one or a live xdpgw otherwise. Returns notes."""
    if info.xdp is None:
        return []
    iface = info.name
    if info.xdp.name != PROG_NAME:
        if not force:
            raise GatewayError(
                f"{iface} already runs a foreign XDP program "
                f"(id {info.xdp.prog_id}, name {info.xdp.name or '?'}, {info.xdp.mode} mode)",
                "find its owner with `bpftool prog show id "
                f"{info.xdp.prog_id}`; pass --force to replace it",
            )
        note = f"replacing foreign XDP program id {info.xdp.prog_id} (--force)"
    else:
        state = read_state(iface) or {}
        pid = int(state.get("pid") or 0)
        if pid and pid != os.getpid() and pid_alive(pid) and not force:
            raise GatewayError(
                f"xdpgw (pid {pid}) is already attached to {iface}",
                f"stop it first (kill {pid}) or run `xdpgw detach {iface}`",
            )
        note = f"replacing the xdpgw program left by an earlier run (id {info.xdp.prog_id})"
    remove_xdp(iface, info.xdp.mode)
    return [note]


def remove_xdp(iface: str, mode: str) -> None:
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
    unpin(iface)
    remove_state(iface)
    if info.xdp is None:
        return f"{iface}: no XDP program attached"
    if only_ours and info.xdp.name != PROG_NAME:
        raise GatewayError(
            f"{iface} runs XDP program id {info.xdp.prog_id} ({info.xdp.name or '?'}), not xdpgw's",
            "leave it alone, or remove it yourself: ip link set dev " + iface + " xdp off",
        )
    remove_xdp(iface, info.xdp.mode)
    return f"{iface}: detached xdpgw program id {info.xdp.prog_id} ({info.xdp.mode} mode)"
