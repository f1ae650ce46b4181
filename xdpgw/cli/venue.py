"""`xdpgw venue`: run the OUCH 5.0 / SoupBinTCP 4.0 venue simulator in the foreground."""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from xdpgw.errors import GatewayError, friendly


def parse_cross_at(items: tuple[str, ...]) -> dict[str, int]:
    """("AAPL=190.25",) → {"AAPL": 1902500} (ticks)."""
    from xdpgw.orders.model import price_to_ticks

    out: dict[str, int] = {}
    for item in items:
        sym, _, price = item.partition("=")
        try:
            out[sym.strip().upper()] = price_to_ticks(price.strip())
        except ValueError:
            raise GatewayError(f"bad --cross-at {item!r}", "use SYMBOL=PRICE, e.g. --cross-at AAPL=190.25") from None
        if not sym.strip():
            raise GatewayError(f"bad --cross-at {item!r}", "use SYMBOL=PRICE, e.g. --cross-at AAPL=190.25")
    return out


def parse_users(items: tuple[str, ...]) -> dict[str, str] | None:
    """("U1:secret",) → {"U1": "secret"}; none given → None (anyone may log in)."""
    if not items:
        return None
    users = {}
    for item in items:
        user, sep, password = item.partition(":")
        if not sep or not user:
            raise GatewayError(f"bad --user {item!r}", "use USER:PASSWORD, e.g. --user U1:secret")
        users[user] = password
    return users


@click.command()
@click.option("--port", type=int, required=True, help="TCP port to listen on (0: any free port, printed)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--symbols", default=None, help="comma-separated symbols; others are rejected (default: any)")
@click.option("--cross-at", "cross_at", multiple=True, metavar="SYMBOL=PRICE",
              help="fill orders crossing this reference price with no counterparty (repeatable)")
@click.option("--user", "users", multiple=True, metavar="USER:PASSWORD", help="allowed logins (default: any)")
@click.option("--max-qty", type=int, default=1_000_000, show_default=True, help="larger orders are rejected")
@click.option("--session", default="XDPGW", show_default=True, help="SoupBinTCP session name")
@click.option("--heartbeat", type=float, default=1.0, show_default=True, help="seconds idle before a heartbeat")
@click.option("--timeout", type=float, default=15.0, show_default=True, help="seconds of client silence = dead")
@click.option("--duration", type=float, default=None, help="end the session after this many seconds")
@click.option("--json", "as_json", is_flag=True, help="print the final counters as one JSON object")
@friendly
def venue(port, host, symbols, cross_at, users, max_qty, session, heartbeat, timeout, duration, as_json) -> None:
    """An OUCH 5.0 venue over SoupBinTCP 4.0 with a price-time matching book per symbol.

    Ctrl-C, SIGTERM or --duration end the session (End of Session to every client) and exit.
    """
    from xdpgw.orders.ouch.simulator import Exchange, VenueServer

    syms = {s.strip().upper() for s in symbols.split(",") if s.strip()} if symbols else None
    exchange = Exchange(symbols=syms, cross_at=parse_cross_at(cross_at), max_qty=max_qty)
    server = VenueServer(host, port, exchange, users=parse_users(users), session=session,
                         heartbeat_interval=heartbeat, timeout=timeout)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    click.echo(f"venue: OUCH 5.0 / SoupBinTCP on {server.host}:{server.port}, session {session!r}"
               f"  (connect with ouch://{server.host}:{server.port}?user=U1)", err=True)
    sys.stderr.flush()
    server.start()
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.call(lambda s: s.end_session())
        stats = server.call(lambda s: s.stats())
        server.stop()
    if as_json:
        click.echo(json.dumps(stats))
    else:
        click.echo("venue: " + ", ".join(f"{k} {v}" for k, v in stats.items() if k != "users"), err=True)
