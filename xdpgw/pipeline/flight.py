"""The latency flight recorder: per-burst timestamps in a ring (filled in C), dumped and explained at exit.

``xdpgw attach|listen --protocol moldudp64 --trace-latency FILE`` keeps the last bursts' timestamps (see
``XGW_TR_*`` in ``xdpgw/_native/fastpath.h``: kernel receive stamps of the oldest and newest packet, when the
consumer started the receive call, when it returned, when handlers started and returned, packets,
messages and flags) and writes them to FILE (CSV) at exit, with a breakdown of every burst whose
oldest packet waited more than 100 µs (kernel receive → handlers start) into its parts:

- ``kernel``: from the stamp (or the start of the receive call, if later) until the call returned
  with it: the kernel's delivery into the ring while we were polling;
- ``ours_previous``: the packet arrived while the previous burst was being handled;
- ``ours_between``: it arrived between bursts (loop, status/state/metrics tick, GC, idle policy);
- ``ours_burst``: decoding, sequencing and filtering this burst (``slow``: the general path).

Each part may include time the consumer was not running at all (another process had its CPU: a
loaded machine): ``off_cpu`` is the wall time minus the consumer thread's CPU time between the
previous burst and this one, and a tail whose wait is mostly that is counted as ``descheduled``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xdpgw._native._xsk import lib

# An entry's columns are the XGW_TR_* slots of xdpgw/_native/fastpath.h, named by their tails (XGW_TR_RX_FIRST ->
# "rx_first"), in slot order.
_SLOTS = sorted((getattr(lib, name), name) for name in dir(lib) if name.startswith("XGW_TR_"))
COLUMNS = tuple(name.removeprefix("XGW_TR_").lower() for _, name in _SLOTS)
_FIRST, _POLL, _DECODE, _READY, _DONE, _FLAGS, _CPU = (lib.XGW_TR_RX_FIRST, lib.XGW_TR_POLL, lib.XGW_TR_DECODE,
                                                       lib.XGW_TR_READY, lib.XGW_TR_DONE, lib.XGW_TR_FLAGS, lib.XGW_TR_CPU)
PARTS = ("kernel", "ours_previous", "ours_between", "ours_burst")


def entries(fast: Any) -> np.ndarray:
    """The recorded bursts, oldest first (a copy)."""
    tr, n = fast.trace, int(fast.s.trace_n)
    cap = len(tr)
    if n <= cap:
        return tr[:n].copy()
    k = n % cap
    return np.concatenate((tr[k:], tr[:k]))


def explain(tr: np.ndarray, threshold_ns: int = 100_000) -> dict:
    """Split every burst waiting over ``threshold_ns`` into :data:`PARTS`; totals and a count by the
    largest part (and by flags of what ran before it)."""
    if len(tr) < 2:
        return {"bursts": len(tr), "tails": 0}
    cur, prev = tr[1:], tr[:-1]
    first, poll, decode, ready = cur[:, _FIRST], cur[:, _POLL], cur[:, _DECODE], cur[:, _READY]
    wait = ready - first
    tail = (first > 0) & (wait > threshold_ns)
    arrive = first
    kernel = decode - np.maximum(poll, arrive)
    before = np.maximum(poll - arrive, 0)  # waited before the receive call started
    p_poll, p_done = prev[:, _POLL], prev[:, _DONE]
    ours_prev = np.clip(np.minimum(poll, p_done) - np.maximum(arrive, p_poll), 0, None)
    ours_between = np.maximum(before - ours_prev, 0)
    ours_burst = ready - decode
    parts = np.stack([kernel, ours_prev, ours_between, ours_burst], axis=1)[tail]
    flags = (cur[tail, _FLAGS] >> 32).astype(np.int64)
    main = parts.argmax(axis=1) if len(parts) else np.zeros(0, int)
    off_cpu = np.maximum((ready - prev[:, _READY]) - (cur[:, _CPU] - prev[:, _CPU]), 0)[tail]
    desched = off_cpu * 2 >= wait[tail]
    out: dict = {"bursts": int(len(tr)), "tails": int(tail.sum()), "threshold_us": threshold_ns / 1e3,
                 "worst_us": round(float(wait[tail].max()) / 1e3, 1) if tail.any() else 0.0,
                 "by_main_part": {p: int((main == i).sum()) for i, p in enumerate(PARTS)},
                 "descheduled": int(desched.sum()), "off_cpu_us": round(float(off_cpu.sum()) / 1e3, 1),
                 # each tail once: mostly off CPU, else its largest part (the kernel's or ours)
                 "by_cause": {"off_cpu": int(desched.sum()), "kernel": int((~desched & (main == 0)).sum()),
                              "ours": int((~desched & (main > 0)).sum())},
                 "part_totals_us": {p: round(float(parts[:, i].sum()) / 1e3, 1) for i, p in enumerate(PARTS)},
                 "with_flags": {"slow": int((flags & lib.XGW_TRF_SLOW).astype(bool).sum()),
                                "gc": int((flags & lib.XGW_TRF_GC).astype(bool).sum()),
                                "tick": int((flags & lib.XGW_TRF_TICK).astype(bool).sum())}}
    worst = np.argsort(-wait[tail])[:10]
    out["worst"] = [{"wait_us": round(float(wait[tail][i]) / 1e3, 1),
                     **{p: round(float(parts[i, j]) / 1e3, 1) for j, p in enumerate(PARTS)},
                     "off_cpu": round(float(off_cpu[i]) / 1e3, 1),
                     "flags": int(flags[i])} for i in worst.tolist()]
    return out


def dump(fast: Any, path: str, threshold_ns: int = 100_000) -> dict:
    """Write the recorded bursts to ``path`` (CSV, CLOCK_MONOTONIC ns) and return :func:`explain`."""
    tr = entries(fast)
    np.savetxt(path, tr, fmt="%d", delimiter=",", header=",".join(COLUMNS), comments="")
    return explain(tr, threshold_ns)


def text(report: dict) -> str:
    """One line per fact of an :func:`explain` report, for stderr."""
    if not report.get("tails"):
        return f"flight recorder: {report.get('bursts', 0)} bursts, none waited over the threshold"
    by = ", ".join(f"{k} {v}" for k, v in report["by_main_part"].items())
    tot = ", ".join(f"{k} {v} µs" for k, v in report["part_totals_us"].items())
    fl = ", ".join(f"{k} {v}" for k, v in report["with_flags"].items())
    return (f"flight recorder: {report['bursts']} bursts, {report['tails']} waited over "
            f"{report['threshold_us']:g} µs (worst {report['worst_us']} µs); {report['descheduled']} of them mostly "
            f"off CPU (another process ran); largest part: {by}; time: {tot}, off CPU {report['off_cpu_us']} µs; "
            f"flags: {fl}")
