"""`xdpgw route` (send a basket through risk, routing, throttle and venues) and `xdpgw killswitch`.

``register(main)`` adds them to the main group. The JSON summary goes to stdout with ``--json``; the
human summary and progress go to stderr.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import time

import click

from xdpgw.errors import GatewayError, friendly

_TIFS = {"DAY": "0", "IOC": "3", "GTX": "5", "GTT": "6", "AFTER_HOURS": "E", "EXT": "E"}


def read_orders(path: str) -> list:
    """The basket: CSV rows ``id,symbol,side,qty,price[,tif,venue]`` (a header row is optional; side
    B, S or T; price a decimal; tif a code 0/3/5/6/E or DAY/IOC/GTX/GTT). Any bad row is an error
    naming its line, before anything is sent."""
    from xdpgw.orders.model import Order, Side, Tif, price_to_ticks

    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise GatewayError(f"cannot read orders {path} ({e.strerror})", "pass an existing CSV file to --orders") from e
    orders, seen = [], set()
    for n, row in enumerate(rows, 1):
        row = [c.strip() for c in row]
        if not row or not any(row) or row[0].startswith("#") or (n == 1 and row[0].lower() == "id"):
            continue
        try:
            if not 5 <= len(row) <= 7:
                raise ValueError(f"{len(row)} columns (want id,symbol,side,qty,price[,tif,venue])")
            oid, sym, side, qty, price = row[:5]
            if side.upper() not in ("B", "S", "T", "E"):
                raise ValueError(f"side {side!r} (want B, S or T)")
            tif = row[5].upper() if len(row) > 5 and row[5] else "0"
            tif = _TIFS.get(tif, tif)
            if not qty.isdigit():
                raise ValueError(f"quantity {qty!r} is not a whole number")
            o = Order(oid, sym.upper(), Side(side.upper()), int(qty), price_to_ticks(price), Tif(tif),
                      (row[6] or None) if len(row) > 6 else None)
        except ValueError as e:
            raise GatewayError(f"{path} line {n}: {e}", "fix that row (id,symbol,side,qty,price[,tif,venue])") from None
        if o.cl_ord_id in seen:
            raise GatewayError(f"{path} line {n}: order id {o.cl_ord_id} appears twice",
                               "give every order of the day its own id")
        seen.add(o.cl_ord_id)
        orders.append(o)
    return orders


def _money(text: str | None, what: str) -> int | None:
    from xdpgw.orders.model import price_to_ticks

    if text is None:
        return None
    try:
        return price_to_ticks(text)
    except ValueError:
        raise GatewayError(f"bad {what} {text!r}", f"give {what} as a decimal amount, e.g. 250000") from None


def _references(items: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for item in items:
        sym, _, px = item.partition("=")
        ticks = _money(px.strip(), "--reference price")
        if not sym.strip() or not ticks:
            raise GatewayError(f"bad --reference {item!r}", "use SYMBOL=PRICE, e.g. --reference AAPL=190.25")
        out[sym.strip().upper()] = ticks
    return out


def _human(s: dict) -> str:
    lat = s["latency_ns"]
    parts = [f"orders {s['orders']}", f"sent {s['sent']}", f"acked {s['acked']}", f"filled {s['filled']}",
             f"partially filled {s['partially_filled']}", f"cancelled {s['cancelled']}",
             f"rejected {sum(s['rejected'].values())}", f"denied {sum(s['denied'].values())}",
             f"throttled {s['throttled']}", f"open {s['open']}"]
    out = "route: " + ", ".join(parts)
    for k in ("rejected", "denied"):
        if s[k]:
            out += f"\n  {k}: " + ", ".join(f"{r} {n}" for r, n in sorted(s[k].items()))
    for k, what in (("send_ack", "send→ack"), ("send_fill", "send→fill")):
        if lat[k]["count"]:
            out += f"\n  {what}: p50 {lat[k]['p50'] / 1e3:.1f} µs, p99 {lat[k]['p99'] / 1e3:.1f} µs ({lat[k]['count']})"
    if s.get("skipped"):
        out += f"\n  {s['skipped']} orders already in the journal were not sent again"
    if s.get("unconfirmed"):
        out += f"\n  {s['unconfirmed']} orders journaled by a killed run were never confirmed by the venue"
    if s["kill_switch"]:
        out += "\n  KILL SWITCH ON: new orders halted, open orders cancelled"
    return out


@click.command()
@click.option("--venue", "venues", multiple=True, metavar="URL",
              help="a venue: ouch://127.0.0.1:15000?user=U1 or fix://127.0.0.1:9878?sender=ME&target=VENUE "
                   "(repeatable; name= sets its name)")
@click.option("--orders", "orders_file", required=True, type=click.Path(dir_okay=False),
              help="CSV: id,symbol,side,qty,price[,tif,venue]")
@click.option("--journal", default=None, type=click.Path(dir_okay=False),
              help="append-only journal: a re-run with the same file never sends an id twice")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False),
              help="TOML with [venues], [routing], [risk], [throttle]")
@click.option("--json", "as_json", is_flag=True, help="print the summary as one JSON object (stdout)")
@click.option("--max-qty", type=int, default=None, help="deny orders above this many shares")
@click.option("--max-notional", default=None, help="deny orders above this notional (currency units)")
@click.option("--rate", type=int, default=None, help="at most N orders in any one-second window, per venue")
@click.option("--total-rate", type=int, default=None, help="at most N orders in any one-second window, in total")
@click.option("--reject-over-rate", is_flag=True, help="deny orders over the rate instead of queueing them")
@click.option("--restricted", default=None, help="comma-separated symbols never to trade")
@click.option("--collar", type=float, default=None, help="deny limit prices more than PCT %% from the reference")
@click.option("--reference", "references", multiple=True, metavar="SYMBOL=PRICE",
              help="reference price for the collar and market orders (repeatable)")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="seconds to wait for every order to be final or resting")
@click.option("--hold", type=float, default=0.0,
              help="then keep the session (and resting orders) up this many seconds, or until the kill switch "
                   "has cancelled them all")
@click.option("--metrics-port", type=int, default=None,
              help="serve GET /metrics, GET /status and POST /kill on 127.0.0.1:PORT")
@friendly
def route(venues, orders_file, journal, config_file, as_json, max_qty, max_notional, rate, total_rate,
          reject_over_rate, restricted, collar, references, timeout, hold, metrics_port) -> None:
    """Send a basket of orders through pre-trade risk, routing and the throttle to the venues, wait for
    each order's final or resting state and print a summary.

    The kill switch: SIGUSR1 (kill -USR1 PID), `xdpgw killswitch`, or POST /kill on --metrics-port.
    """
    cfg = router_config(venues, config_file)
    limits = cfg.limits()
    if max_qty is not None:
        limits.max_qty = max_qty
    if max_notional is not None:
        limits.max_notional = _money(max_notional, "--max-notional")
    if restricted:
        limits.restricted = limits.restricted | {s.strip().upper() for s in restricted.split(",") if s.strip()}
    if collar is not None:
        limits.collar_pct = collar
    limits.reference_prices.update(_references(references))
    throttle = cfg.make_throttle()
    if rate or total_rate or reject_over_rate:
        from xdpgw.orders.throttle import Throttle

        throttle = Throttle(total=total_rate or (throttle.total.n if throttle.total else None),
                            per_venue=rate or throttle._per_venue,
                            policy="reject" if reject_over_rate else throttle.policy)
    orders = read_orders(orders_file)
    unknown = sorted({o.venue for o in orders if o.venue and o.venue not in cfg.venues})
    if unknown:
        raise GatewayError(f"orders name venue(s) {', '.join(unknown)} that are not configured",
                           f"use one of {', '.join(cfg.venues)} in the venue column, or add them")

    router = make_router(cfg, limits, throttle, journal)
    control = None
    old_usr1 = signal.getsignal(signal.SIGUSR1)
    t0 = time.monotonic()
    timed_out = False
    unreplayed: list[str] = []
    skipped = 0
    try:
        router.install_signal(signal.SIGUSR1)
        if metrics_port is not None:
            from xdpgw.orders.control import ControlServer

            control = ControlServer(metrics_port, router.request_kill)
            click.echo(f"route: metrics and kill switch on {control.url} (POST /kill)", err=True)
        router.connect(timeout=min(timeout, 10.0))
        click.echo(f"route: pid {os.getpid()}, {len(orders)} orders to {', '.join(cfg.venues)}"
                   f" (kill switch: kill -USR1 {os.getpid()})", err=True)
        todo = [o for o in orders if not router.known(o.cl_ord_id)]
        skipped = len(orders) - len(todo)
        for i in range(0, len(todo), 64):  # one journal sync per 64 orders; venues polled between
            router.submit_many(todo[i:i + 64])
            router.poll(0)
            if control is not None:
                control.update(router.summary())
        deadline = time.monotonic() + timeout
        grace = time.monotonic() + min(timeout, 2.0)  # time for a venue to replay what a killed run missed
        while True:
            router.poll(0.02)
            if control is not None:
                control.update(router.summary())
            now = time.monotonic()
            if router.settled() or (now >= grace and router.settled(unconfirmed_ok=True)):
                break
            if now >= deadline:
                timed_out = True
                unreplayed = sorted(router.recovery.candidates)
                break
        end_hold = time.monotonic() + hold
        while time.monotonic() < end_hold and not (router.risk.killed and not router.open_orders()):
            router.poll(0.05)
            if control is not None:
                control.update(router.summary())
        if router.risk.killed:  # let the venues' cancels arrive before the summary
            end = time.monotonic() + min(timeout, 5.0)
            while router.open_orders() and time.monotonic() < end:
                router.poll(0.02)
        summary = router.summary()
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)
        if control is not None:
            control.close()
        router.close()
    summary.update(skipped=skipped, timed_out=timed_out, duration_s=round(time.monotonic() - t0, 3))
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        click.echo(_human(summary), err=True)
    if timed_out:
        waiting = summary["open"] - summary["states"].get("acknowledged", 0) - summary["states"].get(
            "partially_filled", 0)
        if waiting:
            click.echo(f"xdpgw route: {waiting} orders still wait for the venue after {timeout} s: "
                       "check the venue, or raise --timeout (a re-run with the same --journal resumes)", err=True)
        if unreplayed:
            click.echo(f"xdpgw route: {', '.join(unreplayed)} never finished replaying what we missed within "
                       f"{timeout} s (no server heartbeat after the login): the journal may lack fills; check the "
                       "venue, or raise --timeout and re-run with the same --journal", err=True)
        sys.exit(1)


def router_config(venues: tuple[str, ...], config_file: str | None):
    """The config file (if any) with the ``--venue`` URLs added (named by ``name=`` or scheme-port)."""
    from xdpgw.orders.config import RouterConfig, load_config
    from xdpgw.orders.venue import parse_venue_url

    cfg = load_config(config_file) if config_file else RouterConfig()
    for url in venues:
        v = parse_venue_url(url)
        name = v.params.get("name") or f"{v.scheme}-{v.port}"
        if name in cfg.venues and cfg.venues[name] != url:
            raise GatewayError(f"two venues are named {name!r}", "add name=NAME to one of the --venue URLs")
        cfg.venues[name] = url
    if not cfg.venues:
        raise GatewayError("no venue to send to", "pass --venue ouch://HOST:PORT or a --config with [venues]")
    return cfg


def make_router(cfg, limits, throttle, journal: str | None):
    from xdpgw.orders.journal import Journal
    from xdpgw.orders.risk import RiskEngine
    from xdpgw.orders.router import Router
    from xdpgw.orders.venue import connect_url

    connectors = [connect_url(url, name) for name, url in cfg.venues.items()]
    return Router(connectors, routing=cfg.routing_table(), risk=RiskEngine(limits), throttle=throttle,
                  journal=Journal(journal) if journal else None)


def build_router(venues: tuple[str, ...], config_file: str | None, journal: str | None = None):
    """A (not yet connected) Router from ``--venue`` URLs and/or a config file, limits as configured."""
    cfg = router_config(venues, config_file)
    return make_router(cfg, cfg.limits(), cfg.make_throttle(), journal)


@click.command()
@click.option("--pid", type=int, default=None, help="a running `xdpgw route` (sends it SIGUSR1)")
@click.option("--url", default=None, help="a running router's metrics port, e.g. http://127.0.0.1:9110")
@friendly
def killswitch(pid, url) -> None:
    """Pull a running router's kill switch: halt new orders, cancel every open order at every venue."""
    if (pid is None) == (url is None):
        raise GatewayError("say which router", "pass --pid PID or --url http://HOST:PORT (its --metrics-port)")
    if pid is not None:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            raise GatewayError(f"no process {pid}", "give the pid `xdpgw route` printed at start") from None
        click.echo(f"killswitch: SIGUSR1 sent to {pid}", err=True)
    else:
        from xdpgw.orders.control import request_kill

        click.echo(f"killswitch: {request_kill(url)}", err=True)


def register(main: click.Group) -> None:
    for cmd in (route, killswitch):
        main.add_command(cmd)


__all__ = ["read_orders", "register", "route", "killswitch"]
