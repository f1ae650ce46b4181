"""Issue 9, item 1: every message received is accounted for, at any moment and at exit. The shape of a
real TotalView-ITCH capture (one message, then 38 about 4.2 million sequence numbers ahead, nothing
after) used to leave 38 valid messages nowhere in the summary; they are ``held`` (parked far ahead), in
`xdpgw status`, the metrics and one stderr line at exit. A far jump that the session then continues is
delivered after the hole's wait, as one gap."""

from __future__ import annotations

import pytest

from tests.helpers import feed_frames, run_xdpgw, send_frames, serve, value
from xdpgw.pipeline.summary import accounted
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import encode_heartbeat, encode_packet

pytestmark = pytest.mark.xdp
SESSION, JUMP = "TOTALVIEW", 4_200_000


def capture() -> list[bytes]:
    msgs = [itch.encode_message("A", order_ref=k, side="B", shares=1, stock="AAPL", price=1) for k in range(39)]
    return [encode_packet(SESSION, 1, msgs[:1]), encode_packet(SESSION, JUMP, msgs[1:])]


@pytest.mark.parametrize("transport", ["skb", "socket"])
def test_a_far_jump_nothing_continues_is_held_and_reported(lab, transport):
    with serve(lab, transport, "--protocol", "moldudp64") as gw:
        send_frames(lab, feed_frames(lab, capture()))
        got = gw.wait_metrics(lambda m: value(m, "xdpgw_held_messages", reason="parked_far_ahead") == 38,
                              "38 messages held (parked far ahead)")
        assert value(got, "xdpgw_received_messages_total") == 39
        if transport != "socket":  # `xdpgw status` reads the attached consumer's state file
            gw.wait_stats(lambda s: s.get("0", {}).get("held") == {"parked_far_ahead": 38},
                          "the state file to show 38 held")
            text = run_xdpgw(lab.rx_ns, "status", lab.rx_if).stdout
            assert "held 38 messages (parked_far_ahead 38)" in text, text
        summary, err = gw.stop()
    assert summary["messages"] == 1 and summary["received"] == 39 and summary["held"] == {"parked_far_ahead": 38}
    assert accounted(summary) == summary["received"] and summary["missing"] == 0
    line = [ln for ln in err.splitlines() if "held at exit" in ln]
    assert len(line) == 1 and "38 received message(s)" in line[0] and "parked far ahead" in line[0], err
    assert "released by another packet of the session continuing them" in line[0]


def test_a_far_jump_the_session_continues_is_delivered_as_one_gap(lab):
    with serve(lab, "socket", "--protocol", "moldudp64") as gw:
        send_frames(lab, feed_frames(lab, capture() + [encode_heartbeat(SESSION, JUMP + 38)] * 2))
        gw.wait_metrics(lambda m: value(m, "xdpgw_messages_total", type="A") == 39, "39 adds delivered")
        summary, err = gw.stop()
    assert summary["messages"] == 39 and summary["gaps"] == 1 and summary["missing"] == JUMP - 2
    assert summary["held"] == {} and accounted(summary) == summary["received"] == 39
    assert "held at exit" not in err


def test_the_status_line_shows_what_is_held_only_when_something_is():
    from xdpgw.pipeline.gateway import status_text

    base = {"transport": "xdp", "packets": 2, "bytes": 100, "drops": 0, "messages": 1, "gaps": 0}
    assert "held" not in status_text({**base, "held": {}}, 1.0)
    assert "held 38 (parked_far_ahead 38)" in status_text({**base, "held": {"parked_far_ahead": 38}}, 1.0)
