"""`xdpgw` command line: attach (bypass), listen (kernel sockets), status, detach, lab, doctor, demo."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable

import click

from xdpgw.cli.send import parse_dest
from xdpgw.errors import GatewayError, friendly
from xdpgw.pipeline.options import DEFAULTS, FeedOptions, Options, ProgramOptions, ReceiverOptions, RunOptions

RX, PROG, RUN = DEFAULTS.receiver, DEFAULTS.program, DEFAULTS.run  # every default below comes from these


def parse_ints(text: str, option: str) -> list[int]:
    """"1" → [1]; "0-3" → [0, 1, 2, 3]; "3,1" → [3, 1] (in the order given)."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise GatewayError(f"bad {option} {text!r}", "use a number, a range like 0-3, or a list like 0,2") from None
    return out


def parse_queues(text: str) -> list[int]:
    """"1" → [1]; "0-3" → [0, 1, 2, 3]; "0,2" → [0, 2]."""
    return sorted(set(parse_ints(text, "--queue")))


def parse_cpus(text: str | None, consumers: int) -> list[int] | None:
    """--cpu: one CPU per consumer (per queue), in queue order; None when not given."""
    if text is None:
        return None
    cpus = parse_ints(text, "--cpu")
    example = f"--cpu {','.join(map(str, range(consumers)))}"
    if len(cpus) != consumers:
        raise GatewayError(f"--cpu {text} names {len(cpus)} CPU(s) for {consumers} consumer(s)",
                           f"give one CPU per queue, in queue order, e.g. {example}")
    if len(set(cpus)) != len(cpus):
        raise GatewayError(f"--cpu {text} names a CPU twice", f"give each queue's consumer its own CPU, e.g. {example}")
    return cpus


def parse_symbols(text: str | None) -> tuple[str, ...]:
    """"AAPL, MSFT" → ("AAPL", "MSFT")."""
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else ()


def pipeline_options(receiver: ReceiverOptions, run: dict, consumers: int, program: ProgramOptions | None = None,
                     **capture) -> Options:
    """The `Options` of `attach`/`listen`: ``run`` holds the `run_options` values; ``capture`` the pcap ones."""
    cpus = parse_cpus(run["cpu"], consumers)
    protocol = None if run["protocol"] in (None, "none", "raw") else run["protocol"]
    return Options(
        receiver=receiver,
        program=program or DEFAULTS.program,
        feed=FeedOptions(protocol=protocol, symbols=parse_symbols(run["symbols"]),
                         retransmit=parse_dest(run["retransmit"], "--retransmit") if run["retransmit"] else None,
                         line_b=run["line_b"],
                         book=run["book"], handlers=tuple(run["handler_specs"]), strategy=run["strategy"],
                         venues=tuple(run["venues"]), router_config=run["router_config"]),
        run=RunOptions(count=run["count"], duration=run["duration"], quiet=run["quiet"],
                       cpus=tuple(cpus) if cpus else None, fifo=run["fifo"], mlock=run["mlock"],
                       metrics_port=run["metrics_port"], trace_latency=run["trace_latency"], **capture),
    )


