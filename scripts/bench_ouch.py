#!/usr/bin/env python3
"""OUCH order path on loopback: send → ack latency against the simulator, side by side with a raw TCP
round trip of the same sizes (the floor any TCP venue has), and the encode cost per order.

The simulator runs as its own process (``xdpgw venue``), so it does not share our GIL. Rows:

* ``tcp echo``: a 54-byte write answered by a 67-byte read (Enter Order frame, Order Accepted frame)
  through a Python echo process doing the same blocking reads: the transport + scheduler floor;
* ``ouch poll(wait)``: ``OuchConnector.send`` then ``poll(timeout)`` until the Accepted (kernel wakeup);
* ``ouch busy poll``: the same, spinning on ``poll(0)`` (no sleep between reads);
* ``encode``: ``EnterOrderEncoder.frame`` (preallocated buffer) vs ``messages.encode`` (generic).

One order outstanding at a time; p50/p99/max in microseconds and each row's ratio to the echo row.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import numpy as np

from xdpgw.orders.model import Order, Side
from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch.connector import OuchConnector
from xdpgw.orders.venue import Accepted

ECHO = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
reply = bytes(67)
while True:
    got = 0
    while got < 54:
        d = c.recv(54 - got)
        if not d: sys.exit(0)
        got += len(d)
    c.sendall(reply)
"""


def pct(samples_ns: list[int]) -> tuple[float, float, float]:
    a = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def tcp_echo(n: int) -> list[int]:
    proc = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            frame, buf, out = bytes(54), bytearray(67), []
            for _ in range(n):
                t0 = time.monotonic_ns()
                s.sendall(frame)
                got = 0
                while got < 67:
                    got += s.recv_into(memoryview(buf)[got:])
                out.append(time.monotonic_ns() - t0)
            return out
    finally:
        proc.kill()
        proc.wait()


def start_venue() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "xdpgw", "venue", "--port", "0"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    line = proc.stderr.readline()
    port = int(line.split(" on ")[1].split(",")[0].rsplit(":", 1)[1])
    return proc, port


def ouch_acks(port: int, n: int, busy: bool, tag: str) -> list[int]:
    c = OuchConnector("bench", "127.0.0.1", port, user=tag, firm="BNCH")
    c.connect(5)
    c.poll(0.05)
    out = []
    try:
        for i in range(n):
            t_send = c.send(Order(f"{tag}{i}", "MSFT", Side.BUY, 100, 1 + i % 100))
            ack = None
            while ack is None:
                for ev in (c.poll(0.0) if busy else c.poll(1.0)):
                    if isinstance(ev, Accepted):
                        ack = ev
            out.append(ack.ts_ns - t_send)
    finally:
        c.close()
    return out


def encode_cost(n: int) -> tuple[float, float]:
    order = Order("H8FUB8IV", "CVLT", Side.SELL_SHORT, 225, 630_200)
    enc = m.EnterOrderEncoder(m.encode_appendage(firm="LIME"))
    t0 = time.perf_counter_ns()
    for i in range(n):
        enc.frame(order, i)
    fast = (time.perf_counter_ns() - t0) / n
    t0 = time.perf_counter_ns()
    for i in range(n):
        m.encode(m.EnterOrder(i, "T", 225, "CVLT", 630_200, "0", "Y", "A", "N", "N", "H8FUB8IV", b"\x05\x02LIME"))
    generic = (time.perf_counter_ns() - t0) / n
    return fast, generic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=5000, help="orders per row")
    args = ap.parse_args()
    n = args.orders
    print(f"send → ack on loopback, {n} orders one at a time, {os.cpu_count()} CPUs (load: {os.getloadavg()[0]:.1f})")
    rows = [("tcp echo (54 B → 67 B)", tcp_echo(n))]
    proc, port = start_venue()
    try:
        rows.append(("ouch poll(wait)", ouch_acks(port, n, False, "W")))
        rows.append(("ouch busy poll", ouch_acks(port, n, True, "B")))
    finally:
        proc.terminate()
        proc.wait(10)
    base = pct(rows[0][1])[0]
    print(f"{'row':26} {'p50 us':>8} {'p99 us':>8} {'max us':>9} {'p50 / echo':>11}")
    for name, samples in rows:
        p50, p99, mx = pct(samples)
        print(f"{name:26} {p50:8.1f} {p99:8.1f} {mx:9.1f} {p50 / base:10.2f}x")
    fast, generic = encode_cost(200_000)
    print(f"encode Enter Order: {fast:.0f} ns (preallocated pack_into) vs {generic:.0f} ns (generic encode), "
          f"{generic / fast:.1f}x")


if __name__ == "__main__":
    main()
