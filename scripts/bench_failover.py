#!/usr/bin/env python3
"""How long is the feed black-holed when the consumer is killed with SIGKILL?

On a veth lab: `xdpgw attach` consumes the feed port; a kernel UDP socket on the same port waits
behind it. A sender streams packets stamped with their CLOCK_MONOTONIC send time. We SIGKILL the
consumer at t_kill; packets then go to the kernel again once the AF_XDP socket is gone from the
XSKMAP (the program's redirect falls back to XDP_PASS). Black hole = send time of the first packet
the kernel socket gets after the kill, minus t_kill; packets sent after t_kill that nobody got are
counted as lost (they were in the dead socket's RX ring).

    sudo .venv/bin/python scripts/bench_failover.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from xdpgw.lab import Lab, in_netns

PORT = 9001


def wait_attached(lab: Lab, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["ip", "netns", "exec", lab.rx_ns, sys.executable, "-m", "xdpgw", "status", lab.rx_if,
                            "--json"], capture_output=True, text=True)
        if r.returncode == 0 and json.loads(r.stdout).get("consumer", {}).get("consumer_alive"):
            return
        time.sleep(0.1)
    raise SystemExit("bench_failover: xdpgw attach did not come up")


def one_round(lab: Lab, cpus: list[int], watchdog_us: float | None) -> dict:
    with in_netns(lab.rx_ns):
        ksock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ksock.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE: never the bottleneck here
    ksock.bind(("0.0.0.0", PORT))
    ksock.settimeout(0.2)
    proc = subprocess.Popen(["ip", "netns", "exec", lab.rx_ns, "taskset", "-c", str(cpus[0]), sys.executable, "-m",
                             "xdpgw", "attach", lab.rx_if, "--port", str(PORT), "--quiet"]
                            + (["--watchdog-us", str(watchdog_us)] if watchdog_us else []),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_attached(lab)
    with in_netns(lab.tx_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect((lab.rx_ip, PORT))
    stop = threading.Event()
    sent_after_kill: list[int] = []
    t_kill = [0]

    def sender() -> None:
        os.sched_setaffinity(0, {cpus[-1]})
        while not stop.is_set():
            now = time.monotonic_ns()
            tx.send(now.to_bytes(8, "big"))
            if t_kill[0] and now >= t_kill[0]:
                sent_after_kill.append(now)
            t0 = time.perf_counter_ns()
            while time.perf_counter_ns() - t0 < 10_000:  # ~one packet per 10 µs
                pass

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    time.sleep(0.5)
    t_kill[0] = time.monotonic_ns()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    stop.set()
    th.join()
    got = []
    while True:
        try:
            got.append(int.from_bytes(ksock.recv(64), "big"))
        except TimeoutError:
            break
    ksock.close()
    tx.close()
    subprocess.run(["ip", "netns", "exec", lab.rx_ns, sys.executable, "-m", "xdpgw", "detach", lab.rx_if],
                   capture_output=True)
    after = [t for t in got if t >= t_kill[0]]
    first = min(after) if after else None
    got_set = set(got)
    lost = sum(1 for t in sent_after_kill if t not in got_set)
    return {"black_hole_us": (first - t_kill[0]) / 1e3 if first else None, "lost_after_kill": lost,
            "sent_after_kill": len(sent_after_kill), "kernel_got_after_kill": len(after)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--watchdog-us", type=float, default=2000.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_failover: needs root: sudo .venv/bin/python scripts/bench_failover.py")
    cpus = sorted(os.sched_getaffinity(0))
    lab = Lab("xgwfail", queues=1).up()
    results = {}
    try:
        for wd in (None, args.watchdog_us):
            rows = [one_round(lab, cpus, wd) for _ in range(args.rounds)]
            holes = [r["black_hole_us"] for r in rows if r["black_hole_us"] is not None]
            results["watchdog_%s" % (f"{wd:.0f}us" if wd else "off")] = {
                "rounds": rows, "black_hole_us_median": statistics.median(holes) if holes else None,
                "black_hole_us_max": max(holes) if holes else None}
    finally:
        lab.down()
    if args.json:
        print(json.dumps(results))
        return
    print("black hole after SIGKILL of the consumer (feed at ~1 packet / 10 µs)")
    for name, res in results.items():
        print(f"{name:16} median {res['black_hole_us_median']} µs, max {res['black_hole_us_max']} µs; rounds: "
              + ", ".join(f"{r['black_hole_us']} µs ({r['lost_after_kill']} lost)" for r in res["rounds"]))


if __name__ == "__main__":
    main()