def run_options(fn: Callable) -> Callable:
    """Options shared by `attach` and `listen`."""
    opts = [
        click.option("--count", type=int, default=None,
                     help="Stop after N packets (several queues: N in total, may overshoot by ~0.1 s of traffic)."),
        click.option("--duration", type=float, default=None, help="Stop after S seconds."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object at exit (stdout)."),
        click.option("--quiet", is_flag=True, help="No live status line."),
        click.option("--protocol", default=None, help="Decode the feed: moldudp64 (default: count packets)."),
        click.option("--symbols", default=None, help="With --protocol: deliver only these symbols (AAPL,MSFT)."),
        click.option("--retransmit", default=None, help="With --protocol: re-request server HOST:PORT."),
        click.option("--book", is_flag=True,
                     help="With --protocol: order books (L3/L2/BBO); handlers get BBO and trade records."),
        click.option("--handler", "handler_specs", multiple=True, help="module:function called per batch."),
        click.option("--strategy", default=None,
                     help="module:function called per batch as f(decoded, ctx); ctx.router sends orders (needs --venue)."),
        click.option("--venue", "venues", multiple=True, help="With --strategy: order venue URL, e.g. ouch://HOST:PORT."),
        click.option("--router-config", default=None, help="With --strategy: the router's TOML (venues, risk, ...)."),
        click.option("--cpu", default=None,
                     help="Pin the consumer to this CPU; several queues: one CPU each, in queue order (0,1 or 2-3)."),
        click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:P."),
        click.option("--fifo", type=int, default=None, help="SCHED_FIFO priority for the consumer."),
        click.option("--mlock", is_flag=True, help="mlockall() the consumer's memory."),
        click.option("--line-b", "line_b", type=int, default=None,
                     help="A/B arbitration: UDP port of the redundant line B (needs --protocol)."),
        click.option("--trace-latency", "trace_latency", default=None, metavar="FILE",
                     help="Flight recorder: per-burst timestamps written to FILE (CSV) at exit, tails explained "
                          "(needs --protocol; several queues: FILE-qN.csv each)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _say(line: str) -> None:
    click.echo(f"xdpgw: {line}", err=True)


def _run_pipeline(opts: Options, as_json: bool) -> None:
    """Run the pipeline the options describe, report, and exit with its signal if one stopped it."""
    from xdpgw.pipeline import assembly

    summary, stopped = assembly.run(opts, _say)
    _report(summary, as_json)
    if stopped is not None:
        raise stopped


def _report(summary: dict, as_json: bool) -> None:
    from xdpgw.pipeline.summary import held_note

    if note := held_note(summary):
        click.echo(f"xdpgw: {note}", err=True)
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    lat = summary.get("latency_ns") or {}
    click.echo(
        f"{summary['transport']} ({summary['mode']}) {summary['iface'] or ''} port {summary['port']}: "
        f"{summary['packets']} packets, {summary['bytes']} bytes in {summary['duration_s']:.2f}s "
        f"({summary['pps']:.0f} pps), drops {summary['drops']}"
        + (f", rx→app p50 {lat['p50'] / 1e3:.1f}µs p99 {lat['p99'] / 1e3:.1f}µs" if lat else ""),
        err=True,
    )
    for q, part in (summary.get("queues") or {}).items():
        click.echo(f"  queue {q} (pid {part.get('pid')}): {part['packets']} packets, {part['bytes']} bytes, "
                   f"drops {part['drops']}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xdpgw")
def main() -> None:
    """xdpgw: kernel-bypass (XDP/AF_XDP) UDP market-data gateway, with a kernel-socket fallback."""


@main.command()
@click.argument("iface")
@click.option("--queue", "queue_spec", default=",".join(map(str, RX.queues)), show_default=True, help="RX queue, a range 0-3 or a list.")
@click.option("--port", "ports", multiple=True, type=int, default=list(RX.ports), show_default=True, help="Feed UDP port (repeat).")
@click.option("--mode", type=click.Choice(["auto", "drv", "skb"]), default=RX.mode, show_default=True)
@click.option("--force", is_flag=True, help="Replace an XDP program that is not ours.")
@click.option("--spin-us", type=int, default=RX.spin_us, show_default=True, help="Busy-poll this long in C when idle.")
@click.option("--frames", type=int, default=RX.frames, show_default=True,
              help=f"UMEM frames per queue ({RX.frame_size} bytes each).")
@click.option("--hugepages", is_flag=True, help="UMEM on huge pages (falls back to normal pages).")
@click.option("--allow-src", multiple=True, help="Redirect only feed packets from these sources (repeat).")
@click.option("--deny", type=click.Choice(["pass", "drop"]), default=PROG.deny, show_default=True,
              help="With --allow-src: what happens to other sources.")
@click.option("--rate-cap", type=float, default=None, help="Per-source cap in packets/s (excess dropped).")
@click.option("--rate-burst", type=int, default=PROG.rate_burst, show_default=True, help="Burst tolerance for --rate-cap.")
@click.option("--watchdog-us", type=float, default=None,
              help="Pass the feed to the kernel if the consumer stops polling this long (crash failover).")
@click.option("--pcap", "pcap_path", default=None,
              help="Write bypassed frames (ns timestamps) to this pcap (several queues: PATH-qN.pcap each).")
@click.option("--pcap-max-mb", type=float, default=RUN.pcap_max_mb, show_default=True, help="Rotate the pcap at this size.")
@click.option("--pcap-sample", type=int, default=RUN.pcap_sample, show_default=True, help="Keep 1 frame in N.")
@run_options
@friendly
def attach(iface, queue_spec, ports, mode, force, spin_us, frames, hugepages, allow_src, deny, rate_cap,
           rate_burst, watchdog_us, pcap_path, pcap_max_mb, pcap_sample, **run) -> None:
    """Bypass: redirect the feed port(s) on IFACE into AF_XDP and consume them.

    One queue: the consumer runs in this process. Several (--queue 0-3): one consumer process per queue
    (see xdpgw/pipeline/workers.py); this process attaches, aggregates the stats and detaches.
    """
    queues = parse_queues(queue_spec)
    receiver = ReceiverOptions(transport="xdp", iface=iface, queues=tuple(queues), ports=tuple(ports), mode=mode,
                               frames=frames, hugepages=hugepages, spin_us=spin_us)
    program = ProgramOptions(force=force, allow_src=tuple(allow_src), deny=deny, rate_cap=rate_cap,
                             rate_burst=rate_burst, watchdog_us=watchdog_us)
    opts = pipeline_options(receiver, run, len(queues), program, pcap=pcap_path, pcap_max_mb=pcap_max_mb,
                            pcap_sample=pcap_sample)
    _run_pipeline(opts, run["as_json"])


@main.command()
@click.option("--port", type=int, default=RX.ports[0], show_default=True)
@click.option("--group", default=None, help="Multicast group to join.")
@click.option("--iface", default=None, help="Interface for the multicast join.")
@click.option("--bind", "bind_addr", default=RX.bind_addr, show_default=True)
@click.option("--rcvbuf", type=int, default=RX.rcvbuf, show_default=True)
@run_options
@friendly
def listen(port, group, iface, bind_addr, rcvbuf, **run) -> None:
    """Kernel-socket fallback: the same consumer over an ordinary UDP socket."""
    receiver = ReceiverOptions(transport="socket", ports=(port,), group=group, iface=iface, bind_addr=bind_addr,
                               rcvbuf=rcvbuf)
    _run_pipeline(pipeline_options(receiver, run, 1), run["as_json"])


@main.command()
@click.argument("iface", required=False)
@click.option("--json", "as_json", is_flag=True)
@friendly
def status(iface, as_json) -> None:
    """What is attached: program, mode, feed ports, BPF counters and consumer stats per queue."""
    from pyroute2 import IPRoute

    from xdpgw.kernel.state import status_iface

    if iface:
        names = [iface]
    else:
        with IPRoute() as ipr:
            names = [
                link.get_attr("IFLA_IFNAME")
                for link in ipr.get_links()
                if (x := link.get_attr("IFLA_XDP")) is not None and x.get_attr("IFLA_XDP_PROG_ID")
            ]
    rows = [status_iface(n) for n in names]
    if as_json:
        click.echo(json.dumps(rows if not iface else rows[0], default=str))
        return
    if not rows:
        click.echo("no XDP programs attached in this network namespace")
    for r in rows:
        click.echo(_format_status(r))


def _format_status(r: dict) -> str:
    from xdpgw.kernel.liveness import pid_alive

    if not r["attached"]:
        return f"{r['iface']}: no XDP program"
    who = "xdpgw" if r.get("ours") else f"FOREIGN ({r.get('prog_name') or '?'})"
    lines = [f"{r['iface']}: {who} program id {r['prog_id']}, {r['mode']} mode, {r['rx_queues']} RX queue(s)"]
    c = r.get("consumer")
    if c:
        alive = "running" if c["consumer_alive"] else "NOT RUNNING (feed falls back to the kernel)"
        lines.append(f"  consumer pid {c.get('pid')} {alive}; ports {c.get('ports')}; updated {c['age_s']}s ago")
        for q, st in (c.get("stats") or {}).items():
            worker = ""
            if st.get("pid"):  # one consumer process per queue
                state = "running" if pid_alive(int(st["pid"])) else "NOT RUNNING"
                worker = f"pid {st['pid']} {state}, {st.get('pps', 0):.0f} pps, "
            lines.append(
                f"  queue {q}: {worker}packets {st.get('packets')} bytes {st.get('bytes')} | XDP_STATISTICS rx_dropped "
                f"{st.get('xdp_rx_dropped')} rx_ring_full {st.get('xdp_rx_ring_full')} fill_ring_empty "
                f"{st.get('xdp_rx_fill_ring_empty_descs')} invalid_descs {st.get('xdp_rx_invalid_descs')}"
            )
            if held := st.get("held"):
                lines.append(f"  queue {q}: held {sum(held.values())} messages ("
                             + ", ".join(f"{k} {v}" for k, v in held.items()) + ")")
    for q, cnt in (r.get("bpf_counters_by_queue") or {}).items():
        lines.append(f"  queue {q} bpf: " + " ".join(f"{k} {v}" for k, v in cnt.items()))
    return "\n".join(lines)


@main.command()
@click.argument("iface")
@click.option("--any", "any_prog", is_flag=True, help="Also remove an XDP program that is not ours.")
@friendly
def detach(iface, any_prog) -> None:
    """Remove xdpgw's XDP program from IFACE (only ours, unless --any)."""
    from xdpgw.kernel.attach import detach_iface

    click.echo(detach_iface(iface, only_ours=not any_prog))


@main.command()
@click.argument("iface", required=False)
@click.option("--port", type=int, default=None, help="Feed port (for the flow-steering advice).")
@click.option("--queue", type=int, default=RX.queues[0], show_default=True)
@click.option("--frames", type=int, default=RX.frames, show_default=True,
              help="UMEM frames per queue, as given to `xdpgw attach` (memlock and huge pages must cover them).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def doctor(iface, port, queue, frames, as_json) -> None:
    """Check this machine (and IFACE) for XDP/AF_XDP readiness; each problem comes with its fix."""
    from dataclasses import replace

    from xdpgw.ops.doctor import checks_to_json, exit_status, format_checks, run_checks

    checks = run_checks(iface, port=port, queue=queue, receiver=replace(RX, frames=frames))
    click.echo(checks_to_json(checks) if as_json else format_checks(checks))
    sys.exit(exit_status(checks))


@main.command()
@click.option("--packets", type=int, default=20000, show_default=True)
@click.option("--rate", type=float, default=5000.0, show_default=True, help="Packets per second.")
@click.option("--mode", type=click.Choice(["auto", "drv", "skb"]), default=RX.mode, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--tick-to-trade", "t2t_s", type=float, default=1.0, show_default=True,
              help="Seconds per transport of the tick-to-trade run that follows (0: skip it).")
@friendly
def demo(packets, rate, mode, as_json, t2t_s) -> None:
    """Lab up, XDP gateway decoding a synthetic ITCH feed (with a gap and a bad packet), report, lab down;
    then a short tick-to-trade run (feed tick -> OUCH order to the venue simulator), socket vs XDP."""
    from xdpgw.kernel.features import require_root
    from xdpgw.tools.demo import run_demo

    require_root()
    run_demo(packets=packets, rate=rate, mode=mode, as_json=as_json, tick_to_trade=t2t_s)


@main.group()
def lab() -> None:
    """A veth lab: two network namespaces joined by a multi-queue veth."""


@lab.command("up")
@click.option("--name", default="xgw", show_default=True)
@click.option("--queues", type=int, default=2, show_default=True)
@friendly
def lab_up(name, queues) -> None:
    from xdpgw.tools.lab import Lab

    lb = Lab(name, queues=queues).up()
    click.echo(f"lab up: {lb.tx_ns}/{lb.tx_if} {lb.tx_ip} <-> {lb.rx_ns}/{lb.rx_if} {lb.rx_ip} ({queues} queues)")
    click.echo(f"  try: ip netns exec {lb.rx_ns} .venv/bin/xdpgw attach {lb.rx_if} --port 9001")


@lab.command("down")
@click.option("--name", default="xgw", show_default=True)
@friendly
def lab_down(name) -> None:
    from xdpgw.tools.lab import Lab

    Lab(name).down()
    click.echo("lab down")


def _register_send_commands() -> None:
    from xdpgw.cli.bench import bench
    from xdpgw.cli.book import book
    from xdpgw.cli.send import blast, replay, send

    for cmd in (send, replay, blast, bench, book):
        main.add_command(cmd)


_register_send_commands()
main.add_command(importlib.import_module("xdpgw.cli.venue").venue)
importlib.import_module("xdpgw.cli.orders").register(main)

if __name__ == "__main__":
    main()
