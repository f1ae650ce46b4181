"""`xdpgw attach|listen` options end to end, as users run them, on a veth lab with real packets:
--handler (and a handler that raises), --symbols, --line-b on both transports, --retransmit driven by the
idle loop, --force, --hugepages, the live status line, SIGINT, XDPGW_DEATH_NOTICE=0."""

from __future__ import annotations

import json
import signal

import pytest

from tests.handlers import calls
from tests.helpers import (
    RerequestServer,
    Xdpgw,
    attach,
    attached,
    feed_frames,
    send_frames,
    summary_of,
    wait_for,
)
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import encode_packet
from xdpgw.tools.lab import in_netns

pytestmark = pytest.mark.xdp

SESSION = "CLIOPTS001"


def add(seq: int, locate: int, stock: str) -> bytes:
    return itch.encode_message("A", locate=locate, order_ref=seq, side="B", shares=100, stock=stock, price=1_000_000)


def one(seq: int) -> bytes:
    """A packet carrying message ``seq`` alone."""
    return encode_packet(SESSION, seq, [itch.encode_message("D", locate=1, order_ref=seq)])


def seqs_seen(path) -> list[int]:
    return [s for row in calls(path) for s in row.get("seq", [])]


def test_handlers_get_only_the_subscribed_symbol_and_a_raising_one_never_stops_the_feed(lab, tmp_path):
    out = tmp_path / "calls.jsonl"
    msgs = [itch.encode_message("R", locate=5, stock="AAPL"), itch.encode_message("R", locate=6, stock="MSFT")]
    msgs += [add(i, 5 + i % 2, ("AAPL", "MSFT")[i % 2]) for i in range(8)]
    packets = [encode_packet(SESSION, 1, msgs[:5]), encode_packet(SESSION, 6, msgs[5:])]
    with attach(lab, "--protocol", "moldudp64", "--symbols", "AAPL", "--handler", "tests.handlers:explode",
                "--handler", "tests.handlers:record", "--count", "2", "--duration", "60", "--json",
                env={"XDPGW_TEST_OUT": str(out)}) as gw:
        send_frames(lab, feed_frames(lab, packets))
        summary = summary_of(gw)
    rows = calls(out)
    assert [s for r in rows for s in r["stocks"]] == ["AAPL"] * 4, rows  # MSFT's adds filtered out
    assert seqs_seen(out) == [1, 3, 5, 7, 9], rows  # AAPL's directory entry and its four adds, in order
    # the first handler raised on every call; the second still saw every delivery, the consumer kept going
    assert summary["handler_errors"] == len(rows) >= 1
    assert summary["last_handler_error"] == "RuntimeError: boom in user code"
    assert summary["packets"] == 2 and summary["messages"] == 5


def test_line_b_arbitrates_a_and_b_on_the_xdp_path(lab, tmp_path):
    """A misses 3 and 5; B carries everything; A and B interleave on the wire as two lines would."""
    out = tmp_path / "calls.jsonl"
    a, b = [1, 2, 4, 6], [1, 2, 3, 4, 5, 6]
    order = [(9001, 1), (9002, 1), (9001, 2), (9002, 2), (9002, 3), (9001, 4), (9002, 4), (9002, 5), (9001, 6),
             (9002, 6)]
    frames = [f for port, seq in order for f in feed_frames(lab, [one(seq)], dport=port)]
    with attach(lab, "--protocol", "moldudp64", "--line-b", "9002", "--handler", "tests.handlers:record",
                "--count", str(len(a) + len(b)), "--duration", "60", "--json", "--mode", "drv",
                env={"XDPGW_TEST_OUT": str(out)}) as gw:
        assert gw.wait_attached()["consumer"]["ports"] == [9001, 9002]
        send_frames(lab, frames)
        summary = summary_of(gw)
    assert seqs_seen(out) == [1, 2, 3, 4, 5, 6]  # each once, in order
    assert summary["messages"] == 6 and summary["duplicates"] == 4 and summary["missing"] == 0, summary
    assert [line["first"] for line in summary["lines"]] == [4, 2], summary["lines"]


def test_line_b_on_kernel_sockets(lab, tmp_path):
    out = tmp_path / "calls.jsonl"
    with Xdpgw(lab, "listen", "--port", "9001", "--line-b", "9002", "--protocol", "moldudp64", "--handler",
               "tests.handlers:record", "--count", "9", "--duration", "60", "--json",
               env={"XDPGW_TEST_OUT": str(out)}) as gw:
        gw.read_line("listening on UDP port(s) 9001, 9002")
        send_frames(lab, feed_frames(lab, [one(s) for s in range(1, 6)], dport=9002))  # B: all of it
        wait_for(lambda: seqs_seen(out) == [1, 2, 3, 4, 5], 20, "line B's messages to be delivered")
        send_frames(lab, feed_frames(lab, [one(s) for s in (1, 2, 4, 5)], dport=9001))  # A: late, and 3 lost
        summary = summary_of(gw)
    assert seqs_seen(out) == [1, 2, 3, 4, 5]
    assert summary["transport"] == "socket" and summary["messages"] == 5 and summary["duplicates"] == 4, summary
    assert [line["first"] for line in summary["lines"]] == [0, 5], summary["lines"]


