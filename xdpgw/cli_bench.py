"""`xdpgw bench`: socket vs XDP side by side in one run (see :mod:`xdpgw.bench`)."""

from __future__ import annotations

import sys

import click

from xdpgw.errors import GatewayError, friendly


@click.command()
@click.option("--quick", is_flag=True, help="Short phases: the whole bench in under a minute.")
@click.option("--transports", default="socket,xdp-skb,xdp-drv", show_default=True,
              help="Comma-separated subset of socket, xdp-skb, xdp-drv (the socket row is the ratios' base).")
@click.option("--latency-pps", type=float, default=100_000.0, show_default=True, help="Rate of the latency phase.")
@click.option("--out", default="xdpgw-bench", show_default=True, help="Write OUT.json and OUT.png.")
@click.option("--no-png", is_flag=True, help="Skip the PNG (no matplotlib needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON (stdout) instead of the table.")
@click.option("--tick-to-trade", "t2t", is_flag=True,
              help="Instead: feed tick -> order to the OUCH simulator, receive stamp -> TX stamp, per transport.")
@click.option("--rates", default="1000,10000", show_default=True, help="With --tick-to-trade: ticks per second.")
@click.option("--seconds", type=float, default=2.0, show_default=True, help="With --tick-to-trade: per rate.")
@friendly
def bench(quick, transports, latency_pps, out, no_png, as_json, t2t, rates, seconds) -> None:
    """Socket vs XDP skb vs XDP drv on a veth lab: throughput, loss, ns/packet, msgs/s, latency, burst."""
    from dataclasses import replace

    if t2t:
        _tick_to_trade(transports, rates, seconds, out, as_json)
        return

    from xdpgw.bench import TRANSPORTS, Plan, format_table, plot, run_bench, to_json

    kinds = tuple(t.strip() for t in transports.split(",") if t.strip())
    bad = [k for k in kinds if k not in TRANSPORTS]
    if bad or not kinds:
        raise GatewayError(f"unknown transport(s) {', '.join(bad) or '(none)'}", f"choose from {', '.join(TRANSPORTS)}")
    plan = replace(Plan.quick() if quick else Plan(), latency_pps=latency_pps)
    res = run_bench(plan, kinds, say=lambda *a: print("bench:", *a, file=sys.stderr, flush=True))
    text = to_json(res)
    with open(f"{out}.json", "w") as f:
        f.write(text + "\n")
    written = [f"{out}.json"]
    if not no_png:
        written.append(plot(res, f"{out}.png"))
    click.echo(text if as_json else format_table(res))
    click.echo(f"xdpgw bench: wrote {', '.join(written)}", err=True)


def _tick_to_trade(transports: str, rates: str, seconds: float, out: str, as_json: bool) -> None:
    import json

    from xdpgw.orders.tick_to_trade import format_table, run_tick_to_trade

    kinds = tuple(t.strip() for t in transports.split(",") if t.strip())
    try:
        rate_list = tuple(int(r) for r in rates.split(",") if r.strip())
    except ValueError:
        raise GatewayError(f"bad --rates {rates!r}", "give ticks per second, e.g. 1000,10000") from None
    res = run_tick_to_trade(rate_list, seconds, kinds, say=lambda *a: print("bench:", *a, file=sys.stderr, flush=True))
    text = json.dumps(res)
    with open(f"{out}-t2t.json", "w") as f:
        f.write(text + "\n")
    click.echo(text if as_json else format_table(res))
    click.echo(f"xdpgw bench: wrote {out}-t2t.json", err=True)
