"""The README's first command: `xdpgw demo`, shortened, end to end (lab, XDP, kernel-socket sender, report)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_xdpgw
from xdpgw.tools.lab import Lab


@pytest.mark.xdp
def test_demo_delivers_everything_sent_finds_the_gap_and_counts_the_bad_packet():
    p = run_xdpgw(None, "demo", "--packets", "3000", "--rate", "5000", "--tick-to-trade", "0.3", "--json",
                  timeout=110)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["transport"] == "xdp" and r["mode"] in ("drv", "skb")
    # every packet the sender sent (a kernel UDP socket: checksum offload over veth) reaches the consumer
    assert r["packets"] == r["sender"]["sent"] == 3000, r
    assert r["gaps"] == 1 and r["missing"] > 0 and r["decode_errors"].get("short_packet") == 1, r
    assert r["messages"] > 0 and r["latency_ns"]["count"] == 3000
    name = r["iface"].removesuffix("-r")
    assert name.startswith("xgd") and not Lab(name).exists(), "the demo left its lab behind"
    t2t = r["tick_to_trade"]
    assert [row["transport"] for row in t2t["rows"]] == ["socket", "xdp-drv"]
    for row in t2t["rows"]:  # every order triggered by a tick was sent, stamped on the way out and acked
        assert row["orders"] > 0 and row["stamped"] == row["orders"] == row["acked"], row
    assert not Lab(t2t["lab"]).exists(), "the tick-to-trade run left its lab behind"
