"""The pipeline assembled from one `Options` (no root): defaults shared by the CLI, the receivers and the
doctor; Options through a dict and through the command line and back; Options → receiver kind, feed and
handler chain; and the whole `xdpgw listen` pipeline over kernel sockets on loopback with A/B lines."""

from __future__ import annotations

import contextlib
import inspect
import json
import re

import pytest
from click.testing import CliRunner

from xdpgw.batch import Batch
from xdpgw.cli.main import main
from xdpgw.errors import GatewayError
from xdpgw.ops import doctor
from xdpgw.pipeline import assembly
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.pipeline.options import DEFAULTS, FeedOptions, Options, ProgramOptions, ReceiverOptions, RunOptions
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import encode_packet
from xdpgw.transport.socket import SocketReceiver, SocketSender
from xdpgw.transport.xdp.rx import XdpReceiver

LOOPBACK = ReceiverOptions(transport="socket", ports=(0,), bind_addr="127.0.0.1", rcvbuf=1 << 20)
TWO_LINES = FeedOptions(protocol="moldudp64", line_b=0, handlers=("tests.pipeline.test_assembly:collect",))
DELIVERED: list = []


def collect(item) -> None:
    """A ``module:function`` handler: notes the sequence numbers of each delivery."""
    DELIVERED.append(item.seq.tolist())


def click_defaults(command: str) -> dict[str, object]:
    return {p.name: p.default for p in main.commands[command].params}


def signature_defaults(cls) -> dict[str, object]:
    return {k: p.default for k, p in inspect.signature(cls).parameters.items() if p.default is not p.empty}


# --- one set of defaults --------------------------------------------------------------------------------
def test_the_commands_defaults_are_the_options_defaults():
    rx, prog, run = DEFAULTS.receiver, DEFAULTS.program, DEFAULTS.run
    attach = click_defaults("attach")
    assert (attach["frames"], attach["spin_us"], attach["mode"], tuple(attach["ports"])) == (
        rx.frames, rx.spin_us, rx.mode, rx.ports)
    assert attach["queue_spec"] == "0" and rx.queues == (0,)
    assert (attach["deny"], attach["rate_burst"]) == (prog.deny, prog.rate_burst)
    assert (attach["pcap_max_mb"], attach["pcap_sample"]) == (run.pcap_max_mb, run.pcap_sample)
    listen = click_defaults("listen")
    assert (listen["port"], listen["bind_addr"], listen["rcvbuf"]) == (rx.ports[0], rx.bind_addr, rx.rcvbuf)
    assert click_defaults("demo")["mode"] == rx.mode
    assert click_defaults("doctor")["frames"] == rx.frames


def test_the_receivers_open_with_the_options_sizes_by_default():
    """The receivers' own keyword defaults (for embedding) agree with the Options, but for the idle spin:
    a bare ``recv_batch`` returns at once, the pipeline's consumer loop spins ``spin_us`` first."""
    rx = DEFAULTS.receiver
    xdp = signature_defaults(XdpReceiver)
    for name in ("frames", "frame_size", "rx_size", "batch", "hugepages", "verify_checksums", "mode"):
        assert xdp[name] == getattr(rx, name), name
    assert tuple(xdp["ports"]) == rx.ports
    assert xdp["spin_us"] == 0 and rx.spin_us == 200
    sock = signature_defaults(SocketReceiver)
    for name in ("bind_addr", "group", "rcvbuf", "busy_poll_us", "batch", "slot"):
        assert sock[name] == getattr(rx, name), name


def test_the_doctor_checks_the_sizes_the_receiver_uses():
    rx = DEFAULTS.receiver
    assert rx.umem_bytes == rx.umem_frames * rx.frame_size == 32 << 20  # the doctor used to assume 16 MiB
    assert inspect.signature(doctor.check_memlock).parameters["umem_bytes"].default == rx.umem_bytes
    assert inspect.signature(doctor.check_hugepages).parameters["umem_bytes"].default == rx.umem_bytes
    by = {c.name: c for c in doctor.run_checks(None)}
    assert "UMEM (32 MiB)" in by["hugepages"].detail
    four_k = doctor.run_checks(None, receiver=ReceiverOptions(frames=4096, frame_size=4096))
    assert "UMEM (16 MiB)" in next(c for c in four_k if c.name == "hugepages").detail
    # frames longer than the UMEM frame's room are dropped: 2 KiB frames take MTU 1500, not 3000
    assert rx.max_frame == 2048 - 256 and 1500 <= rx.max_mtu < 3000
    assert ReceiverOptions(frame_size=4096).max_mtu == 3498  # there, native XDP's page is the limit
    assert rx.rcvbuf == doctor.WANT_SOCKBUF


