"""`xdpgw bench --tick-to-trade`: a feed tick on the lab triggers an order to the OUCH simulator.

On a veth lab made on the spot, `xdpgw blast` (the bench's generator, its own process on one CPU) sends
one-message MoldUDP64/ITCH packets at a paced rate; the consumer (this process, the other CPU) runs the
real pipeline — receiver → Gateway → FeedHandler → the strategy hook — and the strategy sends one IOC
order per packet through the :class:`~xdpgw.orders.router.Router` (risk, routing, throttle) and the
OUCH connector to `xdpgw venue` (its own process, loopback). Tick-to-trade per order is the packet's
receive stamp (XDP metadata stamp for XDP, SO_TIMESTAMPING software stamp for the kernel socket; both
CLOCK_MONOTONIC) to the kernel's TX software stamp of the write that carried the order (SO_TIMESTAMPING
on the order socket). Every transport runs the same strategy at each rate, side by side.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time

import numpy as np

from xdpgw.errors import GatewayError
from xdpgw.orders.model import Order, Side, Tif
from xdpgw.pipeline.histogram import LatencyHistogram

RATES = (1_000, 10_000)


class TickToTrade:
    """The bench's strategy: one IOC buy per received packet; notes (send time, rx stamp) pairs."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.sent: list[tuple[int, int, np.ndarray]] = []  # (send time, strategy entry, rx stamps)
        self.stamps: list[tuple[int, int]] = []  # (send time, TX stamp)
        self.calls = 0

    def __call__(self, decoded, ctx) -> None:
        t_in = time.monotonic_ns()
        rx = ctx.rx_ns
        if not len(rx):
            return
        n = len(rx)
        if n == 1:  # the usual case at these rates: the router's one-order hot path
            recs = ctx.router.submit(Order(f"T{next(self.ids)}", "XDPT", Side.BUY, 100, 1_0000, Tif.IOC))
        else:  # a burst: one write for all of them
            recs = ctx.router.submit_many([Order(f"T{next(self.ids)}", "XDPT", Side.BUY, 100, 1_0000, Tif.IOC)
                                           for _ in range(n)])
        if recs and recs[0].send_ns:
            self.sent.append((recs[0].send_ns, t_in, rx.copy()))
        self.calls += 1
        if not self.calls % 32:  # the TX stamps wait in the socket's error queue (the router's poll reads them too)
            self.stamps += next(iter(ctx.router.connectors.values())).tx_stamps()


