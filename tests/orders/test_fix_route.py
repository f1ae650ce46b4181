"""The router over FIX: `xdpgw route --venue fix://…` against the QuickFIX executor venue, the kill switch
on open FIX orders, and one parent order split across the OUCH simulator and the FIX venue."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT, xdpgw_cmd
from xdpgw.orders.fix import engine, wire
from xdpgw.orders.fix.acceptor import FixVenue
from xdpgw.orders.model import Order, Side, State
from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch.simulator import Exchange, VenueServer
from xdpgw.orders.router import Router
from xdpgw.orders.venue import Filled, connect_url

from .fix_rig import REFS, listening, threads, wait_events, wait_for
from .helpers import kill9_when, reap


def run_route(*args: str) -> subprocess.CompletedProcess:
    """`xdpgw route` ARGS, kept up 0.5 s after every order is final or resting: an acknowledged order
    counts as resting, and the venue's fill may follow its ack in a later poll."""
    return subprocess.run(xdpgw_cmd(None, "route", *args, "--hold", "0.5"), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def ouch_accepted(server: VenueServer) -> list[tuple[str, int]]:
    """(ClOrdID, quantity) of every order the OUCH simulator accepted for user U1."""
    def read(v: VenueServer) -> list[tuple[str, int]]:
        msgs = [m.decode(p, inbound=False) for p in v.exchange.accounts["U1"].stream]
        return [(x.cl_ord_id, x.quantity) for x in msgs if isinstance(x, m.OrderAccepted)]
    return server.call(read)


def test_route_cli_sends_a_basket_over_fix_with_the_same_summary(tmp_path):
    basket = tmp_path / "b.csv"
    basket.write_text("id,symbol,side,qty,price,tif\n"
                      "A1,MSFT,B,300,410.05\n"        # crosses the venue's 410: filled
                      "A2,MSFT,T,200,411.00\n"        # sell short above it: rests
                      "A3,AAPL,B,100,189.00,IOC\n"    # does not cross: IOC remainder cancelled
                      "A4,TSLA,B,100,250\n"           # restricted
                      "A5,MSFT,B,20000,410.05\n"      # over --max-qty
                      "A6,MSFT,B,100,500.00\n")       # outside the 5 % collar
    with FixVenue(references=dict(REFS), state_dir=tmp_path / "venue") as venue:
        url = venue.url(tmp_path / "us")
        args = ["--venue", url, "--orders", str(basket), "--json", "--max-qty", "10000", "--restricted", "TSLA",
                "--collar", "5", "--reference", "MSFT=410", "--reference", "AAPL=190", "--journal", str(tmp_path / "j")]
        r = run_route(*args)
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        assert (s["orders"], s["sent"], s["acked"], s["filled"], s["cancelled"], s["open"]) == (6, 3, 3, 1, 1, 1)
        assert s["denied"] == {"restricted": 1, "max_qty": 1, "price_collar": 1} and s["rejected"] == {}
        assert s["latency_ns"]["send_ack"]["count"] == 3 and s["latency_ns"]["send_fill"]["count"] == 1
        assert s["positions"] == {"MSFT": 300} and s["errors"] == {} and s["event_unknown"] == 0
        assert venue.counts["orders"] == 3 and venue.open_orders() == ["A2"]
        # the wire both engines logged: well-formed frames, gap-free numbers, sell short as 54=5
        for log in (engine.message_log(tmp_path / "us"), venue.message_log()):
            frames = wire.frames(log.read_bytes())
            assert all(wire.frame_problem(f) is None for f in frames)
            assert wire.sequence_problems(frames, "XDPGW") == wire.sequence_problems(frames, "VENUE") == []
        sent = {f[11]: f for f in map(wire.fields, frames) if f.get(35) == "D"}
        assert sorted(sent) == ["A1", "A2", "A3"] and sent["A2"][54] == "5"
        # the same journal again: nothing is sent twice, the session resumes (no sequence reset)
        r = run_route(*args)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["skipped"] == 6 and venue.counts["orders"] == 3
        logons = [f for f in map(wire.fields, wire.frames(venue.message_log().read_bytes()))
                  if f.get(35) == "A" and f.get(49) == "XDPGW"]
        assert len(logons) == 2 and int(logons[1][34]) > 1 and logons[1].get(141) != "Y"


def test_router_kill_switch_cancels_every_open_fix_order(tmp_path):
    before = threads()
    with FixVenue(references=dict(REFS), state_dir=tmp_path / "venue") as venue:
        router = Router([connect_url(venue.url(tmp_path / "us"), "fix")])
        try:
            router.connect(timeout=10)
            router.submit_many([Order(f"R{i}", "AAPL", Side.BUY, 100, 100_0000 + i) for i in range(5)])
            wait_for(lambda: router.poll(0.02) is not None and router.settled(), what="acks")
            assert len(venue.open_orders()) == 5
            router.kill("test")
            wait_for(lambda: router.poll(0.02) is not None and not router.open_orders(), what="cancels")
            assert venue.open_orders() == []
            s = router.summary()
            assert s["cancelled"] == 5 and s["kill_switch"] and s["mass_cancels"] == 1
            (rec,) = router.submit(Order("N1", "AAPL", Side.BUY, 100, 100_0000))
            assert (rec.state, rec.reason) == (State.DENIED, "kill_switch") and venue.counts["orders"] == 5
        finally:
            router.close()
    assert threads() <= before


def test_one_parent_order_split_across_ouch_and_fix(tmp_path):
    sim = VenueServer("127.0.0.1", 0, Exchange(cross_at={"MSFT": REFS["MSFT"]}), heartbeat_interval=0.2, timeout=5.0)
    sim.start()
    try:
        with FixVenue(references=dict(REFS), state_dir=tmp_path / "venue") as fix:
            config = tmp_path / "route.toml"
            config.write_text(f'''
[venues]
nasdaq = "ouch://127.0.0.1:{sim.port}?user=U1&heartbeat=0.2"
broker = "{fix.url(tmp_path / 'us')}"

[routing]
lot = 100
[routing.symbols]
MSFT = [{{ venue = "nasdaq", share = 60, priority = 1 }}, {{ venue = "broker", share = 40, priority = 2 }}]
''')
            basket = tmp_path / "b.csv"
            basket.write_text("P1,MSFT,B,1050,410.05\n")  # 600 + 400, the odd 50 to the first priority
            r = run_route("--config", str(config), "--orders", str(basket), "--json")
            assert r.returncode == 0, r.stderr
            s = json.loads(r.stdout)
            assert (s["orders"], s["child_orders"], s["sent"], s["acked"], s["filled"]) == (1, 2, 2, 2, 2)
            assert s["positions"] == {"MSFT": 1050} and s["filled_qty"] == 1050
            assert s["venues"]["nasdaq"]["sent"] == 1 and s["venues"]["broker"]["sent"] == 1
            fix_orders = [f for f in map(wire.fields, wire.frames(fix.message_log().read_bytes()))
                          if f.get(35) == "D"]
            assert [(f[11], f[38]) for f in fix_orders] == [("P1-2", "400")]
            assert ouch_accepted(sim) == [("P1-1", 650)]
    finally:
        sim.stop()


def test_kill_9_of_route_over_fix_then_rerun_with_the_same_journal(tmp_path):
    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    ids = [f"K{i:05d}" for i in range(120)]
    basket.write_text("".join(f"{oid},AAPL,B,100,1.00\n" if i % 4 == 0 else f"{oid},MSFT,B,100,410.05\n"
                              for i, oid in enumerate(ids)))  # every 4th rests, the others fill
    with FixVenue(references=dict(REFS), state_dir=tmp_path / "venue") as venue:
        args = ["--venue", venue.url(tmp_path / "us"), "--orders", str(basket), "--journal", str(journal),
                "--json", "--rate", "40"]
        p = subprocess.Popen(xdpgw_cmd(None, "route", *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=ROOT)
        kill9_when(p, lambda: venue.counts["orders"] >= 45, "the first orders at the venue")
        first = len(venue.books)
        assert 45 <= first < len(ids), "the kill must land mid-basket"
        r = run_route(*args, "--timeout", "30")
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        at_venue = list(venue.books)
        assert venue.counts["rejects"] == 0, "an order id reached the venue twice"
        # nothing lost: an order journaled, then killed before the engine took it (a FIX send takes
        # ~150 µs, so up to one throttle window of 40 can be) is sent again after the catch-up; what the
        # engine took, its store resends (never twice: a reused ClOrdID would be a reject)
        assert sorted(at_venue) == ids and s["unconfirmed"] == 0
        assert s["recovered"].get("resent_orders", 0) < 40
        assert s["acked"] == len(at_venue) and s["event_duplicates"] == 0
        assert s["filled"] == sum(1 for i in at_venue if int(i[1:]) % 4)
        assert s["open"] == sum(1 for i in at_venue if int(i[1:]) % 4 == 0)
        frames = wire.frames(venue.message_log().read_bytes())
        assert all(wire.frame_problem(f) is None for f in frames)
        assert wire.sequence_problems(frames, "XDPGW") == wire.sequence_problems(frames, "VENUE") == []


def test_the_venue_runs_standalone_and_stops_cleanly_on_sigterm(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "xdpgw.orders.fix.acceptor", "--port", "0", "--ref", "AAPL=190",
                          "--dir", str(tmp_path / "venue")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        url = p.stdout.readline().strip()
        assert url.startswith("fix://127.0.0.1:") and "sender=XDPGW&target=VENUE" in url
        with connect_url(f"{url}&dir={tmp_path / 'us'}") as conn:
            conn.connect(timeout=10)
            conn.send(Order("S1", "AAPL", Side.BUY, 10, 191_0000))
            wait_events(conn, lambda ev: any(isinstance(e, Filled) for e in ev))
        p.terminate()
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 0 and json.loads(out)["fills"] == 1
        assert not listening(int(url.split(":")[2].split("?")[0]))
    finally:
        reap(p)