# --- Options round trips ---------------------------------------------------------------------------------
SOME = Options(
    receiver=ReceiverOptions(iface="eth9", queues=(0, 1), ports=(9001, 9005), mode="drv", frames=8192,
                             hugepages=True, spin_us=50),
    program=ProgramOptions(force=True, allow_src=("10.0.0.1", "10.0.0.2"), deny="drop", rate_cap=1e5,
                           rate_burst=16, watchdog_us=5000.0),
    feed=FeedOptions(protocol="moldudp64", symbols=("AAPL", "MSFT"), retransmit=("127.0.0.1", 9100),
                     book=True, handlers=("a.b:c", "d:e")),
    run=RunOptions(count=10, duration=2.5, quiet=True, cpus=(1, 0), fifo=10, mlock=True, metrics_port=9400,
                   trace_latency="t.csv", pcap="x.pcap", pcap_max_mb=5.0, pcap_sample=3),
)


def test_options_round_trip_through_json():
    assert Options.from_dict(json.loads(json.dumps(SOME.to_dict()))) == SOME
    assert Options.from_dict({}) == DEFAULTS
    assert SOME.with_(run={"count": 3}).run == RunOptions(**{**SOME.to_dict()["run"], "count": 3, "cpus": (1, 0)})
    with pytest.raises(GatewayError, match="unknown receiver option"):
        Options.from_dict({"receiver": {"framez": 1}})


def attach_argv(o: Options) -> list[str]:
    """The `xdpgw attach` command line that asks for ``o``."""
    r, p, f, run = o.receiver, o.program, o.feed, o.run
    argv = ["attach", r.iface, "--queue", ",".join(map(str, r.queues)), "--mode", r.mode, "--frames", str(r.frames),
            "--spin-us", str(r.spin_us), "--deny", p.deny, "--rate-cap", str(p.rate_cap), "--rate-burst",
            str(p.rate_burst), "--watchdog-us", str(p.watchdog_us), "--protocol", f.protocol, "--symbols",
            ",".join(f.symbols), "--retransmit", ":".join(map(str, f.retransmit)), "--count", str(run.count),
            "--duration", str(run.duration), "--cpu", ",".join(map(str, run.cpus)), "--fifo", str(run.fifo),
            "--metrics-port", str(run.metrics_port), "--trace-latency", run.trace_latency, "--pcap", run.pcap,
            "--pcap-max-mb", str(run.pcap_max_mb), "--pcap-sample", str(run.pcap_sample)]
    argv += [a for port in r.ports for a in ("--port", str(port))]
    argv += [a for src in p.allow_src for a in ("--allow-src", src)]
    argv += [a for h in f.handlers for a in ("--handler", h)]
    flags = {"--hugepages": r.hugepages, "--force": p.force, "--book": f.book, "--quiet": run.quiet,
             "--mlock": run.mlock}
    return argv + [flag for flag, on in flags.items() if on]


