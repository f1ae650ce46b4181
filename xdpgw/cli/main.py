"""`xdpgw` command line: attach (bypass), listen (kernel sockets), status, detach, lab, doctor, demo."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Callable

import click

from xdpgw.errors import GatewayError, friendly


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


def load_handler(spec: str, what: str = "handler") -> Callable:
    module, _, func = spec.partition(":")
    if not module or not func:
        raise GatewayError(f"bad --{what} {spec!r}", "use module:function, e.g. mypkg.feed:on_batch")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise GatewayError(f"cannot load {what} {spec!r} ({exc})", "check PYTHONPATH and the function name") from exc


def make_feed(protocol: str | None, symbols: str | None, retransmit: str | None, lines: int = 1):
    """The feed decoder for --protocol (None: raw packets go to the handlers)."""
    if protocol in (None, "none", "raw"):
        if symbols or retransmit:
            raise GatewayError("--symbols/--retransmit need decoding", "add --protocol moldudp64")
        return None
    if protocol != "moldudp64":
        raise GatewayError(f"unknown --protocol {protocol!r}", "use --protocol moldudp64 (or none)")
    from xdpgw.pipeline.feed import FeedHandler

    target = None
    if retransmit:
        host, _, port = retransmit.rpartition(":")
        if not host or not port.isdigit():
            raise GatewayError(f"bad --retransmit {retransmit!r}", "use HOST:PORT of the re-request server")
        target = (host, int(port))
    syms = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    return FeedHandler(symbols=syms, retransmit=target, lines=lines)


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
                          "(needs --protocol; one queue)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _tune(cpu: int | None, fifo: int | None, mlock: bool, quiet: bool) -> None:
    """Pin, SCHED_FIFO and mlock the calling process: the consumer."""
    from xdpgw.ops import tuning

    if cpu is not None:
        tuning.pin_cpu(cpu)
    if fifo is not None:
        tuning.set_fifo(fifo)
    if mlock:
        done = tuning.lock_memory()
        if not done.ok and not quiet:
            click.echo(f"xdpgw: warning: {done.detail}; {done.fix}", err=True)


def _gateway(receivers, *, protocol, symbols, retransmit, handler_specs, line_b, status, on_tick=None,
             line_b_port=None, taps=(), book=False, extra_handlers=()):
    """The consumer loop over ``receivers`` with its feed decoder and handlers (one per process)."""
    from xdpgw.pipeline.gateway import Gateway

    if line_b is not None and protocol is None:
        raise GatewayError("--line-b needs decoding to arbitrate", "add --protocol moldudp64")
    feed = make_feed(protocol, symbols, retransmit, lines=2 if line_b is not None else 1)
    if book:
        if feed is None:
            raise GatewayError("--book needs decoding", "add --protocol moldudp64")
        from xdpgw.book.live import BookFeed

        feed = BookFeed(feed)
    handlers = [load_handler(s) for s in handler_specs] + list(extra_handlers)
    return Gateway(receivers, handlers, feed=feed, status=status, on_tick=on_tick, line_b_port=line_b_port,
                   taps=taps)


def _metrics_server(port: int | None):
    if port is None:
        return None
    from xdpgw.ops.metrics import MetricsServer

    return MetricsServer(port)


def _run(receivers, *, count, duration, as_json, quiet, cpu, fifo, mlock, metrics_port, on_tick=None,
         line_b_port=None, taps=(), trace_latency=None, **consumer) -> dict:
    """Tune this process and run one Gateway over ``receivers`` in it; report at the end."""
    cpus = parse_cpus(cpu, 1)
    _tune(cpus[0] if cpus else None, fifo, mlock, quiet)
    metrics = _metrics_server(metrics_port)
    if metrics is not None:
        tick = on_tick

        def on_tick(gw) -> None:
            metrics.update(gw.summary())
            if tick:
                tick(gw)
    strategy = _strategy(consumer.pop("strategy", None), consumer.pop("venues", ()), consumer.pop("router_config", None))
    try:
        gw = _gateway(receivers, status=None if quiet else sys.stderr, on_tick=on_tick, line_b_port=line_b_port,
                      taps=taps,  # the strategy takes its receive stamps from the batches it gets
                      extra_handlers=[strategy] if strategy else (), **consumer)
        fast = getattr(gw.feed, "fast", None)
        if trace_latency:
            if fast is None:
                raise GatewayError("--trace-latency records the decoding pipeline", "add --protocol moldudp64")
            fast.set_trace(1 << 18)
    except BaseException:
        if strategy is not None:
            strategy.ctx.router.close()
        raise
    stopped = None
    try:
        summary = gw.run(count=count, duration=duration)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, SIGTERM, SIGHUP: still report
        summary = gw.summary()
        stopped = exc if isinstance(exc, SystemExit) else None
    finally:
        if metrics is not None:
            metrics.close()
        if trace_latency:
            from xdpgw.pipeline import flight

            report = flight.dump(fast, trace_latency)
            summary["flight_recorder"] = report
            click.echo(f"xdpgw: {flight.text(report)}; bursts written to {trace_latency}", err=True)
        if strategy is not None:
            summary_orders = strategy.ctx.router.summary()
            strategy.ctx.router.close()
    if strategy is not None:
        summary["orders"] = summary_orders
    _report(summary, as_json)
    if stopped is not None:
        raise stopped
    return summary


def _strategy(spec: str | None, venues: tuple[str, ...], config: str | None):
    """The --strategy handler with its connected router (None without --strategy)."""
    if spec is None:
        if venues or config:
            raise GatewayError("--venue/--router-config are for --strategy", "add --strategy module:function")
        return None
    from xdpgw.orders.strategy import make_strategy

    return make_strategy(spec, venues, config)


def _run_workers(pool, *, detach: Callable[[], None], on_tick: Callable, count, duration, as_json, quiet,
                 metrics_port, **_) -> None:
    """Aggregate a running `QueueWorkers` (this process only waits on pipes); detach, stop, report."""
    metrics = _metrics_server(metrics_port)  # after the fork: its HTTP thread stays in the parent

    def tick(p) -> None:
        on_tick(p)
        if metrics is not None:
            metrics.update(p.summary())

    stopped = None
    try:
        pool.run(count=count, duration=duration, on_tick=tick, status=None if quiet else sys.stderr)
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:  # SIGTERM/SIGHUP (signals_as_exit): stop cleanly, report, exit with it
        stopped = exc
    finally:
        detach()  # the feed goes back to the kernel first ...
        pool.stop()  # ... then the workers end and send their final snapshots
        if metrics is not None:
            metrics.close()
    _report(pool.summary(), as_json)
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
@click.option("--queue", "queue_spec", default="0", show_default=True, help="RX queue, a range 0-3 or a list.")
@click.option("--port", "ports", multiple=True, type=int, default=[9001], show_default=True, help="Feed UDP port (repeat).")
@click.option("--mode", type=click.Choice(["auto", "drv", "skb"]), default="auto", show_default=True)
@click.option("--force", is_flag=True, help="Replace an XDP program that is not ours.")
@click.option("--spin-us", type=int, default=200, show_default=True, help="Busy-poll this long in C when idle.")
@click.option("--frames", type=int, default=16384, show_default=True, help="UMEM frames per queue.")
@click.option("--hugepages", is_flag=True, help="UMEM on huge pages (falls back to normal pages).")
@click.option("--allow-src", multiple=True, help="Redirect only feed packets from these sources (repeat).")
@click.option("--deny", type=click.Choice(["pass", "drop"]), default="pass", show_default=True,
              help="With --allow-src: what happens to other sources.")
@click.option("--rate-cap", type=float, default=None, help="Per-source cap in packets/s (excess dropped).")
@click.option("--rate-burst", type=int, default=64, show_default=True, help="Burst tolerance for --rate-cap.")
@click.option("--watchdog-us", type=float, default=None,
              help="Pass the feed to the kernel if the consumer stops polling this long (crash failover).")
@click.option("--pcap", "pcap_path", default=None,
              help="Write bypassed frames (ns timestamps) to this pcap (several queues: PATH-qN.pcap each).")
@click.option("--pcap-max-mb", type=float, default=100.0, show_default=True, help="Rotate the pcap at this size.")
@click.option("--pcap-sample", type=int, default=1, show_default=True, help="Keep 1 frame in N.")
@run_options
@friendly
def attach(iface, queue_spec, ports, mode, force, spin_us, frames, hugepages, allow_src, deny, rate_cap,
           rate_burst, watchdog_us, pcap_path, pcap_max_mb, pcap_sample, **run) -> None:
    """Bypass: redirect the feed port(s) on IFACE into AF_XDP and consume them.

    One queue: the consumer runs in this process. Several (--queue 0-3): one consumer process per queue
    (see xdpgw/pipeline/workers.py); this process attaches, aggregates the stats and detaches.
    """
    from xdpgw.kernel.program import XdpProgram, write_state
    from xdpgw.ops.pcap import PcapWriter
    from xdpgw.pipeline.gateway import signals_as_exit
    from xdpgw.transport.xdp.rx import XdpReceiver

    queues = parse_queues(queue_spec)
    cpus = parse_cpus(run["cpu"], len(queues))
    if cpus:
        from xdpgw.ops.tuning import check_cpus

        check_cpus(cpus)
    if run["line_b"] is not None:
        if len(queues) > 1:
            raise GatewayError("--line-b needs both lines in one consumer, but each queue has its own",
                               "attach one --queue and steer both ports to it (ethtool -N IFACE flow-type udp4 "
                               "dst-port PORT action QUEUE)")
        ports = (*ports, run["line_b"])
    receiver_opts = {"frames": frames, "hugepages": hugepages, "spin_us": spin_us}
    with signals_as_exit(), contextlib.ExitStack() as stack:
        prog = XdpProgram(iface, ports, mode=mode, force=force)
        receivers: list[XdpReceiver] = []
        pool = None
        try:
            prog.attach()
            prog.set_allowlist(allow_src or None, deny=deny)
            prog.set_rate_cap(rate_cap, rate_burst)
            for note in prog.notes:
                click.echo(f"xdpgw: {note}", err=True)
            if len(queues) == 1:
                receivers.append(XdpReceiver(iface, queues[0], program=prog, **receiver_opts))
            else:
                from xdpgw.pipeline.workers import QueueWorkers

                if run["strategy"]:
                    raise GatewayError("--strategy runs on one queue (one router, one order session)",
                                       "attach one --queue for the strategy")

                cpu_of = dict(zip(queues, cpus or [None] * len(queues), strict=True))
                consumer = _queue_consumer(iface, prog, cpu_of, receiver_opts, (pcap_path, pcap_max_mb, pcap_sample),
                                           run)
                pool = QueueWorkers(queues, consumer, count=run["count"], interval=0.1 if run["count"] else 1.0)
                pool.start()  # before any thread (metrics) exists in this process
            prog.set_watchdog(watchdog_us)  # after the sockets exist: their heartbeats are fresh
            started = time.time()

            def save_state(stats: dict) -> None:
                write_state(iface, {
                    "pid": os.getpid(), "ports": list(prog.ports), "mode": prog.attached_mode,
                    "queues": queues, "started": started, "updated": time.time(), "stats": stats,
                })

            def tick(gw) -> None:
                if pool is not None:
                    save_state(pool.stats())
                    return
                feed = gw.feed if gw is not None else None
                held = {"held": feed.stats()["held"]} if feed is not None else {}
                save_state({str(r.queue): {**r.stats(), **held} for r in receivers})

            tick(None)
            if not run["quiet"]:
                who = f"; consumer pids {pool.pids()}" if pool else ""
                click.echo(
                    f"xdpgw: attached to {iface} ({prog.attached_mode} mode), queue(s) {queue_spec}, "
                    f"port(s) {','.join(map(str, prog.ports))}{who}; Ctrl-C to stop", err=True)
            if pool is not None:
                _run_workers(pool, detach=prog.close, on_tick=tick, **run)
                return
            taps = []
            if pcap_path:
                writer = stack.enter_context(PcapWriter(pcap_path, max_bytes=int(pcap_max_mb * 1e6),
                                                        sample=pcap_sample))
                taps.append(pcap_tap(writer))
            _run(receivers, on_tick=tick, line_b_port=run["line_b"], taps=taps, **run)
        finally:
            prog.close()  # detach first: the feed goes back to the kernel before the sockets close
            if pool is not None:
                pool.stop()
            for r in receivers:
                r.close()


def _queue_consumer(iface: str, prog, cpu_of: dict[int, int | None], receiver_opts: dict, pcap: tuple,
                    run: dict) -> Callable:
    """What each queue's worker process runs (see xdpgw/pipeline/workers.py): tune, open its AF_XDP socket on the
    shared program, its own pcap file (PATH-qN.pcap) and feed decoder/handlers: the one-queue Gateway."""

    def consumer(queue: int, stack: contextlib.ExitStack):
        from pathlib import Path

        from xdpgw.ops.pcap import PcapWriter
        from xdpgw.transport.xdp.rx import XdpReceiver

        _tune(cpu_of[queue], run["fifo"], run["mlock"], run["quiet"])
        rx = stack.enter_context(XdpReceiver(iface, queue, program=prog, **receiver_opts))
        path, max_mb, sample = pcap
        taps = []
        if path:
            p = Path(path)
            writer = stack.enter_context(PcapWriter(p.with_name(f"{p.stem}-q{queue}{p.suffix}"),
                                                    max_bytes=int(max_mb * 1e6), sample=sample))
            taps.append(pcap_tap(writer))
        return _gateway([rx], protocol=run["protocol"], symbols=run["symbols"], retransmit=run["retransmit"],
                        handler_specs=run["handler_specs"], line_b=None, status=None, taps=taps,
                        book=run.get("book", False))

    return consumer


def pcap_tap(writer) -> Callable:
    """Write each XDP batch's whole frames (headers are still in the UMEM in front of the payloads)."""
    from xdpgw.ops.pcap import monotonic_to_realtime

    def tap(batch, rx) -> None:
        n = batch.count
        hdr = rx.header_lengths(n).astype("int64")
        writer.write_batch(batch.buf, batch.offsets[:n] - hdr, batch.lengths[:n] + hdr,
                           monotonic_to_realtime(batch.ts_ns[:n]))

    return tap


