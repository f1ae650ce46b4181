"""`xdpgw bench`: socket vs XDP side by side in one run (see :mod:`xdpgw.tools.bench`)."""

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
@click.option("--latency", "latency_only", is_flag=True,
              help="Only the latency table: bare C loop, counting, decoding (drv, skb, socket) x 1k/10k/100k pps "
                   "x 1/25 msgs per frame (about a minute).")
@click.option("--latency-s", type=float, default=1.0, show_default=True, help="Seconds per latency row.")
@click.option("--tick-to-trade", "t2t", is_flag=True,
              help="Instead: feed tick -> order to the OUCH simulator, receive stamp -> TX stamp, per transport.")
@click.option("--rates", default="1000,10000", show_default=True, help="With --tick-to-trade: ticks per second.")
@click.option("--seconds", type=float, default=2.0, show_default=True, help="With --tick-to-trade: per rate.")
@friendly
def bench(quick, transports, latency_pps, out, no_png, as_json, latency_only, latency_s, t2t, rates,
          seconds) -> None:
    """Socket vs XDP skb vs XDP drv on a veth lab: throughput, loss, ns/packet, msgs/s, latency, burst;
    then (not with --quick) the latency table (``--latency``: that table alone; ``--tick-to-trade``:
    feed tick → order instead)."""
    from dataclasses import replace

    say = lambda *a: print("bench:", *a, file=sys.stderr, flush=True)  # noqa: E731
    if t2t:
        _tick_to_trade(transports, rates, seconds, out, as_json, say)
        return

    from xdpgw.tools.bench import TRANSPORTS, Plan, format_table, plot, run_bench, to_json

    if latency_only:
        lat = _latency(f"{out}-latency", no_png, latency_s, say)
        click.echo(_lat_json(lat) if as_json else _lat_text(lat))
        return

    kinds = tuple(t.strip() for t in transports.split(",") if t.strip())
    bad = [k for k in kinds if k not in TRANSPORTS]
    if bad or not kinds:
        raise GatewayError(f"unknown transport(s) {', '.join(bad) or '(none)'}", f"choose from {', '.join(TRANSPORTS)}")
    plan = replace(Plan.quick() if quick else Plan(), latency_pps=latency_pps)
    res = run_bench(plan, kinds, say=say)
    text = to_json(res)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.json", "w") as f:
        f.write(text + "\n")
    written = [f"{out}.json"]
    if not no_png:
        written.append(plot(res, f"{out}.png"))
    click.echo(f"xdpgw bench: wrote {', '.join(written)}", err=True)
    if quick:  # the latency table takes a minute of its own
        click.echo(text if as_json else format_table(res) + "\n\n(latency table: xdpgw bench --latency)")
        return
    lat = _latency(f"{out}-latency", no_png, latency_s, say)
    if as_json:
        click.echo(text[:-1].rstrip() + ',\n  "latency": ' + _lat_json(lat) + "\n}")
    else:
        click.echo(format_table(res) + "\n\n" + _lat_text(lat))


def _latency(out: str, no_png: bool, seconds: float, say) -> dict:
    """The latency table and our part in process; written to OUT.json (and OUT.png)."""
    from xdpgw.tools.bench import pipeline_cost, plot_latency, run_latency_bench, startup_cost

    res = run_latency_bench(seconds, say=say)
    res["pipeline_cost"] = pipeline_cost()
    res["startup_cost"] = startup_cost()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.json", "w") as f:
        f.write(_lat_json(res) + "\n")
    written = [f"{out}.json"]
    if not no_png:
        written.append(plot_latency(res, f"{out}.png"))
    click.echo(f"xdpgw bench: wrote {', '.join(written)}", err=True)
    return res


def _lat_json(res: dict) -> str:
    from xdpgw.tools.bench import to_json

    return to_json({**res, "latency_rows": [{k: v for k, v in r.items() if not k.startswith("_")}
                                            for r in res["latency_rows"]]})


def _lat_text(res: dict) -> str:
    from xdpgw.tools.bench import format_latency_table, format_pipeline_cost, format_startup_cost

    return (format_latency_table(res) + "\n\n" + format_pipeline_cost(res["pipeline_cost"]) + "\n\n"
            + format_startup_cost(res["startup_cost"]))


def _tick_to_trade(transports: str, rates: str, seconds: float, out: str, as_json: bool, say) -> None:
    import json

    from xdpgw.orders.tick_to_trade import format_table, run_tick_to_trade

    kinds = tuple(t.strip() for t in transports.split(",") if t.strip())
    try:
        rate_list = tuple(int(r) for r in rates.split(",") if r.strip())
    except ValueError:
        raise GatewayError(f"bad --rates {rates!r}", "give ticks per second, e.g. 1000,10000") from None
    res = run_tick_to_trade(rate_list, seconds, kinds, say=say)
    text = json.dumps(res)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}-t2t.json", "w") as f:
        f.write(text + "\n")
    click.echo(text if as_json else format_table(res))
    click.echo(f"xdpgw bench: wrote {out}-t2t.json", err=True)
