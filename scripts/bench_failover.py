#!/usr/bin/env python3
"""How long is the feed black-holed when the consumer is killed with SIGKILL?

On a veth lab: `xdpgw attach` consumes the feed port; a kernel UDP socket on the same port waits
behind it. A sender streams packets stamped with their CLOCK_MONOTONIC send time. We SIGKILL the
consumer at t_kill; packets go to the kernel again once the program's death notice marks the queue
dead (default), or, without it, once the AF_XDP socket is gone from the XSKMAP (the redirect falls
back to XDP_PASS) or the --watchdog-us limit passes. Black hole = send time of the first packet the
kernel socket gets after the kill, minus t_kill; packets sent after t_kill that nobody got are
counted as lost (they went into the dead socket's RX ring), and lost_window = send time of the last
lost packet minus t_kill (0: nothing lost). notice_us = when the death notice fired. The sender is a
process of its own (no GIL shared with the killer); sender_gap_us = its longest pause after the kill,
a stall that would otherwise pass for a black hole (the machine is busy).

Configurations: death notice (as shipped); no notice (XDPGW_DEATH_NOTICE=0: the behaviour before the
death notice); no notice + watchdog.

    sudo .venv/bin/python scripts/bench_failover.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

from xdpgw.errors import friendly
from xdpgw.kernel.features import require_root
from xdpgw.tools.lab import Lab, in_netns

PORT = 9001


def status(lab: Lab) -> dict:
    r = subprocess.run(["ip", "netns", "exec", lab.rx_ns, sys.executable, "-m", "xdpgw", "status", lab.rx_if,
                        "--json"], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def wait_attached(lab: Lab, pid: int, timeout: float = 20) -> dict:
    """Status once our program is attached and process ``pid`` consumes (never a stale state file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(lab)
        if st.get("ours") and st.get("consumer", {}).get("pid") == pid:
            return st
        time.sleep(0.1)
    raise SystemExit("bench_failover: xdpgw attach did not come up")


@contextmanager
def prog_map(prog_id: int, name: str):
    """fd of map ``name`` of program ``prog_id`` (BPF ids are global: no namespace needed)."""
    from xdpgw._native._bpfobj import lib

    fd = lib.xgw_prog_map_fd(prog_id, name.encode())
    if fd < 0:
        raise SystemExit(f"bench_failover: program {prog_id} has no map {name}")
    try:
        yield fd
    finally:
        lib.xgw_close_fd(fd)


def death_notice_ns(prog_id: int, queue: int = 0) -> int:
    import ctypes

    from bcc.libbcc import lib

    key, val = ctypes.c_int(queue), ctypes.c_uint64()
    with prog_map(prog_id, "dead") as fd:
        lib.bpf_lookup_elem(fd, ctypes.byref(key), ctypes.byref(val))
    return val.value


def one_round(lab: Lab, cpus: list[int], watchdog_us: float | None, notice: bool) -> dict:
    with in_netns(lab.rx_ns):
        ksock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ksock.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE: never the bottleneck here
    ksock.bind(("0.0.0.0", PORT))
    ksock.settimeout(0.2)
    env = dict(os.environ, XDPGW_DEATH_NOTICE="1" if notice else "0")
    proc = subprocess.Popen(["ip", "netns", "exec", lab.rx_ns, "taskset", "-c", str(cpus[0]), sys.executable, "-m",
                             "xdpgw", "attach", lab.rx_if, "--port", str(PORT), "--quiet"]
                            + (["--watchdog-us", str(watchdog_us)] if watchdog_us else []),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        prog_id = int(wait_attached(lab, proc.pid)["prog_id"])  # `ip netns exec` and taskset exec: same pid
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    with in_netns(lab.tx_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect((lab.rx_ip, PORT))
    ctx = mp.get_context("fork")
    stamps_rx, stamps_tx = ctx.Pipe(duplex=False)
    snd = ctx.Process(target=sender, args=(tx, cpus[-1], 1.0, stamps_tx))
    snd.start()
    time.sleep(0.5)
    t_kill = time.monotonic_ns()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sends = stamps_rx.recv()
    snd.join()
    sent_after_kill = [t for t in sends if t >= t_kill]
    got = []
    while True:
        try:
            got.append(int.from_bytes(ksock.recv(64), "big"))
        except TimeoutError:
            break
    ksock.close()
    tx.close()
    dead_ns = death_notice_ns(prog_id)
    gone = status(lab).get("bpf_counters", {}).get("consumer_gone")
    subprocess.run(["ip", "netns", "exec", lab.rx_ns, sys.executable, "-m", "xdpgw", "detach", lab.rx_if],
                   capture_output=True)
    after = [t for t in got if t >= t_kill]
    first = min(after) if after else None
    got_set = set(got)
    lost = [t for t in sent_after_kill if t not in got_set]
    gaps = [b - a for a, b in zip(sent_after_kill, sent_after_kill[1:], strict=False)]
    return {"black_hole_us": (first - t_kill) / 1e3 if first else None, "lost_after_kill": len(lost),
            "lost_window_us": (max(lost) - t_kill) / 1e3 if lost else 0.0,
            "sent_after_kill": len(sent_after_kill), "kernel_got_after_kill": len(after),
            "sender_gap_us": max(gaps, default=0) / 1e3,
            "notice_us": (dead_ns - t_kill) / 1e3 if dead_ns else None, "consumer_gone": gone}


def sender(tx: socket.socket, cpu: int, seconds: float, out) -> None:
    """Send a packet stamped with CLOCK_MONOTONIC about every 10 µs for ``seconds``; return the stamps."""
    os.sched_setaffinity(0, {cpu})
    stamps = []
    end = time.monotonic_ns() + int(seconds * 1e9)
    while (now := time.monotonic_ns()) < end:
        tx.send(now.to_bytes(8, "big"))
        stamps.append(now)
        while time.monotonic_ns() - now < 10_000:
            pass
    out.send(stamps)


@friendly
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--watchdog-us", type=float, default=2000.0)
    ap.add_argument("--only", choices=("death_notice", "no_notice", "watchdog"), help="Run one configuration.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    require_root("bench_failover (XDP, namespaces)")
    cpus = sorted(os.sched_getaffinity(0))
    lab = Lab.unique("xgf", queues=1).up()
    results = {}
    try:
        configs = {"death_notice": (True, None), "no_notice": (False, None),
                   f"no_notice+watchdog_{args.watchdog_us:.0f}us": (False, args.watchdog_us)}
        for name, (notice, wd) in configs.items():
            if args.only and args.only != ("watchdog" if wd else name):
                continue
            rows = [one_round(lab, cpus, wd, notice) for _ in range(args.rounds)]
            results[name] = {"rounds": rows, **summary(rows)}
    finally:
        lab.down()
    if args.json:
        print(json.dumps(results))
        return
    print("after SIGKILL of the consumer (feed at ~1 packet / 10 µs), (median, max) over rounds; the first packet "
          "at the kernel comes late also when the sender itself stalls (busy machine)")
    for name, res in results.items():
        print(f"{name:26} notice {res['notice_us']} µs, lost window {res['lost_window_us']} µs, lost "
              f"{res['lost_after_kill']} packets; first packet at the kernel {res['black_hole_us']} µs")
        for r in res["rounds"]:
            notice = f"{r['notice_us']:.0f} µs" if r["notice_us"] else "-"
            print(f"{'':28}notice {notice}, lost {r['lost_after_kill']} (window {r['lost_window_us']:.0f} µs), first "
                  f"at the kernel {r['black_hole_us']:.0f} µs (sender gap {r['sender_gap_us']:.0f} µs)")


def summary(rows: list[dict]) -> dict:
    out = {}
    for key in ("black_hole_us", "lost_window_us", "notice_us", "lost_after_kill"):
        vals = [r[key] for r in rows if r[key] is not None]
        out[key] = (round(statistics.median(vals), 1), round(max(vals), 1)) if vals else None
    return out

if __name__ == "__main__":
    main()