def parsed(monkeypatch, argv: list[str]) -> Options:
    """What the command hands to the pipeline (which is not run; ``--json`` prints its stand-in summary)."""
    got: list[Options] = []

    def run(opts: Options, say) -> assembly.Outcome:
        got.append(opts)
        return assembly.Outcome({"packets": 0})

    monkeypatch.setattr(assembly, "run", run)
    res = CliRunner().invoke(main, [*argv, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"packets": 0}
    (opts,) = got
    return opts


def test_options_round_trip_through_the_command_line(monkeypatch):
    assert parsed(monkeypatch, attach_argv(SOME)) == SOME
    assert parsed(monkeypatch, ["attach", "eth9"]) == DEFAULTS.with_(receiver={"iface": "eth9"})
    assert parsed(monkeypatch, ["listen", "--protocol", "moldudp64", "--line-b", "9002"]) == DEFAULTS.with_(
        receiver={"transport": "socket"}, feed={"protocol": "moldudp64", "line_b": 9002})


def test_bad_command_line_values_are_one_line_errors(monkeypatch):
    monkeypatch.setattr(assembly, "run", lambda opts, say: pytest.fail("the pipeline must not run"))
    for argv, want in ((["listen", "--retransmit", "nohost"], "bad --retransmit 'nohost'"),
                       (["attach", "eth9", "--queue", "0-1", "--cpu", "1"], "names 1 CPU(s) for 2 consumer(s)")):
        res = CliRunner().invoke(main, argv)
        assert res.exit_code != 0 and want in res.output, res.output


# --- Options → parts --------------------------------------------------------------------------------------
def test_the_feed_is_what_the_options_ask_for():
    assert assembly.make_feed(FeedOptions()) is None  # raw packets to the handlers
    one = assembly.make_feed(FeedOptions(protocol="moldudp64", symbols=("AAPL",)))
    assert type(one) is FeedHandler and len(one.arbiter.lines) == 1 and one.client is None
    two = assembly.make_feed(FeedOptions(protocol="moldudp64", line_b=9002, retransmit=("127.0.0.1", 9)))
    assert len(two.arbiter.lines) == 2 and two.client is not None
    two.close()
    books = assembly.make_feed(FeedOptions(protocol="moldudp64", book=True))
    assert type(books).__name__ == "BookFeed" and type(books.feed) is FeedHandler
    for bad, want in ((FeedOptions(line_b=9002), "--line-b needs decoding"),
                      (FeedOptions(symbols=("AAPL",)), "need decoding"),
                      (FeedOptions(retransmit=("h", 1)), "need decoding"),
                      (FeedOptions(book=True), "--book needs decoding"),
                      (FeedOptions(protocol="fix"), "unknown --protocol")):
        with pytest.raises(GatewayError, match=want):
            assembly.make_feed(bad)
    with pytest.raises(GatewayError, match="--venue/--router-config are for --strategy"):
        assembly.make_strategy(FeedOptions(venues=("ouch://127.0.0.1:1",)))
    with pytest.raises(GatewayError, match="cannot load handler"):
        assembly.make_handlers(FeedOptions(handlers=("tests.pipeline.test_assembly:nothing_here",)))


def test_socket_options_open_one_kernel_socket_per_line_and_a_gateway_over_them():
    opts = Options(receiver=LOOPBACK, feed=TWO_LINES, run=RunOptions(status_interval=0.5))
    rxs = assembly.open_receivers(opts)
    try:
        assert [type(r) for r in rxs] == [SocketReceiver, SocketReceiver] and rxs[0].port != rxs[1].port
        gw = assembly.make_gateway(rxs, opts)
        assert gw.handlers == [collect] and gw.burst == opts.receiver.batch and gw.status_interval == 0.5
        assert len(gw.feed.arbiter.lines) == 2
    finally:
        for r in rxs:
            r.close()


def test_the_pcap_tap_writes_one_file_per_queue_worker(tmp_path):
    with contextlib.ExitStack() as stack:
        assert assembly.pcap_taps(stack, RunOptions()) == []
        run = RunOptions(pcap=str(tmp_path / "feed.pcap"), pcap_sample=2)
        assert len(assembly.pcap_taps(stack, run)) == len(assembly.pcap_taps(stack, run, queue=3)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed-q3.pcap", "feed.pcap"]


def test_xdp_options_are_checked_before_anything_is_attached():
    with pytest.raises(GatewayError, match="needs an interface"):
        assembly.open_receivers(DEFAULTS)
    two_queues = DEFAULTS.with_(receiver={"iface": "lo", "queues": (0, 1)}, feed={"protocol": "moldudp64",
                                                                                   "line_b": 9002})
    with pytest.raises(GatewayError, match="--line-b needs both lines in one consumer"):
        assembly.run(two_queues)
    assert assembly.xdp_ports(two_queues) == (9001, 9002)


# --- the whole pipeline ------------------------------------------------------------------------------------
def test_listen_pipeline_arbitrates_two_kernel_socket_lines_end_to_end():
    """`xdpgw listen --line-b` as the assembly runs it: line A misses messages 3-4, line B has them."""
    DELIVERED.clear()

    def packet(first: int) -> bytes:
        return encode_packet("ASSEMBLY01", first, [itch.encode_message("D", locate=1, order_ref=s)
                                                   for s in (first, first + 1)])

    line_a, line_b = [packet(1), packet(5)], [packet(1), packet(3), packet(5)]
    notes: list[str] = []

    def say(line: str) -> None:  # the pipeline names its ports once the sockets are bound: send then
        notes.append(line)
        m = re.match(r"listening on UDP port\(s\) (\d+), (\d+)", line)
        if m:
            for port, payloads in zip(map(int, m.groups()), (line_a, line_b), strict=True):
                with SocketSender("127.0.0.1", port) as tx:
                    assert tx.send_batch(Batch.from_payloads(payloads)) == len(payloads)

    opts = Options(receiver=LOOPBACK, feed=TWO_LINES, run=RunOptions(count=5, duration=20.0))
    summary, stopped = assembly.run(opts, say)
    assert stopped is None and any(n.startswith("listening on UDP port(s)") for n in notes), notes
    assert [s for d in DELIVERED for s in d] == [1, 2, 3, 4, 5, 6], DELIVERED
    assert summary["transport"] == "socket" and summary["packets"] == 5 and summary["messages"] == 6
    assert summary["missing"] == 0 and summary["duplicates"] == 4, summary
