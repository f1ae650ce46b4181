"""`xdpgw bench --tick-to-trade`: a very short real run (socket and XDP drv) on a veth lab."""

from __future__ import annotations

import pytest

from tests.helpers import require_xdp
from xdpgw.orders.tick_to_trade import format_table, run_tick_to_trade
from xdpgw.tools.lab import Lab


@pytest.mark.xdp
def test_a_short_tick_to_trade_run_stamps_every_order_and_leaves_no_lab():
    require_xdp()
    res = run_tick_to_trade(rates=(300,), seconds=0.3, transports=("socket", "xdp-drv"))
    assert res["lab"].startswith("xgt") and not Lab(res["lab"]).exists()
    rows = res["rows"]
    assert [(r["transport"], r["rate"]) for r in rows] == [("socket", 300), ("xdp-drv", 300)]
    for r in rows:
        # one order per packet of each delivered batch (the sequencer holds a new session's first packet)
        assert r["packets"] > 0 and r["packets"] - 2 <= r["orders"] <= r["packets"] and r["stamped"] == r["orders"]
        t = r["tick_to_trade_ns"]
        assert t["count"] == r["orders"] and 0 < t["p50"] <= t["p99"] <= t["max"]
        assert r["tick_to_strategy_ns"]["p50"] <= t["p50"]
    assert rows[0]["p50_vs_socket"] == 1.0
    assert "xdp-drv" in format_table(res)
