#!/usr/bin/env python3
"""send → ack latency per venue protocol on loopback, side by side in one run.

Each venue runs in its own process (the FIX executor on a QuickFIX acceptor; the OUCH simulator
``xdpgw venue`` when this checkout has it); this process holds one connector per venue and, taking
turns between venues order by order (so load on the shared machine hits both alike), sends a resting
limit order and polls until its ack: ``--orders`` per venue, one in flight. Then a burst: ``--burst``
orders back to back, each one's send → ack. Prints p50/p90/p99/max in µs and each row's ratio to the
first row's p50; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xdpgw.orders.fix.acceptor import free_port
from xdpgw.orders.model import Order, Side, price_to_ticks
from xdpgw.orders.venue import Accepted, Connector, connect_url


@contextlib.contextmanager
def fix_venue(tmp: Path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "xdpgw.orders.fix.acceptor", "--port", str(port),
                             "--ref", "AAPL=190", "--dir", str(tmp / "venue")], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # its URL: it listens
        yield f"fix://127.0.0.1:{port}?sender=XDPGW&target=VENUE&dir={tmp / 'us'}"
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def ouch_venue(tmp: Path):
    """The OUCH simulator as a subprocess, when this checkout has it (None otherwise)."""
    try:
        import xdpgw.orders.ouch  # noqa: F401
    except ImportError:
        return None
    return _ouch_venue(tmp)


@contextlib.contextmanager
def _ouch_venue(tmp: Path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "xdpgw.cli.main", "venue", "--port", str(port)],
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), __import__("socket").create_connection(("127.0.0.1", port)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the OUCH simulator did not start listening")
            time.sleep(0.05)
        yield f"ouch://127.0.0.1:{port}?user=U1"
    finally:
        proc.terminate()
        proc.wait(10)


def wait_ack(conn: Connector, pending: set[str], acks: dict[str, int]) -> None:
    while pending:
        for ev in conn.poll(0.5):
            if isinstance(ev, Accepted) and ev.cl_ord_id in pending:
                pending.discard(ev.cl_ord_id)
                acks[ev.cl_ord_id] = ev.ts_ns


def run(conns: dict[str, Connector], n: int, burst: int) -> dict[str, dict[str, list[float]]]:
    out = {name: {"one": [], "burst": []} for name in conns}
    price = price_to_ticks("150")  # below the reference: every order rests
    for i in range(n):  # one in flight, venues taking turns
        for k, (name, conn) in enumerate(conns.items()):
            order = Order(f"L{k}{i:09d}", "AAPL", Side.BUY, 100, price)
            acks: dict[str, int] = {}
            sent = conn.send(order)
            wait_ack(conn, {order.cl_ord_id}, acks)
            out[name]["one"].append((acks[order.cl_ord_id] - sent) / 1e3)
    for k, (name, conn) in enumerate(conns.items()):
        orders = [Order(f"B{k}{i:09d}", "AAPL", Side.BUY, 100, price) for i in range(burst)]
        sent = {o.cl_ord_id: conn.send(o) for o in orders}
        acks = {}
        wait_ack(conn, set(sent), acks)
        out[name]["burst"] = [(acks[c] - t) / 1e3 for c, t in sent.items()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xdpgw-bench-venues-") as tmp, contextlib.ExitStack() as stack:
        urls = {"fix": stack.enter_context(fix_venue(Path(tmp)))}
        ouch = ouch_venue(Path(tmp))
        if ouch is not None:
            urls["ouch"] = stack.enter_context(ouch)
        else:
            print("(no OUCH connector in this checkout: FIX only)")
        conns = {}
        for name, url in urls.items():
            conns[name] = stack.enter_context(contextlib.closing(connect_url(url, name=name)))
            conns[name].connect(timeout=10)
        figures = run(conns, args.orders, args.burst)
    print(f"{'venue':6} {'mode':6} {'n':>6} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'max µs':>9} {'p50 ratio':>9}")
    table = []
    for mode in ("one", "burst"):
        base = None  # the first venue's p50 in this mode
        for name, runs in figures.items():
            a = np.asarray(runs[mode])
            p50, p90, p99 = (float(x) for x in np.percentile(a, [50, 90, 99]))
            base = base or p50
            table.append({"venue": name, "mode": mode, "n": len(a), "p50_us": p50, "p90_us": p90, "p99_us": p99,
                          "max_us": float(a.max()), "ratio_p50": p50 / base})
            print(f"{name:6} {mode:6} {len(a):6d} {p50:9.1f} {p90:9.1f} {p99:9.1f} {a.max():9.1f} {p50 / base:9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