def start_venue(cpu: int | None = None) -> tuple[subprocess.Popen, int]:
    """`xdpgw venue --port 0` in its own process (on ``cpu``: off the consumer's); returns it and its port."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    p = subprocess.Popen([*pin, sys.executable, "-m", "xdpgw", "venue", "--port", "0", "--heartbeat", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    m = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        p.wait()
        p.stderr.close()
        raise GatewayError(f"the venue simulator did not start ({line.strip() or 'no output'})",
                           "try `xdpgw venue --port 0` on its own")
    return p, int(m.group(1))


def run_rate(rx, gen, venue_port: int, rate: int, seconds: float, user: str) -> dict:
    from xdpgw.orders.ouch.connector import OuchConnector
    from xdpgw.orders.router import Router
    from xdpgw.orders.strategy import StrategyHandler
    from xdpgw.pipeline.feed import FeedHandler
    from xdpgw.tools.bench import run_phase

    conn = OuchConnector("sim", "127.0.0.1", venue_port, user=user, tx_timestamps=True)
    router = Router([conn])
    strat = TickToTrade()
    try:
        router.connect()
        conn.tx_stamps()  # the login's
        handler = StrategyHandler(strat, router)
        phase = run_phase(rx, FeedHandler(lines=1), gen, {"op": "paced", "size": "small", "pps": rate,
                                                          "seconds": seconds},
                          probe=False, handlers=(handler,))
        end = time.monotonic() + 2.0
        while time.monotonic() < end and not router.settled():
            router.poll(0.01)
        strat.stamps += conn.tx_stamps()
        summary = router.summary()
    finally:
        router.close()
    t2t, pipeline, router_ns, kernel = (LatencyHistogram() for _ in range(4))
    stamp_of = dict(strat.stamps)
    stamped = 0
    for send_ns, t_in, rxs in strat.sent:
        pipeline.record_many(t_in - rxs)
        router_ns.record_many(np.full(len(rxs), send_ns - t_in))
        stamp = stamp_of.get(send_ns)
        if stamp is not None:
            t2t.record_many(stamp - rxs)
            kernel.record(stamp - send_ns)
            stamped += len(rxs)
    return {"rate": rate, "packets": phase["received"], "orders": summary["sent"], "stamped": stamped,
            "orders_per_write": round(summary["sent"] / max(1, len(strat.sent)), 2),
            "acked": summary["acked"], "t2t": t2t, "tick_to_strategy": pipeline, "strategy_to_send": router_ns,
            "send_to_tx_stamp": kernel}


def _lat(h: LatencyHistogram) -> dict[str, int]:
    p = h.percentiles()
    return {k: int(p[k]) for k in ("count", "p50", "p90", "p99", "max")}


def run_tick_to_trade(rates=RATES, seconds: float = 2.0, transports=("socket", "xdp-drv"), say=lambda *a: None) -> dict:
    """Every transport × rate on a fresh lab (removed afterwards, also on errors); rows as a dict."""
    from xdpgw.tools.bench import PORT, bench_lab, open_receiver

    venue = None
    rows = []
    load = [os.getloadavg()[0]]  # the machine's load beside the figures (others' work moves them)
    with bench_lab("xgt", {"small": 1}, say) as (lab, gen, cpus):
        say(f"venue on CPU {cpus['generator']}, consumer + strategy on CPU {cpus['consumer']}; feed port {PORT}")
        try:
            venue, port = start_venue(cpus["generator"])
            users = (f"U{i}" for i in itertools.count(1))  # a fresh OUCH account per run (UserRefNums from 1)
            for kind in transports:
                with open_receiver(kind, lab) as rx:
                    for rate in rates:
                        say(f"{kind}: {rate} ticks/s for {seconds:g} s")
                        r = run_rate(rx, gen, port, rate, seconds, next(users))
                        rows.append({"transport": kind, "rate": rate, "packets": r["packets"], "orders": r["orders"],
                                     "orders_per_write": r["orders_per_write"],
                                     "stamped": r["stamped"], "acked": r["acked"],
                                     "tick_to_trade_ns": _lat(r["t2t"]),
                                     **{f"{k}_ns": _lat(r[k]) for k in ("tick_to_strategy", "strategy_to_send",
                                                                         "send_to_tx_stamp")}})
        finally:
            if venue is not None:
                venue.terminate()
                try:
                    venue.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    venue.kill()
                    venue.wait()
                venue.stderr.close()
    load.append(os.getloadavg()[0])
    base = {r["rate"]: r for r in rows if r["transport"] == "socket"}
    for r in rows:
        b = base.get(r["rate"])
        p50 = r["tick_to_trade_ns"]["p50"]
        r["p50_vs_socket"] = round(p50 / b["tick_to_trade_ns"]["p50"], 2) if b and b["tick_to_trade_ns"]["p50"] else None
    return {"rows": rows, "seconds": seconds, "cpus": cpus, "lab": lab.name, "load_1min": load,
            "targets_ns": {"p50": 20_000, "p99": 50_000}}


def format_table(res: dict) -> str:
    load = res.get("load_1min") or [0.0, 0.0]
    out = [f"tick-to-trade: feed packet receive stamp -> order's kernel TX stamp (µs); load (1 min) {load[0]:.2f} -> "
           f"{load[1]:.2f}",
           f"{'transport':10} {'ticks/s':>8} {'orders':>7} {'stamped':>8} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"
           f" {'x socket':>8} | p50 of: {'rx->strategy':>12} {'router':>7} {'send->TX':>8} | orders/write"]
    for r in res["rows"]:
        t = r["tick_to_trade_ns"]
        ratio = r["p50_vs_socket"]
        parts = [r[k]["p50"] / 1e3 for k in ("tick_to_strategy_ns", "strategy_to_send_ns", "send_to_tx_stamp_ns")]
        out.append(f"{r['transport']:10} {r['rate']:8} {r['orders']:7} {r['stamped']:8} {t['p50'] / 1e3:8.1f}"
                   f" {t['p90'] / 1e3:8.1f} {t['p99'] / 1e3:8.1f} {t['max'] / 1e3:8.1f}"
                   f" {ratio if ratio is not None else '-':>8} |         {parts[0]:12.1f} {parts[1]:7.1f} {parts[2]:8.1f}"
                   f" | {r['orders_per_write']:12}")
    out.append("targets: p50 < 20 µs, p99 < 50 µs (router = strategy entry -> the batch's orders written, one write"
               " per feed batch: a consumer that falls behind gets many packets per batch, and the router time grows)")
    return "\n".join(out)
