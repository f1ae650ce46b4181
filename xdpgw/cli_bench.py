"""`xdpgw bench`: socket vs XDP side by side in one run (see :mod:`xdpgw.bench`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xdpgw.errors import GatewayError, friendly

#: Where results go by default: a folder git ignores (.gitignore: bench-out/), made on demand.
DEFAULT_OUT = "bench-out/xdpgw-bench"


@click.command()
@click.option("--quick", is_flag=True, help="Short phases: the whole bench in under a minute.")
@click.option("--transports", default="socket,xdp-skb,xdp-drv", show_default=True,
              help="Comma-separated subset of socket, xdp-skb, xdp-drv (the socket row is the ratios' base).")
@click.option("--latency-pps", type=float, default=100_000.0, show_default=True, help="Rate of the latency phase.")
@click.option("--out", default=DEFAULT_OUT, show_default=True,
              help="Write OUT.json and OUT.png (the default folder, bench-out/, is ignored by git).")
@click.option("--no-png", is_flag=True, help="Skip the PNG (no matplotlib needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON (stdout) instead of the table.")
@friendly
def bench(quick, transports, latency_pps, out, no_png, as_json) -> None:
    """Socket vs XDP skb vs XDP drv on a veth lab: throughput, loss, ns/packet, msgs/s, latency, burst."""
    from dataclasses import replace

    from xdpgw.bench import TRANSPORTS, Plan, format_table, plot, run_bench, to_json

    kinds = tuple(t.strip() for t in transports.split(",") if t.strip())
    bad = [k for k in kinds if k not in TRANSPORTS]
    if bad or not kinds:
        raise GatewayError(f"unknown transport(s) {', '.join(bad) or '(none)'}", f"choose from {', '.join(TRANSPORTS)}")
    plan = replace(Plan.quick() if quick else Plan(), latency_pps=latency_pps)
    res = run_bench(plan, kinds, say=lambda *a: print("bench:", *a, file=sys.stderr, flush=True))
    text = to_json(res)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.json", "w") as f:
        f.write(text + "\n")
    written = [f"{out}.json"]
    if not no_png:
        written.append(plot(res, f"{out}.png"))
    click.echo(text if as_json else format_table(res))
    click.echo(f"xdpgw bench: wrote {', '.join(written)}", err=True)