def test_a_gap_is_filled_by_retransmission_while_the_feed_is_silent(lab, tmp_path):
    """Packets 1, 2, then 5, 6, 7 and nothing more: only the idle loop's poll() can ask for 3-4 and deliver."""
    out = tmp_path / "calls.jsonl"
    store = {s: itch.encode_message("D", locate=1, order_ref=s) for s in range(1, 10)}
    server = RerequestServer(store, netns=lab.rx_ns).start()
    try:
        with attach(lab, "--protocol", "moldudp64", "--retransmit", f"127.0.0.1:{server.addr[1]}",
                    "--handler", "tests.handlers:record", "--duration", "60", "--json",
                    env={"XDPGW_TEST_OUT": str(out)}) as gw:
            send_frames(lab, feed_frames(lab, [one(s) for s in (1, 2, 5, 6, 7)]))
            wait_for(lambda: seqs_seen(out) == [1, 2, 3, 4, 5, 6, 7], 20, "the retransmitted 3-4 to be delivered")
            gw.signal(signal.SIGTERM)
            rc, stdout, err = gw.finish()
    finally:
        server.close()
    assert rc == 128 + signal.SIGTERM, err
    summary = json.loads(stdout)
    assert (summary["gaps"], summary["missing"], summary["recovered"]) == (1, 0, 2), summary
    assert [(r.first, r.count) for r in server.requests][:1] == [(3, 2)]


def test_force_replaces_a_foreign_program_and_leaves_the_interface_clean(lab):
    from bcc import BPF

    with in_netns(lab.rx_ns):
        other = BPF(text=b"int someone_else(struct xdp_md *ctx) { return XDP_PASS; }")
        BPF.attach_xdp(lab.rx_if.encode(), other.load_func(b"someone_else", BPF.XDP), 1 << 1)
    try:
        assert attached(lab).name == "someone_else"
        with attach(lab, "--force", "--mode", "skb", "--count", "3", "--duration", "60", "--json") as gw:
            assert attached(lab).name == "xdpgw_rx"
            send_frames(lab, feed_frames(lab, [b"forced"] * 3))
            assert summary_of(gw)["packets"] == 3
        assert attached(lab) is None  # ours detached at exit; the foreign one was replaced, not restored
    finally:
        with in_netns(lab.rx_ns):
            if attached(lab) is not None:
                BPF.remove_xdp(lab.rx_if.encode(), 1 << 1)
        other.cleanup()


def test_hugepages_umem_receives_the_feed(lab):
    """--hugepages: the UMEM on huge pages, or (none reserved here) a note and normal pages; either way it works."""
    with Xdpgw(lab, "attach", lab.rx_if, "--hugepages", "--count", "20", "--duration", "60", "--json") as gw:
        gw.wait_attached()
        send_frames(lab, feed_frames(lab, [b"huge-%d" % i for i in range(20)]))
        summary = summary_of(gw)
    assert summary["packets"] == 20 and summary["drops"] == 0
    assert attached(lab) is None
    # and which one it got: huge pages exactly when enough are free (or may be made) for the 8 MiB UMEM
    import re
    from pathlib import Path

    from tests.helpers import open_receiver

    meminfo = Path("/proc/meminfo").read_text()
    free = int(re.search(r"HugePages_Free:\s+(\d+)", meminfo).group(1))
    free += int(Path("/proc/sys/vm/nr_overcommit_hugepages").read_text())
    size = int(re.search(r"Hugepagesize:\s+(\d+) kB", meminfo).group(1)) << 10
    with open_receiver("xdp-drv", lab, hugepages=True, frames=4096, frame_size=2048) as rx:
        assert rx.describe()["hugepages"] == (free * size >= 4096 * 2048), meminfo


def test_the_live_status_line_shows_the_running_totals(lab):
    """Without --quiet and with stderr not a terminal: one status line per second, totals as they grow."""
    with Xdpgw(lab, "attach", lab.rx_if, "--protocol", "moldudp64", "--duration", "60") as gw:
        gw.read_line("attached to " + lab.rx_if)
        send_frames(lab, feed_frames(lab, [one(s) for s in range(1, 8)]))
        line = gw.read_line("total 7 pkts")
        gw.signal(signal.SIGINT)
        rc, _, err = gw.finish()
    assert line.startswith("xdp | ") and "msgs 7 gaps 0" in line and "drops 0" in line, line
    assert "\r" not in err  # no terminal: whole lines, never rewritten in place
    assert rc == 0, err  # Ctrl-C: a clean stop with the summary
    assert "7 packets" in err.splitlines()[-1], err
    assert attached(lab) is None


def test_ctrl_c_of_one_queue_stops_cleanly_with_the_summary(lab):
    with attach(lab, "--duration", "60", "--json") as gw:
        send_frames(lab, feed_frames(lab, [b"before-ctrl-c"] * 4))
        gw.wait_stats(lambda st: st["0"]["packets"] == 4, "4 packets")
        gw.signal(signal.SIGINT, group=True)  # as a terminal sends it: to the whole process group
        summary = summary_of(gw)
    assert summary["packets"] == 4
    assert attached(lab) is None
