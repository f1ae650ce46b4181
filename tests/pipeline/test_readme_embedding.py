"""The README's embedding loop, run as written against a kernel socket on loopback (no root).

The only changes made to the snippet: the receiver it names in a comment (``SocketReceiver``) instead of
an XdpReceiver on eth0, and ``while True`` bounded by a check that also records what was delivered."""

from __future__ import annotations

import re
import time

from tests.helpers import ROOT
from xdpgw.batch import Batch
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import encode_packet
from xdpgw.transport.socket import SocketSender

SESSION = "EMBED00001"
XDP_IMPORT = "from xdpgw.transport.xdp.rx import XdpReceiver"
XDP_OPEN = 'XdpReceiver("eth0", queue=1, ports=[9001])'


def readme_embedding() -> str:
    text = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"Python API \(embedding\):\n\n```python\n(.*?)```", text, re.S)
    return code


def on_loopback(code: str) -> str:
    """The snippet on a kernel socket bound to a free loopback port, its loop bounded by ``running()``."""
    for old, new in ((XDP_IMPORT, "from xdpgw.transport.socket import SocketReceiver"),
                     (XDP_OPEN, 'SocketReceiver(0, bind_addr="127.0.0.1", rcvbuf=1 << 20)'),
                     ("while True:", "while running():")):
        assert code.count(old) == 1, f"the README's embedding snippet no longer has {old!r}"
        code = code.replace(old, new)
    return code


def packets() -> list[bytes]:
    """Ten adds in five packets of two, the third packet (messages 5 and 6) never sent."""
    def add(seq: int) -> bytes:
        return itch.encode_message("A", locate=1, order_ref=seq, side="B", shares=100, stock="AAPL", price=1_000_000)

    return [encode_packet(SESSION, first, [add(first), add(first + 1)]) for first in (1, 3, 7, 9)]


def run_snippet(code: str, want: list[int], quiet_s: float = 0.0, limit_s: float = 20.0) -> dict:
    """Run ``code`` until ``want`` was delivered (or, with ``quiet_s``, for that long once every packet is
    in); the sequence numbers delivered, the adds seen and the feed's counters."""
    seen: dict = {"seq": [], "adds": 0, "sent": False}
    g: dict = {}
    deadline = time.monotonic() + limit_s

    def running() -> bool:
        decoded, rx = g.get("decoded"), g["rx"]
        if decoded is not None:  # this iteration's delivery (the name is bound again on every iteration)
            seen["seq"] += decoded.seq.tolist()
            seen["adds"] += len(g["adds"]) if g.get("adds") is not None else 0
        if not seen["sent"]:
            with SocketSender("127.0.0.1", rx.port) as tx:
                assert tx.send_batch(Batch.from_payloads(packets())) == 4
            seen["sent"] = True
        if quiet_s and "all_in" not in seen and rx.stats()["packets"] == 4:
            seen["all_in"] = time.monotonic()
        if quiet_s:
            return "all_in" not in seen or time.monotonic() < seen["all_in"] + quiet_s
        return seen["seq"] != want and time.monotonic() < deadline

    g["running"] = running
    exec(compile(code, "README.md", "exec"), g)  # noqa: S102 - the README's own code
    seen["stats"] = g["feed"].stats()
    return seen


def test_the_readme_loop_delivers_what_follows_a_gap_while_the_feed_is_silent():
    got = run_snippet(on_loopback(readme_embedding()), want=[1, 2, 3, 4, 7, 8, 9, 10])
    # 7..10 wait behind the hole at 5..6; no packet follows them, so only the idle poll() gives the hole up
    assert got["seq"] == [1, 2, 3, 4, 7, 8, 9, 10], got
    assert got["adds"] == 8
    assert got["stats"]["missing"] == 2 and got["stats"]["gaps"] == 1 and not got["stats"]["held"], got["stats"]


def test_without_the_idle_poll_the_loop_stalls_behind_the_gap():
    """What the README's loop did before: never poll, so messages after a gap wait for more traffic."""
    code = on_loopback(readme_embedding())
    assert code.count("feed.poll()") == 1
    got = run_snippet(code.replace("feed.poll()", "None"), want=[], quiet_s=0.2)
    assert got["seq"] == [1, 2, 3, 4], got
    assert sum(got["stats"]["held"].values()) == 4, got["stats"]