@main.command()
@click.option("--port", type=int, default=9001, show_default=True)
@click.option("--group", default=None, help="Multicast group to join.")
@click.option("--iface", default=None, help="Interface for the multicast join.")
@click.option("--bind", "bind_addr", default="0.0.0.0", show_default=True)
@click.option("--rcvbuf", type=int, default=64 << 20, show_default=True)
@run_options
@friendly
def listen(port, group, iface, bind_addr, rcvbuf, **run) -> None:
    """Kernel-socket fallback: the same consumer over an ordinary UDP socket."""
    from xdpgw.pipeline.gateway import signals_as_exit
    from xdpgw.transport.socket import SocketReceiver

    with contextlib.ExitStack() as stack:
        stack.enter_context(signals_as_exit())
        rxs = [stack.enter_context(SocketReceiver(p, bind_addr=bind_addr, group=group, iface=iface, rcvbuf=rcvbuf))
               for p in ([port] if run["line_b"] is None else [port, run["line_b"]])]
        if not run["quiet"]:
            click.echo(f"xdpgw: listening on UDP port(s) {', '.join(str(r.port) for r in rxs)}"
                       + (f" group {group}" if group else ""), err=True)
        _run(rxs, **run)


@main.command()
@click.argument("iface", required=False)
@click.option("--json", "as_json", is_flag=True)
@friendly
def status(iface, as_json) -> None:
    """What is attached: program, mode, feed ports, BPF counters and consumer stats per queue."""
    from pyroute2 import IPRoute

    from xdpgw.kernel.program import status_iface

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
    from xdpgw.kernel.program import pid_alive

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
    from xdpgw.kernel.program import detach_iface

    click.echo(detach_iface(iface, only_ours=not any_prog))


