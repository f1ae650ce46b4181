#!/usr/bin/env python3
"""Receive capacity, side by side in one run: kernel socket vs XDP skb vs XDP drv (64-byte frames).

Method (the consumer is what is measured, not the generator): on a fresh veth lab, N packets are
pre-queued while the consumer is paused (large AF_XDP RX ring / large SO_RCVBUF) by a sender process
on the other core; then the consumer, pinned to its own core, drains them and is timed. Each row
reports queued/drained packets, packets/s, consumer ns/packet and the ratio to the socket row.

    sudo .venv/bin/python scripts/bench_rx.py [--packets 131072] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from xdpgw.errors import friendly
from xdpgw.kernel.features import require_root
from xdpgw.tools.lab import Lab, in_netns

PORT = 9001
PAYLOAD = 22  # 14 Ethernet + 20 IPv4 + 8 UDP + 22 = 64-byte frames


def send(lab: Lab, n: int, cpu: int) -> None:
    code = (
        "from xdpgw.transport.socket import SocketSender; from xdpgw.batch import Batch\n"
        f"b = Batch.from_payloads([i.to_bytes(8, 'big') + bytes({PAYLOAD - 8}) for i in range(1024)])\n"
        f"left = {n}\n"
        f"with SocketSender('{lab.rx_ip}', {PORT}) as tx:\n"
        "    while left > 0:\n"
        "        part = b.slice(0, left)\n"
        "        left -= tx.send_batch(part)\n"
    )
    subprocess.run(["ip", "netns", "exec", lab.tx_ns, "taskset", "-c", str(cpu), sys.executable, "-c", code],
                   check=True)


def drain(rx, want: int, burst: int) -> tuple[int, float]:
    got = 0
    idle_since = None
    t0 = time.perf_counter_ns()
    while got < want:
        b = rx.recv_batch(burst)
        if b.count:
            got += b.count
            b.lengths[: b.count].sum()  # touch the batch as a minimal consumer would
            idle_since = None
        elif idle_since is None:
            idle_since = time.perf_counter_ns()
        elif time.perf_counter_ns() - idle_since > 200e6:
            break
    end = idle_since if (idle_since is not None and got < want) else time.perf_counter_ns()
    return got, (end - t0) / 1e9


def queued(rx, kind: str) -> int:
    st = rx.stats()
    return st["bpf_redirected"] - st["drops"] if kind != "socket" else -1


def measure(lab: Lab, kind: str, n: int, burst: int, cpu_rx: int, cpu_tx: int) -> dict:
    os.sched_setaffinity(0, {cpu_rx})
    with in_netns(lab.rx_ns):
        if kind == "socket":
            from xdpgw.transport.socket import SocketReceiver

            rx = SocketReceiver(PORT, rcvbuf=1 << 30, batch=burst)
        else:
            from xdpgw.transport.xdp.rx import XdpReceiver

            size = 1 << (n - 1).bit_length()
            rx = XdpReceiver(lab.rx_if, 0, [PORT], mode=kind.split("-")[1], frames=2 * size, rx_size=size,
                             batch=burst)
    with rx:
        send(lab, n, cpu_tx)
        time.sleep(0.3)
        want = queued(rx, kind) if kind != "socket" else n - rx.stats()["drops"]
        got, secs = drain(rx, want if want > 0 else n, burst)
        st = rx.stats()
    return {"transport": kind, "sent": n, "queued": want, "drained": got, "seconds": secs,
            "pps": got / secs if secs else 0.0, "ns_per_packet": secs * 1e9 / got if got else 0.0,
            "drops": st.get("drops", 0)}


@friendly
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=131072)
    ap.add_argument("--rounds", type=int, default=3, help="best of N rounds per transport")
    ap.add_argument("--burst", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    require_root("bench_rx (XDP, namespaces)")
    cpus = sorted(os.sched_getaffinity(0))
    cpu_rx, cpu_tx = cpus[0], cpus[-1]
    lab = Lab.unique("xgr", queues=1).up()
    rows = []
    try:
        for kind in ("socket", "xdp-skb", "xdp-drv"):
            best = max((measure(lab, kind, args.packets, args.burst, cpu_rx, cpu_tx) for _ in range(args.rounds)),
                       key=lambda r: r["pps"])
            rows.append(best)
    finally:
        lab.down()
    base = rows[0]["pps"] or 1.0
    for r in rows:
        r["ratio_vs_socket"] = r["pps"] / base
    if args.json:
        print(json.dumps({"rows": rows}))
        return
    print(f"receive capacity, 64-byte frames, {args.packets} pre-queued, burst {args.burst}, "
          f"consumer on CPU {cpu_rx}, sender on CPU {cpu_tx}, best of {args.rounds}")
    print(f"{'transport':10} {'queued':>9} {'drained':>9} {'Mpps':>8} {'ns/pkt':>8} {'vs socket':>10}")
    for r in rows:
        print(f"{r['transport']:10} {r['queued']:>9} {r['drained']:>9} {r['pps'] / 1e6:>8.2f} "
              f"{r['ns_per_packet']:>8.1f} {r['ratio_vs_socket']:>9.2f}x")


if __name__ == "__main__":
    main()
