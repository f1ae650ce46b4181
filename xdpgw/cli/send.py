"""`xdpgw send`, `xdpgw replay`, `xdpgw blast`: the sending side of the command line.

Standalone click commands; the main group registers them with ``main.add_command``. A JSON report
goes to stdout with ``--json``; the human summary goes to stderr.
"""

from __future__ import annotations

import json

import click

from xdpgw.errors import GatewayError, friendly


def parse_dest(text: str, option: str = "--dest") -> tuple[str, int]:
    """"10.0.0.2:9001" / "[fd00::2]:9001" → (host, port)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise GatewayError(f"bad {option} {text!r}", "use HOST:PORT, e.g. 10.77.0.2:9001 or [fd77::2]:9001")
    return host, int(port)


def parse_range(text: str) -> tuple[int, int]:
    """"4" → (4, 4); "2-6" → (2, 6)."""
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise GatewayError(f"bad --msgs-per-packet {text!r}", "use N or LO-HI, e.g. 2-6") from None
    if not 1 <= a <= b <= 200:
        raise GatewayError(f"bad --msgs-per-packet {text!r}", "use 1 <= LO <= HI <= 200")
    return a, b


def parse_burst(text: str | None):
    """"100x0.1" (100x the rate for 0.1 s each second) or "100x0.1/5" (every 5 s) → BurstMode."""
    if not text:
        return None
    from xdpgw.tools.generate import BurstMode

    try:
        factor, _, rest = text.lower().partition("x")
        length, _, every = rest.partition("/")
        b = BurstMode(float(factor), float(length), float(every or 1.0))
    except ValueError:
        raise GatewayError(f"bad --burst {text!r}", "use FACTORxSECONDS[/EVERY], e.g. 100x0.1 or 100x0.1/5") from None
    if b.factor <= 0 or not 0 < b.length <= b.every:
        raise GatewayError(f"bad --burst {text!r}", "need FACTOR > 0 and 0 < SECONDS <= EVERY")
    return b


def make_sender(transport: str, dest: str, iface: str | None, src_port: int = 40000):
    host, port = parse_dest(dest)
    if transport == "xdp":
        if not iface:
            raise GatewayError("--transport xdp needs --iface", "name the interface to send from, e.g. --iface eth0")
        from xdpgw.transport.xdp.tx import XdpSender

        return XdpSender(iface, host, port, src_port=src_port)
    from xdpgw.transport.socket import SocketSender

    return SocketSender(host, port, iface=iface)


def _emit(report: dict, as_json: bool, line: str) -> None:
    if as_json:
        click.echo(json.dumps(report, default=str))
    click.echo(line, err=True)


_transport = click.option("--transport", type=click.Choice(["socket", "xdp"]), default="socket", show_default=True)
_iface = click.option("--iface", default=None, help="xdp: interface to send from; socket: multicast interface.")
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON report (stdout).")


@click.command()
@_transport
@_iface
@click.option("--dest", required=True, help="Destination HOST:PORT.")
@click.option("--rate", type=float, default=None, help="Packets per second (default: full speed).")
@click.option("--msgs-rate", type=float, default=None, help="Messages per second instead of --rate.")
@click.option("--count", type=int, default=None, help="Stop after N feed packets.")
@click.option("--duration", type=float, default=None, help="Stop after S seconds.")
@click.option("--burst", default=None, help="FACTORxSECONDS[/EVERY]: e.g. 100x0.1 = 100x the rate for 100 ms/s.")
@click.option("--gap-every", type=int, default=0, help="Skip every N-th packet (a sequence gap).")
@click.option("--dup-every", type=int, default=0, help="Send every N-th packet twice.")
@click.option("--malformed-every", type=int, default=0, help="Follow every N-th packet by a malformed datagram.")
@click.option("--msgs-per-packet", default="2-6", show_default=True, help="N or LO-HI ITCH messages per packet.")
@click.option("--session", default="SYNTH", show_default=True, help="MoldUDP64 session (<= 10 chars).")
@click.option("--first-seq", type=int, default=1, show_default=True)
@click.option("--batch", type=int, default=256, show_default=True, help="Most packets per burst.")
@click.option("--seed", type=int, default=0, help="Seed of the synthetic message mix.")
@_json
@friendly
def send(transport, iface, dest, rate, msgs_rate, count, duration, burst, gap_every, dup_every, malformed_every,
         msgs_per_packet, session, first_seq, batch, seed, as_json) -> None:
    """Send a synthetic MoldUDP64/ITCH feed (realistic mix, real timestamps, optional faults) to DEST."""
    from xdpgw.tools.generate import Faults, Feed, run_feed

    if len(session) > 10:
        raise GatewayError(f"--session {session!r} is longer than 10 characters", "shorten it")
    feed = Feed(session, first_seq, parse_range(msgs_per_packet),
                Faults(gap_every, dup_every, malformed_every), seed=seed)
    bm = parse_burst(burst)
    if count is None and duration is None:
        raise GatewayError("no end given", "pass --count N and/or --duration S")
    with make_sender(transport, dest, iface) as sender:
        report = run_feed(sender, feed, rate=rate, msgs_rate=msgs_rate, count=count, duration=duration,
                          burst=bm, max_burst=batch)
        report["sender"] = sender.stats()
    report["dest"] = dest
    _emit(report, as_json,
          f"xdpgw send ({transport}) → {dest}: {report['feed_packets']} packets, {report['messages']} messages "
          f"in {report['seconds']:.2f}s ({report['pps']:.0f} pps, {report['mps']:.0f} msg/s); gaps "
          f"{report['gap_packets']}, duplicates {report['duplicates']}, malformed {report['malformed']}, "
          f"unsent {report['unsent']}")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_transport
@_iface
@click.option("--dest", required=True, help="Destination HOST:PORT (payloads are re-addressed to it).")
@click.option("--port", type=int, default=None, help="Replay only UDP payloads sent to this port in the capture.")
@click.option("--rate", type=float, default=None, help="Packets per second (default: the capture's own timing).")
@click.option("--speed", type=float, default=1.0, show_default=True, help="Original timing sped up by this factor.")
@click.option("--loop", type=int, default=1, show_default=True, help="Play the capture N times (0: until Ctrl-C).")
@_json
@friendly
def replay(file, transport, iface, dest, port, rate, speed, loop, as_json) -> None:
    """Replay the UDP payloads of a pcap/pcapng FILE to DEST."""
    from xdpgw.tools.replay import load_pcap
    from xdpgw.tools.replay import replay as run_replay

    cap = load_pcap(file, port)
    with make_sender(transport, dest, iface) as sender:
        report = run_replay(sender, cap, rate=rate, speed=speed, loop=loop)
        report["sender"] = sender.stats()
    report.update(file=str(file), dest=dest)
    _emit(report, as_json,
          f"xdpgw replay ({transport}) {file} → {dest}: {report['packets']} packets in {report['seconds']:.2f}s "
          f"({report['pps']:.0f} pps), {report['loops']} loop(s), unsent {report['unsent']}")


@click.command()
@click.option("--iface", required=True, help="Interface to transmit on (run in its network namespace).")
@click.option("--dest", required=True, help="Destination HOST:PORT (IPv4).")
@click.option("--dest-mac", default=None, help="Destination MAC (default: from the neighbour table).")
@click.option("--src-ip", default=None, help="Source address (default: the interface's).")
@click.option("--packets", type=int, default=10_000_000, show_default=True)
@click.option("--msgs-per-packet", type=int, default=1, show_default=True)
@click.option("--session", default="BLAST", show_default=True)
@click.option("--first-seq", type=int, default=1, show_default=True)
@click.option("--duration", type=float, default=None, help="Stop after S seconds.")
@click.option("--rate", type=float, default=None, help="Pace at this many frames/s (default: full speed).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Frames per BPF_PROG_RUN batch (<= 256).")
@click.option("--cpu", type=int, default=None, help="Pin the blaster to this CPU (keep the consumer elsewhere).")
@_json
@friendly
def blast(iface, dest, dest_mac, src_ip, packets, msgs_per_packet, session, first_seq, duration, rate, batch_size,
          cpu, as_json) -> None:
    """Kernel-speed MoldUDP64/ITCH generator (BPF_PROG_RUN live frames, XDP_TX out of IFACE).

    On a veth the peer needs a native XDP program or GRO on (`ethtool -K PEER gro on`), else the frames vanish.
    """
    from xdpgw.tools.blast import blast as run_blast

    host, port = parse_dest(dest)
    if packets <= 0:
        raise GatewayError(f"--packets {packets} is not positive", "give the number of frames to send")
    report = run_blast(iface, dest_mac, src_ip, host, port, packets, msgs_per_packet, session,
                       first_seq=first_seq, batch_size=batch_size, duration=duration, cpu=cpu, rate=rate)
    _emit(report, as_json,
          f"xdpgw blast {iface} → {dest} ({report['dst_mac']}): {report['packets']} frames x {msgs_per_packet} msgs "
          f"in {report['seconds']:.3f}s = {report['pps'] / 1e6:.2f} Mpps ({report['mps'] / 1e6:.2f} M msg/s), "
          f"tx_dropped {report['tx_dropped']}, sequence {report['first_seq']}..{report['next_seq'] - 1}")