@main.command()
@click.argument("iface", required=False)
@click.option("--port", type=int, default=None, help="Feed port (for the flow-steering advice).")
@click.option("--queue", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly
def doctor(iface, port, queue, as_json) -> None:
    """Check this machine (and IFACE) for XDP/AF_XDP readiness; each problem comes with its fix."""
    from xdpgw.ops.doctor import checks_to_json, exit_status, format_checks, run_checks

    checks = run_checks(iface, port=port, queue=queue)
    click.echo(checks_to_json(checks) if as_json else format_checks(checks))
    sys.exit(exit_status(checks))


@main.command()
@click.option("--packets", type=int, default=20000, show_default=True)
@click.option("--rate", type=float, default=5000.0, show_default=True, help="Packets per second.")
@click.option("--mode", type=click.Choice(["auto", "drv", "skb"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--tick-to-trade", "t2t_s", type=float, default=1.0, show_default=True,
              help="Seconds per transport of the tick-to-trade run that follows (0: skip it).")
@friendly
def demo(packets, rate, mode, as_json, t2t_s) -> None:
    """Lab up, XDP gateway decoding a synthetic ITCH feed (with a gap and a bad packet), report, lab down;
    then a short tick-to-trade run (feed tick -> OUCH order to the venue simulator), socket vs XDP."""
    from xdpgw.kernel.program import require_root
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
