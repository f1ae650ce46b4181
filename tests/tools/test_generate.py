"""The synthetic feed (faults as reported, stamps, pacing), pcap replay and the send/replay CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from xdpgw.batch import Batch
from xdpgw.errors import GatewayError
from xdpgw.protocol import itch
from xdpgw.protocol.decode import decode_batch
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.tools.generate import BurstMode, Faults, Feed, run_feed
from xdpgw.tools.replay import load_pcap, replay
from xdpgw.transport.socket import SocketReceiver, SocketSender

DAY = 86_400_000_000_000


class FakeClock:
    """A clock that only moves when slept on (pacing logic without real time)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class CountingSender:
    """Pure-logic stand-in for a Sender: remembers what it got and when."""

    transport = "mock"

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock, self.bursts = clock, []

    def send_batch(self, batch: Batch) -> int:
        self.bursts.append((self.clock() if self.clock else 0.0, batch.copy()))
        return batch.count

    def stats(self) -> dict[str, int]:
        return {"packets": sum(b.count for _, b in self.bursts)}


def test_faults_are_exactly_what_a_receiver_sees():
    feed = Feed("FAULTY", faults=Faults(gap_every=7, dup_every=5, malformed_every=11), pool=300, seed=2)
    seq, errors = Sequencer(), {}
    now = 1_700_000_000_123_456_789
    for _ in range(10):
        dec = decode_batch(feed.next_burst(99, now))  # 990 packets: the last one (990) is no gap
        for k, v in dec.errors.items():
            errors[k] = errors.get(k, 0) + v
        for recs in dec.by_type.values():
            assert np.all(itch.timestamps(recs) == now % DAY)
        seq.on_decoded(dec, 0.0)
    rep, st = feed.report(), seq.stats()
    assert rep["feed_packets"] == 990 and rep["gap_packets"] == 990 // 7 and rep["malformed"] == 990 // 11
    assert rep["duplicates"] == len([k for k in range(1, 991) if k % 5 == 0 and k % 7])
    assert errors == {"short_packet": rep["malformed"]}
    assert st["gaps"] == rep["gap_packets"] and st["gap_messages"] == rep["gap_messages"]
    assert st["duplicates"] == rep["duplicate_messages"] and st["delivered"] == rep["messages"]
    assert rep["datagrams"] == 990 - rep["gap_packets"] + rep["duplicates"] + rep["malformed"]
    assert rep["next_seq"] == 1 + rep["messages"] + rep["gap_messages"]


def test_feed_rejects_a_gap_every_packet():
    with pytest.raises(GatewayError, match="gap-every"):
        Feed(faults=Faults(gap_every=1))


def test_paced_by_packets_per_burst_not_per_packet():
    clock = FakeClock()
    sender = CountingSender(clock)
    out = run_feed(sender, Feed(pool=512), rate=10_000, duration=1.0, clock=clock, sleep=clock.sleep,
                   realtime=lambda: 0)
    assert 9_900 <= out["feed_packets"] <= 10_000
    assert out["bursts"] < out["feed_packets"] / 2  # bursts, not one call per packet


def test_paced_by_messages_and_burst_mode():
    clock = FakeClock()
    out = run_feed(CountingSender(clock), Feed(msgs_per_packet=(4, 4), pool=512), msgs_rate=8_000,
                   duration=1.0, clock=clock, sleep=clock.sleep, realtime=lambda: 0)
    assert 7_900 <= out["messages"] <= 8_050
    clock = FakeClock()
    sender = CountingSender(clock)
    out = run_feed(sender, Feed(pool=4096), rate=1_000, duration=1.0, burst=BurstMode(100, 0.1, 1.0),
                   clock=clock, sleep=clock.sleep, realtime=lambda: 0)
    in_burst = sum(b.count for t, b in sender.bursts if t < 0.1)
    assert 9_500 <= in_burst <= 10_100 and 10_300 <= out["feed_packets"] <= 11_000  # 100x for 100 ms, then 1x


def test_generated_feed_over_loopback_arrives():
    with SocketReceiver(0, "127.0.0.1") as rx, SocketSender("127.0.0.1", rx.port) as tx:
        out = run_feed(tx, Feed(faults=Faults(dup_every=10)), count=500, rate=50_000)
        got: list[bytes] = []
        deadline = time.monotonic() + 2
        while len(got) < out["datagrams"] and time.monotonic() < deadline:
            got += rx.recv_batch(256, timeout=0.05).payloads()
    assert len(got) == out["datagrams"] == 550 and out["unsent"] == 0
    assert decode_batch(Batch.from_payloads(got)).errors == {}


