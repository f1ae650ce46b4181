"""The router against the OUCH simulator on loopback: `xdpgw route`, the kill switch on resting orders,
and `kill -9` of `xdpgw route` mid-basket then a re-run with the same journal."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import ROOT, xdpgw_cmd
from tests.orders.helpers import kill9_when, reap, wait_for
from xdpgw.orders.model import Order, Side, State
from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch.connector import OuchConnector
from xdpgw.orders.ouch.simulator import Exchange, VenueServer
from xdpgw.orders.router import Router

MSFT_PX = 400_0000  # the simulator fills MSFT orders crossing $400 on its own


@pytest.fixture
def sim() -> Iterator[VenueServer]:
    server = VenueServer("127.0.0.1", 0, Exchange(cross_at={"MSFT": MSFT_PX}), heartbeat_interval=0.2, timeout=5.0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def url(server: VenueServer, **params: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in {"user": "U1", "heartbeat": "0.2", **params}.items())
    return f"ouch://127.0.0.1:{server.port}?{q}"


def accepted_ids(server: VenueServer, user: str = "U1") -> list[str]:
    """ClOrdIDs of every order the venue accepted for ``user``, from its sequenced stream."""
    def read(s: VenueServer) -> list[str]:
        acc = s.exchange.accounts.get(user)
        msgs = [m.decode(p, inbound=False) for p in (acc.stream if acc else [])]
        return [x.cl_ord_id for x in msgs if isinstance(x, m.OrderAccepted)]
    return server.call(read)


def resting(server: VenueServer, user: str = "U1") -> int:
    return server.call(lambda s: len(s.exchange.accounts[user].live) if user in s.exchange.accounts else 0)


def write_basket(path, n: int, resting_every: int = 0) -> list[str]:
    """n orders: MSFT buys at $400.01 (filled by the simulator) or, every ``resting_every``-th,
    AAPL buys at $1 (resting)."""
    ids = []
    with open(path, "w") as f:
        f.write("id,symbol,side,qty,price\n")
        for i in range(n):
            oid = f"E{i:05d}"
            ids.append(oid)
            if resting_every and i % resting_every == 0:
                f.write(f"{oid},AAPL,B,100,1.00\n")
            else:
                f.write(f"{oid},MSFT,B,100,400.01\n")
    return ids


def run_route(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(xdpgw_cmd(None, "route", *args), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_route_cli_sends_a_basket_and_reports(sim, tmp_path):
    basket = tmp_path / "b.csv"
    basket.write_text("id,symbol,side,qty,price,tif\n"
                      "A1,MSFT,B,300,400.05\n"        # filled at the reference
                      "A2,MSFT,T,200,401.00\n"        # rests (sell short above the reference)
                      "A3,AAPL,B,100,190.25,IOC\n"    # no counterparty: IOC cancelled
                      "A4,TSLA,B,100,250\n"           # restricted
                      "A5,MSFT,B,20000,400.05\n"      # over --max-qty
                      "A6,MSFT,B,100,500.00\n"        # outside the 5 % collar
                      "A7,MSFT,B,1000,400.05\n")      # $400,050 over --max-notional
    r = run_route("--venue", url(sim), "--orders", str(basket), "--json", "--max-qty", "10000",
                  "--max-notional", "300000",
                  "--restricted", "TSLA", "--collar", "5", "--reference", "MSFT=400", "--reference", "AAPL=190",
                  "--journal", str(tmp_path / "j"))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["orders"], s["sent"], s["acked"], s["filled"], s["cancelled"], s["open"]) == (7, 3, 3, 1, 1, 1)
    assert s["denied"] == {"restricted": 1, "max_qty": 1, "price_collar": 1, "max_notional": 1}
    assert s["rejected"] == {}
    assert s["latency_ns"]["send_ack"]["count"] == 3 and s["latency_ns"]["send_fill"]["count"] == 1
    assert s["positions"] == {"MSFT": 300}
    assert sorted(accepted_ids(sim)) == ["A1", "A2", "A3"]
    # the same journal again: nothing is sent twice
    r = run_route("--venue", url(sim), "--orders", str(basket), "--json", "--journal", str(tmp_path / "j"))
    assert r.returncode == 0, r.stderr
    s2 = json.loads(r.stdout)
    assert s2["skipped"] == 7 and s2["sent"] == 3
    assert sorted(accepted_ids(sim)) == ["A1", "A2", "A3"]


def test_route_cli_bad_row_is_a_clear_error_and_nothing_is_sent(sim, tmp_path):
    basket = tmp_path / "b.csv"
    basket.write_text("A1,MSFT,B,100,400.05\nA2,MSFT,X,100,400.05\n")
    r = run_route("--venue", url(sim), "--orders", str(basket))
    assert r.returncode == 2
    assert "line 2: side 'X'" in r.stderr and "fix that row" in r.stderr
    assert accepted_ids(sim) == []


def test_kill_switch_cancels_resting_orders_on_a_live_venue(sim):
    router = Router([OuchConnector("sim", "127.0.0.1", sim.port, user="U1", heartbeat_interval=0.2)])
    try:
        router.connect()
        router.submit_many([Order(f"R{i}", "AAPL", Side.BUY, 100, 1_0000 + i) for i in range(5)])
        wait_for(lambda: router.poll(0.02) is not None and router.settled(), what="acks")
        assert resting(sim) == 5
        router.kill("test")
        wait_for(lambda: router.poll(0.02) is not None and not router.open_orders(), what="cancels")
        assert resting(sim) == 0
        s = router.summary()
        assert s["cancelled"] == 5 and s["kill_switch"] and s["mass_cancels"] == 1
        (rec,) = router.submit(Order("N1", "AAPL", Side.BUY, 100, 1_0000))
        assert (rec.state, rec.reason) == (State.DENIED, "kill_switch")
        assert "N1" not in accepted_ids(sim)
    finally:
        router.close()


@pytest.mark.parametrize("how", ["pid", "url"])
def test_route_cli_kill_switch_from_xdpgw_killswitch(sim, tmp_path, how):
    """``killswitch --pid`` (SIGUSR1) or ``killswitch --url`` (POST /kill on ``route --metrics-port``)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    basket = tmp_path / "b.csv"
    ids = write_basket(basket, 6, resting_every=1)  # all resting
    p = subprocess.Popen(xdpgw_cmd(None, "route", "--venue", url(sim), "--orders", str(basket), "--json",
                                   "--hold", "60", "--metrics-port", str(port)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for(lambda: resting(sim) == len(ids), what="resting orders")
        target = ["--pid", str(p.pid)] if how == "pid" else ["--url", f"http://127.0.0.1:{port}"]
        k = subprocess.run(xdpgw_cmd(None, "killswitch", *target), capture_output=True, text=True, cwd=ROOT,
                           timeout=30)
        assert k.returncode == 0, k.stderr
        wait_for(lambda: resting(sim) == 0, what="the mass cancel")
        out, err = p.communicate(timeout=90)
    finally:
        reap(p)
    s = json.loads(out)
    assert s["kill_switch"] and s["cancelled"] == len(ids) and s["open"] == 0 and s["mass_cancels"] == 1, err


def test_kill_9_of_route_mid_basket_then_rerun_with_the_same_journal(sim, tmp_path):
    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    ids = write_basket(basket, 120, resting_every=4)
    args = ["--venue", url(sim), "--orders", str(basket), "--journal", str(journal), "--json", "--rate", "40"]
    p = subprocess.Popen(xdpgw_cmd(None, "route", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT)
    kill9_when(p, lambda: len(accepted_ids(sim)) >= 45, "the first orders at the venue")
    first = accepted_ids(sim)
    assert 45 <= len(first) < len(ids), "the kill must land mid-basket"

    r = run_route(*args, "--timeout", "30")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    at_venue = accepted_ids(sim)
    assert len(at_venue) == len(set(at_venue)), "an order id reached the venue twice"
    rejects = sim.call(lambda v: v.exchange.counts["rejects"])
    assert rejects == 0, "a UserRefNum was reused"
    unconfirmed = s["unconfirmed"]
    assert len(at_venue) + unconfirmed == len(ids) and unconfirmed <= 1  # nothing lost
    assert s["orders"] == len(ids) and s["skipped"] > 0
    # every order the venue took is known with its venue state (acks/fills missed by the kill were replayed)
    assert s["acked"] == len(at_venue)
    assert s["filled"] == sum(1 for i in at_venue if int(i[1:]) % 4) and s["open"] - unconfirmed == \
        sum(1 for i in at_venue if int(i[1:]) % 4 == 0)
    assert s["event_duplicates"] == 0


def test_route_with_a_config_splits_across_two_venues(sim, tmp_path):
    cfg = tmp_path / "router.toml"
    cfg.write_text(f"""
[venues]
a = "ouch://127.0.0.1:{sim.port}?user=U1&heartbeat=0.2"
b = "ouch://127.0.0.1:{sim.port}?user=U2&heartbeat=0.2"

[routing]
default = [{{ venue = "a" }}]
[routing.symbols]
MSFT = [{{ venue = "a", share = 60, priority = 1 }}, {{ venue = "b", share = 40, priority = 2 }}]

[risk]
max_qty = 5000
restricted = ["TSLA"]

[throttle]
per_venue = 100
""")
    basket = tmp_path / "b.csv"
    basket.write_text("P1,MSFT,B,1050,400.05\nP2,AAPL,B,100,1.00\nP3,MSFT,B,9000,400.05\nP4,MSFT,B,100,400.05,IOC,b\n")
    r = run_route("--config", str(cfg), "--orders", str(basket), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["orders"], s["child_orders"], s["sent"], s["filled"], s["open"]) == (4, 4, 4, 3, 1)
    assert s["denied"] == {"max_qty": 1}
    assert sorted(accepted_ids(sim, "U1")) == ["P1-1", "P2"] and sorted(accepted_ids(sim, "U2")) == ["P1-2", "P4"]
    assert s["positions"] == {"MSFT": 1150, "AAPL": 0} or s["positions"] == {"MSFT": 1150}


def test_strategy_hook_on_listen_sends_orders_per_batch(sim):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(xdpgw_cmd(None, "listen", "--port", str(port), "--protocol", "moldudp64", "--count", "20",
                                   "--json", "--strategy", "tests.orders.strat:one_per_batch", "--venue", url(sim)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert "listening" in p.stderr.readline()
        send = subprocess.run(xdpgw_cmd(None, "send", "--dest", f"127.0.0.1:{port}", "--count", "20", "--rate", "500"),
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert send.returncode == 0, send.stderr
        out, err = p.communicate(timeout=60)
    finally:
        reap(p)
    assert p.returncode == 0, err
    s = json.loads(out)
    assert s["packets"] == 20
    sent = s["orders"]["sent"]  # one per delivered batch (packets may arrive together)
    assert 1 <= sent <= 20 and s["orders"]["errors"] == {} and s["handler_errors"] == 0
    wait_for(lambda: len(accepted_ids(sim)) == sent, what="every order at the venue")


def test_strategy_needs_a_venue_and_one_queue(tmp_path):
    r = subprocess.run(xdpgw_cmd(None, "listen", "--port", "1", "--venue", "ouch://127.0.0.1:1"),
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "add --strategy" in r.stderr
    r = subprocess.run(xdpgw_cmd(None, "listen", "--port", "1", "--strategy", "tests.orders.strat:one_per_batch"),
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "no venue to send to" in r.stderr
