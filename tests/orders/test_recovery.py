"""Recovery: what a venue never answered is settled from the venue once it has replayed.

* in process, against the simulator: requests lost on the way (the venue "deafened") while the link
  breaks — a new order, a cancel, a replace — are sent again after the reconnect's replay; under the
  kill switch a lost order is cancelled here, never sent;
* real processes: ``xdpgw route`` killed with SIGKILL after sending (acks held back by the venue,
  requests lost on the way) and mid-fill, then re-run with the same ``--journal``, against our
  simulator and against Nasdaq's ``nasdaq-protocols`` SoupBinTCP server. After the re-run every
  order's journaled state equals what the venue's sequenced stream says, the venue took every order
  exactly once, and UserRefNums only ever increased.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, xdpgw_cmd
from tests.orders.fakes import FakeConnector
from tests.orders.helpers import kill9_when, reap, wait_for
from tests.orders.ouch.test_nasdaq_protocols import NpEnterOrder, NpOrderExecuted, NpVenue, np_message
from xdpgw.orders.journal import Journal
from xdpgw.orders.model import Order, Side, State
from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch.connector import OuchConnector
from xdpgw.orders.ouch.simulator import Exchange, VenueServer
from xdpgw.orders.recovery import NEVER_REACHED
from xdpgw.orders.router import Router, stats_for_metrics
from xdpgw.orders.venue import SessionEvent

S = State


@contextlib.contextmanager
def simulator(**kw) -> Iterator[VenueServer]:
    server = VenueServer("127.0.0.1", 0, Exchange(cross_at={"MSFT": 400_0000}), heartbeat_interval=0.2, timeout=15.0,
                         **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sim() -> Iterator[VenueServer]:
    with simulator() as server:
        yield server


@pytest.fixture
def tight_sim() -> Iterator[VenueServer]:
    """A simulator whose connections take little before a stalled one blocks (SO_RCVBUF 2 KiB)."""
    with simulator(rcvbuf=2048) as server:
        yield server


def ouch(sim: VenueServer, **kw) -> OuchConnector:
    return OuchConnector("sim", "127.0.0.1", sim.port, user="U1", heartbeat_interval=0.2, reconnect_delay=0.01, **kw)


def settle(router: Router, what: str = "every order final or resting") -> None:
    wait_for(lambda: router.poll(0.02) is not None and router.settled(), what=what)


def stream_of(sim: VenueServer, user: str = "U1") -> list[bytes]:
    return sim.call(lambda s: list(s.exchange.accounts[user].stream))


def resting(router: Router, n: int) -> None:
    """``n`` buys R0.. that rest at the venue, acknowledged."""
    router.submit_many([Order(f"R{i}", "AAPL", Side.BUY, 100, 1_0000 + i) for i in range(n)])
    settle(router, "acks")


# --- what the venue says, what the journal says -----------------------------------------------------


def venue_view(stream: list[bytes]) -> dict[str, dict[str, int]]:
    """Each order as a venue's sequenced OUCH stream tells it: ClOrdID → accepted/rejected (times),
    cum (filled), open (leaves), cancelled (shares)."""
    out: dict[str, dict[str, int]] = {}
    of_ref: dict[int, str] = {}

    def entry(cid: str) -> dict[str, int]:
        return out.setdefault(cid, dict.fromkeys(("accepted", "rejected", "cum", "open", "cancelled", "replaced"), 0))

    for payload in stream:
        x = m.decode(payload, inbound=False)
        if isinstance(x, m.OrderAccepted):
            of_ref[x.user_ref_num] = x.cl_ord_id
            e = entry(x.cl_ord_id)
            e["accepted"] += 1
            e["open"] = x.quantity
        elif isinstance(x, m.OrderReplaced):
            old = entry(of_ref[x.orig_user_ref_num])
            old["open"], old["replaced"] = 0, 1
            of_ref[x.user_ref_num] = x.cl_ord_id
            e = entry(x.cl_ord_id)
            e["accepted"] += 1
            e["open"] = x.quantity
        elif isinstance(x, m.OrderRejected):
            entry(x.cl_ord_id)["rejected"] += 1
        elif isinstance(x, m.OrderExecuted):
            e = entry(of_ref[x.user_ref_num])
            e["cum"] += x.quantity
            e["open"] -= x.quantity
        elif isinstance(x, m.OrderCanceled):
            e = entry(of_ref[x.user_ref_num])
            e["open"] -= x.quantity
            e["cancelled"] += x.quantity
    return out


def journal_view(path: Path) -> tuple[dict, dict]:
    """The orders and summary a router rebuilds from the journal alone."""
    r = Router([FakeConnector("replay")], journal=Journal(str(path)))
    try:
        return dict(r.blotter.orders), r.summary()
    finally:
        r.close()


def expected_state(v: dict[str, int]) -> State:
    if v["replaced"]:
        return S.REPLACED
    if v["open"] == 0:
        return S.CANCELLED if v["cancelled"] else S.FILLED
    return S.PARTIALLY_FILLED if v["cum"] else S.ACKNOWLEDGED


def assert_journal_equals_venue(journal: Path, stream: list[bytes], ids: list[str]) -> dict:
    venue = venue_view(stream)
    recs, summary = journal_view(journal)
    assert summary["errors"] == {} and summary["event_unknown"] == 0
    for i in ids:
        v, rec = venue.get(i), recs.get(i)
        assert v is not None and rec is not None, f"{i} lost: venue {v}, journal {rec}"
        assert (v["accepted"], v["rejected"]) == (1, 0), f"{i} reached the venue {v['accepted']} times: {v}"
        assert (rec.state, rec.cum_qty, rec.leaves_qty) == (expected_state(v), v["cum"], v["open"]), (i, rec, v)
    return summary


def write_basket(path: Path, rows: list[tuple[str, str, str]]) -> list[str]:
    """(id, symbol, price) buys of 100."""
    path.write_text("id,symbol,side,qty,price\n" + "".join(f"{i},{s},B,100,{p}\n" for i, s, p in rows))
    return [i for i, _, _ in rows]


#: every wait is for a condition; its bound only stops a hung run (generous: CI under double load once
#: needed more than 20 s for what takes a second when quiet), never measures speed
PATIENCE = "120"


def route(*args: str) -> subprocess.Popen:
    """A run the test will kill: it never gives up on its own first (``--timeout`` 120 s unless given)."""
    more = () if "--timeout" in args else ("--timeout", PATIENCE)
    return subprocess.Popen(xdpgw_cmd(None, "route", *args, *more), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def rerun(*args: str) -> dict:
    r = subprocess.run(xdpgw_cmd(None, "route", *args, "--timeout", PATIENCE), capture_output=True, text=True,
                       timeout=2 * int(PATIENCE) + 60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def catch_up(*args: str) -> dict:
    """``route`` once more on the same journal and basket: it sends nothing, and its login's replay
    brings what the run before, done as soon as every order rested, had not read yet (a fill right
    behind the ack of an order sent again), before the journal is compared with the venue."""
    s = rerun(*args)
    assert s["recovered"] == {} and s["skipped"] == s["orders"] and s["unconfirmed"] == 0, s
    return s


def journaled_fills(journal: Path) -> int:
    return journal.read_text().count("E\tFilled\t") if journal.exists() else 0


# --- in process: a broken link ------------------------------------------------------------------


@contextlib.contextmanager
def live_router(sim: VenueServer, resting_orders: int, journal: Path | None = None,
                **kw) -> Iterator[tuple[Router, OuchConnector]]:
    """A router logged in to ``sim`` (journaled when given a path) with ``resting_orders`` resting buys
    R0.., acknowledged; closed on the way out."""
    c = ouch(sim, **kw)
    router = Router([c], journal=Journal(str(journal)) if journal else None)
    try:
        router.connect()
        resting(router, resting_orders)
        yield router, c
    finally:
        router.close()


def test_lost_order_cancel_reduction_and_replace_are_sent_again_after_the_replay(sim):
    with live_router(sim, 3) as (router, c):
        sim.call(lambda s: s.deafen("U1"))  # what we send now is lost on the way
        router.cancel("R0")
        router.replace("R1", "R1B", price=1_0100)
        router.cancel("R2", 40)  # reduce to 40 shares
        router.submit(Order("N1", "AAPL", Side.BUY, 100, 1_0000))
        wait_for(lambda: sim.call(lambda s: s.counts["lost_requests"]) == 4, what="four lost requests")
        sim.call(lambda s: (s.deafen("U1", False), s.drop("U1")))  # the link breaks; the venue hears again
        settle(router, "the venue's answers")
        b = router.blotter
        assert [b[i].state for i in ("R0", "R1", "R1B", "N1", "R2")] == [S.CANCELLED, S.REPLACED, S.ACKNOWLEDGED,
                                                                          S.ACKNOWLEDGED, S.ACKNOWLEDGED]
        assert (b["R2"].leaves_qty, b["R2"].reduce_to) == (40, 0)  # reduced with its quantity, not cancelled
        assert router.recovery.counts == {"resent_orders": 1, "resent_cancels": 1, "resent_replaces": 1,
                                          "resent_reductions": 1}
        assert stats_for_metrics(router.summary())["recovered_resent_reductions"] == 1  # on /metrics too
        venue = venue_view(stream_of(sim))
        assert venue["N1"]["accepted"] == 1 and venue["R0"]["cancelled"] == 100
        assert (venue["R2"]["open"], venue["R2"]["cancelled"]) == (40, 60)
        assert sim.call(lambda s: s.exchange.counts["rejects"]) == 0  # UserRefNums kept increasing


def test_a_reduction_the_replay_answers_is_not_sent_again(sim):
    with live_router(sim, 1) as (router, c):
        sim.call(lambda s: s.mute("U1"))  # the venue takes what we send; its answers are held back
        router.cancel("R0", 40)
        assert router.blotter["R0"].reduce_to == 40 and not router.settled()
        wait_for(lambda: sim.call(lambda s: s.exchange.counts["cancels"]) == 1, what="the reduction at the venue")
        sim.call(lambda s: s.mute("U1", False))  # the link fails: the answer comes in the replay
        settle(router)
        assert (router.blotter["R0"].leaves_qty, router.blotter["R0"].reduce_to) == (40, 0)
        assert router.recovery.counts == {} and c.stats()["reconnects"] == 1
        assert sim.call(lambda s: (s.exchange.counts["cancels"], s.exchange.counts["cancel_rejects"])) == (1, 0)


def stuck_in_the_outbox(router: Router, sim: VenueServer, kill: bool = False) -> list[str]:
    """Stall the venue, then send orders (one write each) until some wait in the connector's outbox
    (the kernel's small buffers are full), a cancel of R0, a reduction of R1 to 40 and a replace of
    R2 (or pull the kill switch); then the link breaks with none of it read. Returns the new ids."""
    sim.call(lambda s: s.stall("U1"))
    conn = next(iter(router.connectors.values()))
    ids: list[str] = []
    while len(ids) < 20 or not conn.stats()["outbox_bytes"]:
        assert len(ids) < 5000, "the kernel's buffers never filled"
        ids.append(f"N{len(ids):04d}")
        router.submit(Order(ids[-1], "AAPL", Side.BUY, 100, 1_0000))
    router.cancel("R0")
    router.cancel("R1", 40)
    router.replace("R2", "R2B", price=1_0100)
    if kill:
        router.kill("test")
    sim.call(lambda s: (s.drop("U1"), s.stall("U1", False)))  # unread: they never reached the venue
    return ids


def test_requests_in_the_outbox_when_the_link_breaks_are_sent_after_the_replay(tight_sim, tmp_path):
    sim, journal = tight_sim, tmp_path / "j"
    with live_router(sim, 3, journal, sndbuf=4096) as (router, c):
        ids = stuck_in_the_outbox(router, sim)
        settle(router, "the requests sent again")
        assert c.stats()["unsent"] >= 4  # the cancel, the reduction and the replace at least never left
        assert router.recovery.counts == {"resent_orders": len(ids), "resent_cancels": 1, "resent_reductions": 1,
                                          "resent_replaces": 1}
        b = router.blotter
        assert [b[i].state for i in ("R0", "R1", "R2", "R2B")] == [S.CANCELLED, S.ACKNOWLEDGED, S.REPLACED,
                                                                    S.ACKNOWLEDGED]
        assert b["R1"].leaves_qty == 40 and all(b[i].state is S.ACKNOWLEDGED for i in ids)
    assert_journal_equals_venue(journal, stream_of(sim), [*ids, "R0", "R1", "R2", "R2B"])
    assert sim.call(lambda s: s.exchange.counts["rejects"]) == 0  # each id once, UserRefNums increasing


def test_under_the_kill_switch_outbox_orders_are_cancelled_here_and_cancels_still_sent(tight_sim, tmp_path):
    sim, journal = tight_sim, tmp_path / "j"
    with live_router(sim, 3, journal, sndbuf=4096) as (router, c):
        ids = stuck_in_the_outbox(router, sim, kill=True)
        wait_for(lambda: router.poll(0.02) is not None and not router.open_orders()
                 and not router.recovery.awaiting_replay, what="every order cancelled")
        assert router.recovery.counts["settled_here"] == len(ids) and c.stats()["unsent"] >= 4
        b = router.blotter
        assert all((b[i].state, b[i].reason) == (S.CANCELLED, NEVER_REACHED) for i in ids)
        assert [b[i].state for i in ("R0", "R1", "R2", "R2B")] == [S.CANCELLED] * 3 + [S.REJECTED]
    stream = stream_of(sim)
    assert not set(ids) & set(venue_view(stream))  # never sent
    assert_journal_equals_venue(journal, stream, ["R0", "R1", "R2"])
    recs, _ = journal_view(journal)
    assert all(recs[i].state is S.CANCELLED for i in ids)  # journaled: a restart does not send them


def test_a_venue_that_drops_during_the_replay_is_settled_after_the_next_logins_replay(sim):
    with live_router(sim, 1) as (router, c):
        sim.call(lambda s: s.deafen("U1"))
        router.submit(Order("N1", "AAPL", Side.BUY, 100, 1_0000))
        wait_for(lambda: sim.call(lambda s: s.counts["lost_requests"]) == 1, what="the lost order")
        sim.call(lambda s: (s.deafen("U1", False), s.mute("U1"), s.drop("U1")))  # the next login: no replay
        wait_for(lambda: router.poll(0.02) is not None and c.stats()["reconnects"] == 1, what="the login")
        assert router.recovery.awaiting_replay and not router.settled()
        sim.call(lambda s: s.mute("U1", False))  # the link fails mid-replay; the login after it replays
        settle(router, "the replay of the login after")
        assert c.stats()["reconnects"] == 2 and router.recovery.counts == {"resent_orders": 1}
        assert venue_view(stream_of(sim))["N1"]["accepted"] == 1


def test_a_fix_cancel_the_engine_took_is_left_to_the_session_after_a_reconnect(tmp_path):
    """The engine took the cancel (its store resends it when the venue asks): recovery must not send
    it again; and a FIX venue that reconnects by itself replays too (settled() does not hang)."""
    from .fix_rig import fix_pair

    with fix_pair(tmp_path, link=True) as (venue, conn, link):
        router = Router([conn])
        router.connect()
        router.submit(Order("A1", "AAPL", Side.BUY, 100, 1_0000))
        settle(router, "the ack")
        link.black_hole = True  # what is sent now is lost on the way
        router.cancel("A1")
        link.cut()
        link.black_hole = False
        wait_for(lambda: router.poll(0.02) is not None and conn.stats()["reconnects"] == 1 and router.settled(),
                 what="the reconnect's replay and the cancel")
        assert router.blotter["A1"].state is S.CANCELLED and "resent_cancels" not in router.recovery.counts
        assert (venue.counts["cancels"], venue.counts["cancel_rejects"]) == (1, 0)


def test_orders_sent_again_keep_to_the_throttle(sim):
    from tests.orders.test_throttle import max_in_any_window
    from xdpgw.orders.throttle import Throttle

    c = ouch(sim)
    router = Router([c], throttle=Throttle(per_venue=2))
    try:
        router.connect()
        sim.call(lambda s: s.deafen("U1"))
        router.submit_many([Order(f"N{i}", "AAPL", Side.BUY, 100, 1_0000) for i in range(2)])
        first = [router.blotter[f"N{i}"].send_ns for i in range(2)]
        wait_for(lambda: sim.call(lambda s: s.counts["lost_requests"]) == 2, what="two lost orders")
        sim.call(lambda s: (s.deafen("U1", False), s.drop("U1")))
        wait_for(lambda: router.poll(0.02) is not None and router.settled(), what="the orders sent again")
        again = [router.blotter[f"N{i}"].send_ns for i in range(2)]
        assert router.recovery.counts == {"resent_orders": 2} and max_in_any_window(first + again) == 2
    finally:
        router.close()


def test_under_the_kill_switch_a_lost_order_is_cancelled_here_not_sent(sim, tmp_path):
    c = ouch(sim)
    router = Router([c], journal=Journal(str(tmp_path / "j")))
    try:
        router.connect()
        sim.call(lambda s: s.deafen("U1"))
        router.submit(Order("N1", "AAPL", Side.BUY, 100, 1_0000))
        wait_for(lambda: sim.call(lambda s: s.counts["lost_requests"]) == 1, what="the lost order")
        router.kill("test")
        sim.call(lambda s: (s.deafen("U1", False), s.drop("U1")))
        wait_for(lambda: router.poll(0.02) is not None and not router.open_orders(), what="N1 settled")
        assert (router.blotter["N1"].state, router.blotter["N1"].reason) == (S.CANCELLED, NEVER_REACHED)
        assert router.recovery.counts == {"settled_here": 1}
        assert "N1" not in venue_view(sim.call(lambda s: list(s.exchange.accounts["U1"].stream)))
    finally:
        router.close()
    recs, _ = journal_view(tmp_path / "j")
    assert recs["N1"].state is S.CANCELLED  # journaled: a restart does not send it either


def test_a_resting_order_is_not_settled_until_the_venue_has_replayed_what_we_missed():
    """A re-run whose orders all rest is not done at its login: the fills a killed run missed are in
    the venue's replay, and ``settled`` waits for the end of it."""
    class Reconciling(FakeConnector):
        def forget(self, cl_ord_id: str) -> bool:
            return True

    c = Reconciling()
    router = Router([c])
    c.events.append(SessionEvent("connected", "login", c.now()))
    router.poll(0)
    assert router.settled() and not router.recovery.awaiting_replay  # nothing open: no replay can change it
    router.submit(Order("A1", "AAPL", Side.BUY, 100, 1_0000))
    router.poll(0)
    assert router.settled()  # resting, no login seen: nothing to wait for
    c.events.append(SessionEvent("connected", "login", c.now()))
    router.poll(0)
    assert not router.settled() and router.recovery.awaiting_replay
    c.fill("A1", 100, 1_0000, "E1")  # the replay
    c.events.append(SessionEvent("replayed", "heartbeat", c.now()))
    router.poll(0)
    assert router.settled() and router.blotter["A1"].state is S.FILLED


# --- real processes: kill -9 of `xdpgw route`, against our simulator ------------------------------------


def test_route_killed_after_sending_then_rerun_settles_every_order_from_the_simulator(sim, tmp_path):
    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    ids = write_basket(basket, [(f"K{i:03d}", "MSFT" if i % 3 else "AAPL", "400.01" if i % 3 else "1.00")
                                for i in range(40)])  # MSFT fills at once, AAPL rests
    url = f"ouch://127.0.0.1:{sim.port}?user=U1&heartbeat=0.2"
    args = ["--venue", url, "--orders", str(basket), "--journal", str(journal), "--json"]
    taken = lambda: sim.call(lambda s: s.exchange.counts["orders"])  # noqa: E731
    p = route(*args, "--rate", "10")  # the throttle lets 10 go at once, then 10 a second later, ...
    try:
        wait_for(lambda: taken() >= 10, what="the first ten orders at the venue")
        sim.call(lambda s: s.mute("U1"))  # the next ten are taken, their answers held back (not journaled)
        wait_for(lambda: taken() >= 20, what="ten orders taken while muted")
        sim.call(lambda s: s.deafen("U1"))  # the next ten are lost on the way
        kill9_when(p, lambda: sim.call(lambda s: s.counts["lost_requests"]) >= 10, "ten lost requests")
    finally:
        reap(p)
    lost = sim.call(lambda s: s.counts["lost_requests"])
    recs, _ = journal_view(journal)
    unanswered = [i for i, r in recs.items() if r.state is S.SENT]
    assert len(unanswered) >= 10 + lost and len(recs) < len(ids), "the kill must land mid-basket"
    sim.call(lambda s: (s.mute("U1", False), s.deafen("U1", False)))

    s = rerun(*args)
    assert s["recovered"]["resent_orders"] >= lost and s["unconfirmed"] == 0 and s["skipped"] == len(recs)
    s = catch_up(*args)
    stream = sim.call(lambda v: list(v.exchange.accounts["U1"].stream))
    summary = assert_journal_equals_venue(journal, stream, ids)
    assert sim.call(lambda v: v.exchange.counts["rejects"]) == 0  # no UserRefNum reused or lowered
    assert summary["orders"] == len(ids) and summary["event_duplicates"] == s["event_duplicates"] == 0


def test_route_killed_mid_fill_then_rerun_applies_the_fills_it_missed(sim, tmp_path):
    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    ids = write_basket(basket, [(f"F{i}", "AAPL", "1.00") for i in range(6)])  # all rest
    url = f"ouch://127.0.0.1:{sim.port}?user=U1&heartbeat=0.2"
    args = ["--venue", url, "--orders", str(basket), "--journal", str(journal), "--json"]
    seller = OuchConnector("u2", "127.0.0.1", sim.port, user="U2", heartbeat_interval=0.2)
    p = route(*args, "--hold", "60")
    try:
        seller.connect()
        wait_for(lambda: sim.call(lambda s: len(s.exchange.account("U1").live)) == 6, what="six resting orders")
        seller.send(Order("S1", "AAPL", Side.SELL, 150, 1_0000))  # F0 filled, F1 half
        kill9_when(p, lambda: journaled_fills(journal) >= 2, "two fills journaled")
        seller.send(Order("S2", "AAPL", Side.SELL, 200, 1_0000))  # while the router is down: F1, F2, half F3
        wait_for(lambda: sim.call(lambda s: s.exchange.counts["executions"]) >= 5, what="the fills")
    finally:
        reap(p)
        seller.close()
    recs, _ = journal_view(journal)
    assert (recs["F1"].state, recs["F1"].cum_qty) == (S.PARTIALLY_FILLED, 50)  # killed between two fills

    s = rerun(*args)
    assert s["skipped"] == 6 and s["sent"] == 6 and s["filled_qty"] == 350
    stream = sim.call(lambda v: list(v.exchange.accounts["U1"].stream))
    assert_journal_equals_venue(journal, stream, ids)
    recs, _ = journal_view(journal)
    assert [recs[i].state for i in ids] == [S.FILLED, S.FILLED, S.FILLED, S.PARTIALLY_FILLED, S.ACKNOWLEDGED,
                                            S.ACKNOWLEDGED]


def test_route_rerun_whose_venue_drops_during_the_replay_waits_for_the_next_logins_replay(sim, tmp_path):
    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    ids = write_basket(basket, [("D1", "AAPL", "1.00"), ("D2", "AAPL", "1.00")])  # both rest
    args = ["--venue", f"ouch://127.0.0.1:{sim.port}?user=U1&heartbeat=0.2", "--orders", str(basket),
            "--journal", str(journal), "--json"]
    assert rerun(*args)["acked"] == 2
    sim.call(lambda s: s.mute("U1"))  # what happens now is stored, not written: the re-run's login gets no replay
    seller = OuchConnector("u2", "127.0.0.1", sim.port, user="U2", heartbeat_interval=0.2)
    try:
        seller.connect()
        seller.send(Order("S1", "AAPL", Side.SELL, 100, 1_0000))  # fills D1 while we are away
        wait_for(lambda: sim.call(lambda s: s.exchange.counts["executions"]) >= 1, what="the fill")
    finally:
        seller.close()
    logins = sim.call(lambda s: s.counts["logins"])
    p = route(*args)
    try:
        wait_for(lambda: sim.call(lambda s: s.counts["logins"]) > logins, what="the re-run's login")
        sim.call(lambda s: s.mute("U1", False))  # the link fails mid-replay: the next login replays
        out, err = p.communicate(timeout=2 * int(PATIENCE) + 60)
    finally:
        reap(p)
    assert p.returncode == 0, err
    s = json.loads(out)
    assert (s["filled"], s["open"], s["timed_out"]) == (1, 1, False)
    assert s["venues"][next(iter(s["venues"]))]["reconnects"] == 1
    assert_journal_equals_venue(journal, stream_of(sim), ids)


# --- real processes, against nasdaq-protocols' SoupBinTCP server ------------------------------------------


class HoldingVenue(NpVenue):
    """NpVenue (acks all, fills FILL) that also half-fills HALF, can hold its answers back (``mute``:
    taken, stored aside, sequenced only when unmuted) or lose requests (``deaf``), and counts what it
    took per ClOrdID and the UserRefNums in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self.mute = self.deaf = False
        self.lost = 0
        self.held: list[bytes] = []
        self.taken: Counter[str] = Counter()
        self.refs: list[int] = []
        self.half: dict[int, tuple[int, int]] = {}  # ref → (qty left, price) of HALF orders

    def handle(self, user: str, msg) -> None:
        if self.deaf:
            self.lost += 1
            return
        if isinstance(msg, NpEnterOrder):
            self.taken[msg.cl_ord_id] += 1
            self.refs.append(msg.user_ref_num)
        stream = self.streams[user]
        before = len(stream)
        super().handle(user, msg)
        if isinstance(msg, NpEnterOrder) and msg.symbol == "HALF":
            self.half[msg.user_ref_num] = (msg.quantity // 2, msg.price)
            self.execute(user, msg.user_ref_num, msg.quantity - msg.quantity // 2, msg.price)
        if self.mute:  # stored aside: nothing of it is written now
            self.held += stream[before:]
            del stream[before:]

    def execute(self, user: str, ref: int, qty: int, price: int) -> None:
        self.matches += 1
        self.streams[user].append(np_message(NpOrderExecuted, timestamp=5, user_ref_num=ref, quantity=qty,
                                             price=price, liquidity_flag="A", match_number=self.matches,
                                             appendage=b"").to_bytes()[1])

    def release(self, user: str) -> None:
        """Unmute and hear again; the held answers join the stream, then the HALF orders fill."""
        self.mute = self.deaf = False
        self.streams[user] += self.held
        self.held = []
        for ref, (qty, price) in self.half.items():
            self.execute(user, ref, qty, price)


def test_route_killed_after_sending_and_mid_fill_then_rerun_against_nasdaq_protocols(tmp_path):
    venue = HoldingVenue().start()
    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    kinds = ("FILL", "REST", "HALF")
    ids = write_basket(basket, [(f"N{i:03d}", kinds[i % 3], "10.00") for i in range(40)])
    url = f"ouch://127.0.0.1:{venue.port}?user=NQ1&password=pw&heartbeat=0.1"
    args = ["--venue", url, "--orders", str(basket), "--journal", str(journal), "--json"]
    taken = lambda: venue.run(lambda: sum(venue.taken.values()))  # noqa: E731
    try:
        p = route(*args, "--rate", "10")  # bursts of ten a second
        try:
            wait_for(lambda: taken() >= 10 and journaled_fills(journal) >= 6, what="ten orders answered")
            venue.run(lambda: setattr(venue, "mute", True))
            wait_for(lambda: taken() >= 20, what="ten orders taken while muted")
            venue.run(lambda: setattr(venue, "deaf", True))
            kill9_when(p, lambda: venue.run(lambda: venue.lost) >= 10, "ten lost requests")
        finally:
            reap(p)
        lost = venue.run(lambda: venue.lost)
        recs, _ = journal_view(journal)
        assert any(r.state is S.PARTIALLY_FILLED for r in recs.values())  # killed mid-fill of a HALF order
        assert sum(r.state is S.SENT for r in recs.values()) >= 10 + lost
        assert len(recs) < len(ids), "the kill must land mid-basket"
        venue.run(lambda: venue.release("NQ1"))  # the HALF orders fill while the router is down

        s = rerun(*args)
        assert s["recovered"]["resent_orders"] >= lost and s["unconfirmed"] == 0
        catch_up(*args)
        stream = venue.run(lambda: list(venue.streams["NQ1"]))
        assert_journal_equals_venue(journal, stream, ids)
        assert venue.run(lambda: dict(venue.taken)) == dict.fromkeys(ids, 1)  # each order taken exactly once
        refs = venue.run(lambda: list(venue.refs))
        assert refs == sorted(set(refs))  # UserRefNums strictly increasing across both runs
        assert [login[1] for login in venue.logins][0] == 1 and venue.logins[-1][1] > 1  # resumed, not from 1
    finally:
        venue.stop()


# --- the narrowest kill point: journaled (and synced), killed before the request left -------------------


def crash_after_journal_sync(journal: Path, venue: str, order: Order) -> None:
    """What a kill -9 between the router's journal sync and its socket write leaves on disk: the
    order's record, written and synced by the same calls the router makes before a send."""
    with Journal(str(journal)) as j:
        j.orders([(venue, order)], 1)
        j.sync()


def test_order_journaled_but_killed_before_it_left_is_sent_once_on_rerun_ouch(sim, tmp_path):
    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    args = ["--venue", f"ouch://127.0.0.1:{sim.port}?user=U1&heartbeat=0.2&name=v1", "--orders", str(basket),
            "--journal", str(journal), "--json"]
    write_basket(basket, [("A1", "AAPL", "1.00")])
    assert rerun(*args)["acked"] == 1
    crash_after_journal_sync(journal, "v1", Order("G1", "AAPL", Side.BUY, 100, 1_0000))
    ids = write_basket(basket, [("A1", "AAPL", "1.00"), ("G1", "AAPL", "1.00"), ("A2", "AAPL", "1.00")])
    s = rerun(*args)
    assert s["skipped"] == 2 and s["recovered"] == {"resent_orders": 1} and s["unconfirmed"] == 0
    assert_journal_equals_venue(journal, sim.call(lambda v: list(v.exchange.accounts["U1"].stream)), ids)
    assert sim.call(lambda v: v.exchange.counts["rejects"]) == 0


def test_order_journaled_but_killed_before_it_left_is_sent_once_on_rerun_fix(tmp_path):
    from xdpgw.orders.fix.acceptor import FixVenue

    from .fix_rig import REFS

    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    with FixVenue(references=dict(REFS), state_dir=tmp_path / "venue") as venue:
        args = ["--venue", venue.url(tmp_path / "us") + "&name=v1", "--orders", str(basket),
                "--journal", str(journal), "--json"]
        write_basket(basket, [("A1", "AAPL", "1.00")])
        assert rerun(*args)["acked"] == 1
        crash_after_journal_sync(journal, "v1", Order("G1", "AAPL", Side.BUY, 100, 1_0000))
        write_basket(basket, [("A1", "AAPL", "1.00"), ("G1", "AAPL", "1.00"), ("A2", "AAPL", "1.00")])
        s = rerun(*args)
        assert s["skipped"] == 2 and s["recovered"] == {"resent_orders": 1} and s["unconfirmed"] == 0
        assert sorted(venue.books) == ["A1", "A2", "G1"] and venue.counts["rejects"] == 0
        recs, _ = journal_view(journal)
        assert [recs[i].state for i in ("A1", "G1", "A2")] == [S.ACKNOWLEDGED] * 3


def crash_after_request_journaled(journal: Path, *requests: tuple) -> None:
    """As :func:`crash_after_journal_sync` for cancels (``("X", id, qty)``: 0 cancels, more reduces to
    that many shares) and replaces (``("R", orig, new order)``)."""
    with Journal(str(journal)) as j:
        for kind, cid, arg in requests:
            if kind == "X":
                j.cancel(cid, arg, 1)
            else:
                j.replace(cid, arg, 1)
        j.sync()


@pytest.fixture(params=["simulator", "nasdaq-protocols"])
def ouch_venue(request, sim) -> Iterator[tuple[str, Callable[[], list[bytes]]]]:
    """An OUCH venue, ours or one on nasdaq-protocols' server: its URL and its user's sequenced stream."""
    if request.param == "simulator":
        yield f"ouch://127.0.0.1:{sim.port}?user=U1&heartbeat=0.2&name=v1", lambda: stream_of(sim)
        return
    venue = HoldingVenue().start()
    try:
        yield (f"ouch://127.0.0.1:{venue.port}?user=NQ1&password=pw&heartbeat=0.1&name=v1",
               lambda: venue.run(lambda: list(venue.streams["NQ1"])))
    finally:
        venue.stop()


def test_reduction_and_cancel_journaled_but_killed_before_they_left_are_sent_once_on_rerun(ouch_venue, tmp_path):
    (url, stream), basket, journal = ouch_venue, tmp_path / "b.csv", tmp_path / "j"
    args = ["--venue", url, "--orders", str(basket), "--journal", str(journal), "--json"]
    ids = write_basket(basket, [("A1", "REST", "1.00"), ("A2", "REST", "1.00")])
    assert rerun(*args)["acked"] == 2
    crash_after_request_journaled(journal, ("X", "A1", 40), ("X", "A2", 0))
    s = rerun(*args)
    assert s["recovered"] == {"resent_reductions": 1, "resent_cancels": 1} and s["unconfirmed"] == 0
    assert_journal_equals_venue(journal, stream(), ids)
    v = venue_view(stream())
    assert (v["A1"]["open"], v["A1"]["cancelled"], v["A2"]["cancelled"]) == (40, 60, 100)  # each taken once
    recs, _ = journal_view(journal)
    assert (recs["A1"].state, recs["A1"].leaves_qty, recs["A2"].state) == (S.ACKNOWLEDGED, 40, S.CANCELLED)


def test_cancel_reduction_and_replace_the_fix_engine_never_took_are_sent_on_rerun(tmp_path):
    from xdpgw.orders.fix.acceptor import FixVenue

    from .fix_rig import REFS

    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    with FixVenue(references=dict(REFS), state_dir=tmp_path / "venue") as venue:
        args = ["--venue", venue.url(tmp_path / "us") + "&name=v1", "--orders", str(basket),
                "--journal", str(journal), "--json"]
        write_basket(basket, [("A1", "AAPL", "1.00"), ("A2", "AAPL", "1.00"), ("A3", "AAPL", "1.00")])
        assert rerun(*args)["acked"] == 3
        crash_after_request_journaled(journal, ("X", "A1", 0), ("X", "A3", 40),
                                      ("R", "A2", Order("A2B", "AAPL", Side.BUY, 100, 1_0100, venue="v1")))
        s = rerun(*args)
        assert s["recovered"] == {"resent_cancels": 1, "resent_reductions": 1, "resent_replaces": 1}
        assert s["unconfirmed"] == 0 and not s["timed_out"]
        a2b, reduced = sorted(venue.open_orders())  # a reduction is a replace in FIX: A3 has our own id now
        assert (a2b, reduced[:2], venue.books[reduced].leaves) == ("A2B", "XR", 40) and venue.counts["cancels"] == 1
        assert venue.counts["rejects"] == venue.counts["cancel_rejects"] == 0 and not venue.errors
        recs, _ = journal_view(journal)
        assert [recs[i].state for i in ("A1", "A2", "A2B", "A3")] == [S.CANCELLED, S.REPLACED, S.ACKNOWLEDGED,
                                                                      S.ACKNOWLEDGED]
        assert recs["A3"].leaves_qty == 40


def test_route_timing_out_on_a_silent_venue_says_so_and_a_rerun_resumes(sim, tmp_path):
    basket, journal = tmp_path / "b.csv", tmp_path / "j"
    ids = write_basket(basket, [("T1", "MSFT", "400.01"), ("T2", "AAPL", "1.00")])
    args = ["--venue", f"ouch://127.0.0.1:{sim.port}?user=U1&heartbeat=0.2", "--orders", str(basket),
            "--journal", str(journal), "--json"]
    sim.call(lambda s: s.mute("U1"))  # logs in, takes the orders, answers nothing
    r = subprocess.run(xdpgw_cmd(None, "route", *args, "--timeout", "1"), capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 1 and "2 orders still wait for the venue" in r.stderr, r.stderr
    assert "same --journal resumes" in r.stderr and json.loads(r.stdout)["timed_out"]
    sim.call(lambda s: s.mute("U1", False))
    s = rerun(*args)
    assert s["skipped"] == 2 and s["recovered"] == {} and (s["filled"], s["open"]) == (1, 1)
    assert_journal_equals_venue(journal, sim.call(lambda v: list(v.exchange.accounts["U1"].stream)), ids)
