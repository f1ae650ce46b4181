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
@click.option("--latency", "latency_only", is_flag=True,
              help="Only the latency table: bare C loop, counting, decoding (drv, skb, socket) x 1k/10k/100k pps "
                   "x 1/25 msgs per frame (about a minute).")
@click.option("--latency-s", type=float, default=1.0, show_default=True, help="Seconds per latency row.")
@friendly
def bench(quick, transports, latency_pps, out, no_png, as_json, latency_only, latency_s) -> None:
    """Socket vs XDP skb vs XDP drv on a veth lab: throughput, loss, ns/packet, msgs/s, latency, burst;
    then the latency table (``--latency``: that table alone)."""
    from dataclasses import replace

    from xdpgw.bench import TRANSPORTS, Plan, format_table, plot, run_bench, to_json

    say = lambda *a: print("bench:", *a, file=sys.stderr, flush=True)  # noqa: E731
    if latency_only:
        _latency(out, no_png, as_json, latency_s, say)
        return

    kinds = tuple(t.strip() for t in transports.split(",") if t.strip())
    bad = [k for k in kinds if k not in TRANSPORTS]
    if bad or not kinds:
        raise GatewayError(f"unknown transport(s) {', '.join(bad) or '(none)'}", f"choose from {', '.join(TRANSPORTS)}")
    plan = replace(Plan.quick() if quick else Plan(), latency_pps=latency_pps)
    res = run_bench(plan, kinds, say=say)
    text = to_json(res)
    with open(f"{out}.json", "w") as f:
        f.write(text + "\n")
    written = [f"{out}.json"]
    if not no_png:
        written.append(plot(res, f"{out}.png"))
    click.echo(text if as_json else format_table(res))
    click.echo(f"xdpgw bench: wrote {', '.join(written)}", err=True)
    _latency(f"{out}-latency", no_png, as_json, latency_s, say)


def _latency(out: str, no_png: bool, as_json: bool, seconds: float, say) -> None:
    from xdpgw.bench import (
        format_latency_table,
        format_pipeline_cost,
        pipeline_cost,
        plot_latency,
        run_latency_bench,
        to_json,
    )

    res = run_latency_bench(seconds, say=say)
    res["pipeline_cost"] = pipeline_cost()
    text = to_json({**res, "latency_rows": [{k: v for k, v in r.items() if not k.startswith("_")}
                                            for r in res["latency_rows"]]})
    with open(f"{out}.json", "w") as f:
        f.write(text + "\n")
    written = [f"{out}.json"]
    if not no_png:
        written.append(plot_latency(res, f"{out}.png"))
    click.echo(text if as_json else format_latency_table(res) + "\n\n" + format_pipeline_cost(res["pipeline_cost"]))
    click.echo(f"xdpgw bench: wrote {', '.join(written)}", err=True)