# --- replay ----------------------------------------------------------------------------------------
@pytest.fixture
def capture(tmp_path):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    pkts = []
    for i in range(20):
        p = Ether() / IP(dst="1.2.3.4") / UDP(dport=9001) / Raw(b"pkt%03d" % i)
        p.time = 1000 + i * 0.005
        pkts.append(p)
    extra = [Ether() / Dot1Q(vlan=7) / IPv6() / UDP(dport=9001) / Raw(b"vlan-v6"),
             Ether() / IP() / TCP() / Raw(b"tcp"), Ether() / IP(flags="MF") / UDP(dport=9001) / Raw(b"frag"),
             Ether() / IP() / UDP(dport=9002) / Raw(b"other-port")]
    for j, p in enumerate(extra):
        p.time = 1000.1 + j * 0.001
    path = tmp_path / "feed.pcap"
    wrpcap(str(path), pkts + extra)
    return path


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_load_pcap_takes_udp_payloads(capture, fmt, tmp_path):
    path = capture
    if fmt == "pcapng":
        from scapy.utils import rdpcap, wrpcapng

        path = tmp_path / "feed.pcapng"
        wrpcapng(str(path), rdpcap(str(capture)))
    cap = load_pcap(path, port=9001)
    b = cap.batch(0, len(cap))
    assert b.payloads() == [b"pkt%03d" % i for i in range(20)] + [b"vlan-v6"]
    assert cap.ts_ns[1] == 5_000_000 and cap.ts_ns[-1] == 100_000_000
    assert cap.skipped == {"not_udp": 1, "fragments": 1, "other_ports": 1}


def test_replay_keeps_timing_and_loops(capture):
    cap = load_pcap(capture, port=9001)
    clock = FakeClock()
    sender = CountingSender(clock)
    out = replay(sender, cap, speed=2.0, loop=3, clock=clock, sleep=clock.sleep)
    assert out["packets"] == 3 * len(cap) and out["loops"] == 3
    times = np.array([t for t, b in sender.bursts for _ in range(b.count)])
    assert times[20] >= 0.05 and 0.05 <= times[len(cap)] < 0.06  # 100 ms at 2x; laps back to back
    assert np.all(np.diff(times) >= 0) and 0.15 <= times[-1] < 0.16
    clock = FakeClock()
    out = replay(CountingSender(clock), cap, rate=100, clock=clock, sleep=clock.sleep)
    assert out["packets"] == len(cap) and 0.19 <= out["seconds"] <= 0.25


def test_replay_over_loopback(capture):
    cap = load_pcap(capture)
    with SocketReceiver(0, "127.0.0.1") as rx, SocketSender("127.0.0.1", rx.port) as tx:
        out = replay(tx, cap, rate=10_000)
        got = rx.recv_batch(256, timeout=1).payloads()
    assert out["packets"] == len(got) == 22 and got[-1] == b"other-port"


# --- CLI -------------------------------------------------------------------------------------------
def test_cli_send_and_replay_report_json(capture):
    from xdpgw.cli.send import replay as replay_cmd
    from xdpgw.cli.send import send

    runner = CliRunner()
    with SocketReceiver(0, "127.0.0.1") as rx:
        res = runner.invoke(send, ["--dest", f"127.0.0.1:{rx.port}", "--count", "200", "--rate", "20000",
                                   "--gap-every", "10", "--malformed-every", "50", "--json"])
        assert res.exit_code == 0, res.output
        rep = json.loads(res.stdout.splitlines()[0])
        assert rep["gap_packets"] == 20 and rep["malformed"] == 4 and rep["datagrams"] == 184
        res = runner.invoke(replay_cmd, [str(capture), "--dest", f"127.0.0.1:{rx.port}", "--port", "9001",
                                         "--speed", "10", "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout.splitlines()[0])["packets"] == 21
        n, deadline = 0, time.monotonic() + 2
        while n < 205 and time.monotonic() < deadline:
            n += rx.recv_batch(256, timeout=0.05).count
    assert n == 205


@pytest.mark.parametrize("args, fix", [
    (["--dest", "nohost", "--count", "1"], "HOST:PORT"),
    (["--dest", "127.0.0.1:9", "--transport", "xdp", "--count", "1"], "--iface"),
    (["--dest", "127.0.0.1:9"], "--count"),
    (["--dest", "127.0.0.1:9", "--count", "1", "--burst", "fast"], "FACTORxSECONDS"),
])
def test_cli_errors_name_the_fix(args, fix):
    from xdpgw.cli.send import send

    res = CliRunner().invoke(send, args)
    assert res.exit_code == 2 and fix in res.output
