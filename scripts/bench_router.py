#!/usr/bin/env python3
"""Router cost per order, no I/O: risk + route + OUCH encode, one order at a time vs the batch API.

Rows, side by side (every risk check switched on, limits loose enough that every order passes):
  scalar risk+route+encode   RiskEngine.accept + RoutingTable.legs + ouch EnterOrderEncoder.frame,
                             each order timed alone (p50/p99) and the loop's mean
  scalar Router.submit       the whole submit path (records, throttle, connector.send that only
                             encodes) — what an application calling submit() pays per order
  batch plan_batch           OrderBatch columns → risk + route + encoded frames per venue
  batch Router.submit_batch  plan_batch + records + the frames encoded from the columns (send_rows)
  wire Router.submit         submit to a real OUCH session on loopback (`xdpgw venue`): + the send(2)
  wire Router.submit_batch   submit_batch to it: one write per batch (--no-wire skips the wire rows)
  wire paced N/s             a strategy's order path at N orders/s, spinning in between as a feed
                             consumer does: Order() + submit + poll, entry -> the kernel's TX stamp
                             (p50/p99; tick-to-trade without the feed side)

Targets (issue 12): p50 ≤ 2 µs per order on the scalar path, ≥ 1 M orders/s on the batch API.
Usage: .venv/bin/python scripts/bench_router.py [--orders N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xdpgw.orders.batch import ENTER_ORDER, OrderBatch, encode_enter_orders, plan_batch  # noqa: E402
from xdpgw.orders.model import PRICE_SCALE, Order, Side  # noqa: E402
from xdpgw.orders.ouch.messages import EnterOrderEncoder  # noqa: E402
from xdpgw.orders.risk import RiskEngine, RiskLimits  # noqa: E402
from xdpgw.orders.router import Router  # noqa: E402
from xdpgw.orders.routing import RoutingTable, VenueShare  # noqa: E402

SYMBOLS = [f"S{i:03d}" for i in range(100)]


class EncodeOnly:
    """A connector that encodes each order (the OUCH Enter Order frame, or a batch's frames from its
    columns) and sends nothing."""

    name = "v"
    connected = True

    def __init__(self) -> None:
        self.enc, self.ref = EnterOrderEncoder(), 1
        self.frames = np.empty(0, ENTER_ORDER)

    def send(self, order: Order) -> int:
        self.enc.frame(order, self.ref)
        self.ref += 1
        return 0

    def send_batch(self, orders: list[Order]) -> int:
        self.enc.frames(orders, self.ref)
        self.ref += len(orders)
        return 0

    def send_rows(self, batch: OrderBatch, rows: list[int], orders: list[Order]) -> int:
        if len(self.frames) < len(rows):
            self.frames = np.empty(len(rows), ENTER_ORDER)
        encode_enter_orders(batch, np.asarray(rows, np.intp), self.ref, out=self.frames)
        self.ref += len(rows)
        return 0

    def poll(self, timeout: float = 0.0) -> list:
        return []

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def limits() -> RiskLimits:
    return RiskLimits(max_qty=10**6, max_notional=10**15, collar_pct=10,
                      reference_prices={s: 100 * PRICE_SCALE for s in SYMBOLS}, max_open_per_symbol=10**9,
                      max_gross_per_symbol=10**18, max_gross_total=10**19, max_position=10**12,
                      restricted=frozenset({"XXX"}))


def orders(n: int) -> list[Order]:
    return [Order(f"O{i}", SYMBOLS[i % 100], Side.BUY if i % 2 else Side.SELL, 100 + (i % 5) * 100,
                  100 * PRICE_SCALE + (i % 50)) for i in range(n)]


def _timed(fn, n: int) -> dict:
    """Run ``fn`` once; its wall and CPU (thread) time per order, and orders/s by each."""
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    fn()
    wall, cpu = time.perf_counter_ns() - w0, time.thread_time_ns() - c0
    return {"mean_ns": wall / n, "orders_per_s": n / wall * 1e9, "cpu_ns": cpu / n, "orders_per_cpu_s": n / cpu * 1e9}


def scalar(os_: list[Order]) -> dict:
    risk, table, enc = RiskEngine(limits()), RoutingTable(default=(VenueShare("v"),)), EnterOrderEncoder()
    live = frozenset({"v"})
    pc = time.perf_counter_ns
    ts = np.empty(len(os_), np.int64)

    def run() -> None:
        for i, o in enumerate(os_):
            t0 = pc()
            legs = table.legs(o, live)
            if risk.accept(o, 0, len(legs)) is None:
                for _, child in legs:
                    enc.frame(child, i)
            ts[i] = pc() - t0

    out = _timed(run, len(os_))
    return {"p50_ns": float(np.percentile(ts, 50)), "p99_ns": float(np.percentile(ts, 99)), **out}


def scalar_router(os_: list[Order]) -> dict:
    r = Router([EncodeOnly()], risk=RiskEngine(limits()), clock=lambda: 0)
    pc = time.perf_counter_ns
    ts = np.empty(len(os_), np.int64)

    def run() -> None:
        for i, o in enumerate(os_):
            t0 = pc()
            r.submit(o)
            ts[i] = pc() - t0

    out = _timed(run, len(os_))
    return {"p50_ns": float(np.percentile(ts, 50)), "p99_ns": float(np.percentile(ts, 99)), **out}


def batch_plan(b: OrderBatch, reps: int) -> dict:
    """``reps`` batches, each on a fresh engine: the median run."""
    runs = []
    for _ in range(reps):
        risk, table = RiskEngine(limits()), RoutingTable(default=(VenueShare("v"),))
        runs.append(_timed(lambda: plan_batch(b, risk, table, frozenset({"v"})), len(b)))  # noqa: B023
    runs.sort(key=lambda r: r["cpu_ns"])
    return runs[len(runs) // 2]


def batch_router(b: OrderBatch) -> dict:
    r = Router([EncodeOnly()], risk=RiskEngine(limits()), clock=lambda: 0)
    return _timed(lambda: r.submit_batch(b), len(b))


def wire_router(port: int, user: str, tx: bool = False) -> Router:
    from xdpgw.orders.ouch.connector import OuchConnector

    r = Router([OuchConnector("v", "127.0.0.1", port, user=user, tx_timestamps=tx)], risk=RiskEngine(limits()))
    r.connect()
    return r


def wire_paced(port: int, user: str, rate: int, n: int) -> dict:
    """One order per 1/rate s (busy-waiting in between, as the feed consumer spins): strategy entry
    (before the Order is made) -> the order's TX software stamp, and the router's poll after it."""
    from xdpgw.orders.model import Tif

    r = wire_router(port, user, tx=True)
    conn = r.connectors["v"]
    conn.tx_stamps()  # the login's
    mono, gap = time.monotonic_ns, 1_000_000_000 // rate
    entry: dict[int, int] = {}
    stamps: list[tuple[int, int]] = []
    try:
        nxt = mono()
        for i in range(n):
            nxt += gap
            while mono() < nxt:
                pass
            t_in = mono()
            (rec,) = r.submit(Order(f"P{i}", "S001", Side.BUY, 100, 100 * PRICE_SCALE, Tif.IOC))
            entry[rec.send_ns] = t_in
            r.poll(0)
            if i % 32 == 31:
                stamps += conn.tx_stamps()
        end = time.monotonic() + 2
        while len(stamps) < n and time.monotonic() < end:
            r.poll(0.01)
            stamps += conn.tx_stamps()
    finally:
        r.close()
    lat = np.array([st - entry[sent] for sent, st in stamps if sent in entry])
    return {"p50_ns": float(np.percentile(lat, 50)), "p99_ns": float(np.percentile(lat, 99)), "stamped": len(lat),
            "mean_ns": float(lat.mean()), "orders_per_s": float(rate), "cpu_ns": float("nan"),
            "orders_per_cpu_s": float("nan")}


def wire_scalar(port: int, os_: list[Order]) -> dict:
    """submit one by one to the venue (a poll every 64 orders takes its acks in, untimed)."""
    r = wire_router(port, "W1")
    pc = time.perf_counter_ns
    ts = np.empty(len(os_), np.int64)
    try:
        def run() -> None:
            for i, o in enumerate(os_):
                t0 = pc()
                r.submit(o)
                ts[i] = pc() - t0
                if i % 64 == 63:
                    r.poll(0)

        out = _timed(run, len(os_))
        assert r.summary()["sent"] == len(os_)
    finally:
        r.close()
    return {"p50_ns": float(np.percentile(ts, 50)), "p99_ns": float(np.percentile(ts, 99)), **out}


def wire_batch(port: int, b: OrderBatch) -> dict:
    r = wire_router(port, "W2")
    try:
        out = _timed(lambda: r.submit_batch(b), len(b))
        st = r.summary()
        assert st["sent"] == len(b) and st["venues"]["v"].get("writes", 2) == 2  # the login, then the batch
    finally:
        r.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=200_000, help="orders per scalar run")
    ap.add_argument("--batch", type=int, default=65_536, help="rows per batch")
    ap.add_argument("--reps", type=int, default=15, help="batches (the median is reported)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-wire", action="store_true", help="skip the rows that send to a venue on loopback")
    a = ap.parse_args()
    os_ = orders(max(a.orders, a.batch))
    b = OrderBatch.from_orders(os_[:a.batch])
    assert len(plan_batch(b, RiskEngine(limits()), RoutingTable(default=(VenueShare("v"),)),
                          frozenset({"v"})).frames["v"]) == len(b)  # every row passes (and warms up)
    gc.collect()
    gc.disable()
    try:
        rows = {
            "scalar risk+route+encode": scalar(os_[:a.orders]),
            "scalar Router.submit": scalar_router(os_[:a.orders]),
            "batch plan_batch": batch_plan(b, a.reps),
            "batch Router.submit_batch": batch_router(OrderBatch.from_orders(os_[:a.orders])),
        }
        if not a.no_wire:
            from xdpgw.orders.tick_to_trade import start_venue

            venue, port = start_venue()
            try:
                rows["wire Router.submit"] = wire_scalar(port, os_[:min(a.orders, 20_000)])
                rows["wire Router.submit_batch"] = wire_batch(port, b)
                for k, rate in enumerate((1_000, 10_000)):
                    rows[f"wire paced {rate // 1000}k/s -> TX"] = wire_paced(port, f"T{k}", rate, rate * 2)
            finally:
                venue.terminate()
                venue.wait()
                venue.stderr.close()
    finally:
        gc.enable()
    base = rows["scalar risk+route+encode"]["orders_per_cpu_s"]
    for r in rows.values():
        r["ratio_to_scalar"] = r["orders_per_cpu_s"] / base
    res = {"load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count(), "rows": rows,
           "targets": {"scalar_p50_ns": 2000, "batch_orders_per_s": 1_000_000}}
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"router cost per order, no I/O (load average {res['load_avg_1m']:.1f} on {res['cpus']} CPUs)")
    print(f"{'path':28} {'p50 ns':>8} {'p99 ns':>8} {'wall ns':>8} {'cpu ns':>8} {'orders/s wall':>14}"
          f" {'orders/cpu-s':>13} {'x scalar':>9}")
    for name, r in rows.items():
        p50 = f"{r['p50_ns']:.0f}" if "p50_ns" in r else "-"
        p99 = f"{r['p99_ns']:.0f}" if "p99_ns" in r else "-"
        print(f"{name:28} {p50:>8} {p99:>8} {r['mean_ns']:8.0f} {r['cpu_ns']:8.0f} {r['orders_per_s']:14,.0f}"
              f" {r['orders_per_cpu_s']:13,.0f} {r['ratio_to_scalar']:9.2f}")
    print("per order; orders/cpu-s: by the thread's CPU time (what it costs, whatever the machine's load);"
          " x scalar: by CPU time")
    print("targets: scalar p50 <= 2000 ns; batch >= 1,000,000 orders/s")


if __name__ == "__main__":
    main()
