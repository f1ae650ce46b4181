"""The receive pipeline built from one `Options` (:mod:`xdpgw.pipeline.options`), and run.

receivers (kernel sockets, or the XDP program and one AF_XDP socket per queue) → feed decoder (MoldUDP64,
A/B lines, retransmission, books) → handlers (``module:function``, a strategy with its router) → the
`Gateway` loop, with taps (pcap, the strategy's receive stamps), metrics, tuning, the state file and,
for several queues, one worker process each. `run` is what `xdpgw attach|listen` do; `xdpgw demo` and
`xdpgw bench` use the same parts (`open_receivers`, `make_feed`, `make_gateway`). Progress and notes go to
``say`` (one line each); the caller formats the result.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from xdpgw.errors import GatewayError
from xdpgw.pipeline.options import DEFAULTS, FeedOptions, Options, RunOptions

Say = Callable[[str], None]
_FROM_OPTIONS: Any = object()  # make_gateway(feed=...) not given: build the feed from the options


class Outcome(NamedTuple):
    """What a run ends with: the summary, and the SystemExit (SIGTERM/SIGHUP) to raise once it is reported."""

    summary: dict
    stopped: SystemExit | None = None


def _quiet(_line: str) -> None:
    """A ``say`` that says nothing."""


# --- parts ---------------------------------------------------------------------------------------------
def load_handler(spec: str, what: str = "handler") -> Callable:
    module, _, func = spec.partition(":")
    if not module or not func:
        raise GatewayError(f"bad --{what} {spec!r}", "use module:function, e.g. mypkg.feed:on_batch")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise GatewayError(f"cannot load {what} {spec!r} ({exc})", "check PYTHONPATH and the function name") from exc


def make_feed(feed: FeedOptions = DEFAULTS.feed):
    """The feed decoder (None: raw packets go to the handlers); with ``book``, a `BookFeed` around it."""
    if feed.line_b is not None and feed.protocol is None:
        raise GatewayError("--line-b needs decoding to arbitrate", "add --protocol moldudp64")
    if feed.protocol in (None, "none", "raw"):
        if feed.symbols or feed.retransmit:
            raise GatewayError("--symbols/--retransmit need decoding", "add --protocol moldudp64")
        if feed.book:
            raise GatewayError("--book needs decoding", "add --protocol moldudp64")
        return None
    if feed.protocol != "moldudp64":
        raise GatewayError(f"unknown --protocol {feed.protocol!r}", "use --protocol moldudp64 (or none)")
    from xdpgw.pipeline.feed import FeedHandler

    decoder = FeedHandler(symbols=list(feed.symbols) or None, retransmit=feed.retransmit, lines=feed.lines)
    if not feed.book:
        return decoder
    from xdpgw.book.live import BookFeed

    return BookFeed(decoder)


def make_handlers(feed: FeedOptions = DEFAULTS.feed) -> list[Callable]:
    """The ``module:function`` handlers, in the order given."""
    return [load_handler(s) for s in feed.handlers]


def make_strategy(feed: FeedOptions = DEFAULTS.feed):
    """The strategy handler with its connected router (None without a strategy)."""
    if feed.strategy is None:
        if feed.venues or feed.router_config:
            raise GatewayError("--venue/--router-config are for --strategy", "add --strategy module:function")
        return None
    from xdpgw.orders.strategy import make_strategy as connect

    return connect(feed.strategy, feed.venues, feed.router_config)


def make_gateway(receivers: Sequence, opts: Options = DEFAULTS, *, feed: Any = _FROM_OPTIONS,
                 handlers: Sequence[Callable] | None = None, status=None, on_tick=None, taps: Sequence = ()):
    """The consumer loop over ``receivers``: ``feed`` (default: `make_feed`) and ``handlers`` (default:
    `make_handlers`) with the options' burst, status interval and A/B split (by each packet's UDP port,
    ``Batch.dports``, on every transport: line B's port, whichever receiver got the packet)."""
    from xdpgw.pipeline.gateway import Gateway

    if feed is _FROM_OPTIONS:
        feed = make_feed(opts.feed)
    if handlers is None:
        handlers = make_handlers(opts.feed)
    return Gateway(receivers, handlers, feed=feed, status=status, status_interval=opts.run.status_interval,
                   burst=opts.receiver.batch, on_tick=on_tick, line_b_port=opts.feed.line_b, taps=taps)


def xdp_ports(opts: Options) -> tuple[int, ...]:
    """The UDP ports the XDP program redirects: the feed's, and line B's."""
    r, line_b = opts.receiver, opts.feed.line_b
    return r.ports if line_b is None else (*r.ports, line_b)


def open_receivers(opts: Options = DEFAULTS, program=None, queue: int | None = None) -> list:
    """The receivers ``opts.receiver`` describes, open: kernel sockets, one per port (and line B's); or
    the AF_XDP socket of ``queue`` (default: the first of the options' queues) on ``program`` (None:
    the receiver attaches and later detaches the XDP program itself). Close them when done."""
    r = opts.receiver
    if r.transport == "xdp":
        from xdpgw.transport.xdp.rx import XdpReceiver

        if r.iface is None:
            raise GatewayError("the XDP receiver needs an interface", "name it: xdpgw attach IFACE")
        return [XdpReceiver(r.iface, r.queues[0] if queue is None else queue, xdp_ports(opts), mode=r.mode,
                            force=opts.program.force, program=program, frames=r.frames, frame_size=r.frame_size,
                            rx_size=r.rx_size, hugepages=r.hugepages, spin_us=r.spin_us, batch=r.batch,
                            verify_checksums=r.verify_checksums)]
    if r.transport != "socket":
        raise GatewayError(f"unknown transport {r.transport!r}", "use xdp (xdpgw attach) or socket (xdpgw listen)")
    from xdpgw.transport.socket import SocketReceiver

    ports = r.ports if opts.feed.line_b is None else (*r.ports, opts.feed.line_b)
    out: list = []
    try:
        for port in ports:
            out.append(SocketReceiver(port, bind_addr=r.bind_addr, group=r.group, iface=r.iface, rcvbuf=r.rcvbuf,
                                      busy_poll_us=r.busy_poll_us, batch=r.batch, slot=r.slot))
    except BaseException:
        for rx in out:
            rx.close()
        raise
    return out


def attach_program(opts: Options, say: Say = _quiet):
    """The XDP program for the options' interface and ports, attached, with its guards set (the
    watchdog is set by the caller once the sockets exist). Close it to detach."""
    from xdpgw.kernel.program import XdpProgram

    p = opts.program
    prog = XdpProgram(opts.receiver.iface, xdp_ports(opts), mode=opts.receiver.mode, force=p.force)
    try:
        prog.attach()
        prog.set_allowlist(list(p.allow_src) or None, deny=p.deny)
        prog.set_rate_cap(p.rate_cap, p.rate_burst)
    except BaseException:
        prog.close()
        raise
    for note in prog.notes:
        say(note)
    return prog


def tune(cpu: int | None, run: RunOptions, say: Say = _quiet) -> None:
    """Pin, SCHED_FIFO and mlock the calling process: the consumer."""
    from xdpgw.ops import tuning

    if cpu is not None:
        tuning.pin_cpu(cpu)
    if run.fifo is not None:
        tuning.set_fifo(run.fifo)
    if run.mlock:
        done = tuning.lock_memory()
        if not done.ok and not run.quiet:
            say(f"warning: {done.detail}; {done.fix}")


def metrics_server(port: int | None):
    if port is None:
        return None
    from xdpgw.ops.metrics import MetricsServer

    return MetricsServer(port)


def queue_path(path: str, queue: int | None) -> str:
    """A per-queue output file of a worker: PATH-qN.EXT (``queue`` None: PATH itself)."""
    if queue is None:
        return path
    from pathlib import Path

    p = Path(path)
    return str(p.with_name(f"{p.stem}-q{queue}{p.suffix}"))


def start_flight_recorder(gw, run: RunOptions):
    """The feed's fast path with its flight recorder on (``--trace-latency``), or None without the option."""
    if not run.trace_latency:
        return None
    fast = getattr(gw.feed, "fast", None)
    if fast is None:
        raise GatewayError("--trace-latency records the decoding pipeline", "add --protocol moldudp64")
    fast.set_trace(1 << 18)
    return fast


def dump_flight_recorder(fast, path: str, say: Say) -> dict:
    """Write the recorded bursts to ``path`` and say what the tails were made of (see pipeline/flight.py)."""
    from xdpgw.pipeline import flight

    report = flight.dump(fast, path)
    say(f"{flight.text(report)}; bursts written to {path}")
    return report


def pcap_taps(stack: contextlib.ExitStack, run: RunOptions, queue: int | None = None) -> list[Callable]:
    """The pcap writer's tap (none without ``run.pcap``); with ``queue``, its own file PATH-qN.pcap."""
    if not run.pcap:
        return []
    from pathlib import Path

    from xdpgw.ops.pcap import PcapWriter

    path = Path(queue_path(run.pcap, queue))
    writer = stack.enter_context(PcapWriter(path, max_bytes=int(run.pcap_max_mb * 1e6), sample=run.pcap_sample))
    return [pcap_tap(writer)]


def pcap_tap(writer) -> Callable:
    """Write each batch's whole frames, from any transport (``PcapWriter.write_packets``: Batch fields only)."""

    def tap(batch, _rx) -> None:
        writer.write_packets(batch)

    return tap


# --- running -------------------------------------------------------------------------------------------
def run(opts: Options, say: Say = _quiet) -> Outcome:
    """What `xdpgw attach` (transport xdp) and `xdpgw listen` (socket) do: open, run, close, summarise."""
    from xdpgw.pipeline.gateway import signals_as_exit

    with signals_as_exit():
        if opts.receiver.transport == "xdp":
            return _run_xdp(opts, say)
        with contextlib.ExitStack() as stack:
            rxs = [stack.enter_context(rx) for rx in open_receivers(opts)]
            if not opts.run.quiet:
                group = opts.receiver.group
                say(f"listening on UDP port(s) {', '.join(str(r.port) for r in rxs)}" + (f" group {group}" if group else ""))
            return run_gateway(rxs, opts, say=say)


def _run_xdp(opts: Options, say: Say) -> Outcome:
    """The program attached once; one queue: its consumer in this process; several: one worker each."""
    from xdpgw.kernel.state import write_state

    queues, cpus, iface = opts.receiver.queues, opts.run.cpus, opts.receiver.iface
    if cpus:
        from xdpgw.ops.tuning import check_cpus

        check_cpus(list(cpus))
    if opts.feed.line_b is not None and len(queues) > 1:
        raise GatewayError("--line-b needs both lines in one consumer, but each queue has its own",
                           "attach one --queue and steer both ports to it (ethtool -N IFACE flow-type udp4 "
                           "dst-port PORT action QUEUE)")
    with contextlib.ExitStack() as stack:
        prog = attach_program(opts, say)
        receivers: list = []
        pool = None
        try:
            if len(queues) == 1:
                receivers += open_receivers(opts, program=prog)
            else:
                from xdpgw.pipeline.workers import QueueWorkers

                if opts.feed.strategy:
                    raise GatewayError("--strategy runs on one queue (one router, one order session)",
                                       "attach one --queue for the strategy")
                interval = 0.1 if opts.run.count else opts.run.status_interval  # a count: stop on time
                pool = QueueWorkers(list(queues), queue_consumer(prog, opts, say), count=opts.run.count,
                                    interval=interval)
                pool.start()  # before any thread (metrics) exists in this process
            prog.set_watchdog(opts.program.watchdog_us)  # after the sockets exist: their heartbeats are fresh
            started = time.time()

            def save_state(stats: dict) -> None:
                write_state(iface, {
                    "pid": os.getpid(), "ports": list(prog.ports), "mode": prog.attached_mode,
                    "queues": list(queues), "started": started, "updated": time.time(), "stats": stats,
                })

            def tick(gw) -> None:
                if pool is not None:
                    save_state(pool.stats())
                    return
                feed = gw.feed if gw is not None else None
                held = {"held": feed.stats()["held"]} if feed is not None else {}
                save_state({str(r.queue): {**r.stats(), **held} for r in receivers})

            tick(None)
            if not opts.run.quiet:
                who = f"; consumer pids {pool.pids()}" if pool else ""
                say(f"attached to {iface} ({prog.attached_mode} mode), queue(s) {','.join(map(str, queues))}, "
                    f"port(s) {','.join(map(str, prog.ports))}{who}; Ctrl-C to stop")
            if pool is not None:
                return run_workers(pool, opts, detach=prog.close, on_tick=tick)
            return run_gateway(receivers, opts, on_tick=tick, taps=pcap_taps(stack, opts.run), say=say)
        finally:
            prog.close()  # detach first: the feed goes back to the kernel before the sockets close
            if pool is not None:
                pool.stop()
            for r in receivers:
                r.close()


def run_gateway(receivers: Sequence, opts: Options, *, on_tick=None, taps: Sequence = (), say: Say = _quiet) -> Outcome:
    """Tune this process and run one Gateway over ``receivers`` in it (with the strategy, metrics and
    flight recorder the options ask for)."""
    run = opts.run
    tune(run.cpus[0] if run.cpus else None, run, say)
    metrics = metrics_server(run.metrics_port)
    if metrics is not None:
        tick = on_tick

        def on_tick(gw) -> None:
            metrics.update(gw.summary())
            if tick:
                tick(gw)
    strategy = make_strategy(opts.feed)
    try:
        handlers = make_handlers(opts.feed) + ([strategy] if strategy else [])
        gw = make_gateway(receivers, opts, handlers=handlers, status=None if run.quiet else sys.stderr,
                          on_tick=on_tick, taps=taps)  # the strategy's receive stamps come with its batches
        if strategy is not None:
            strategy.attach_feed(gw.feed)  # --book: the collar's reference is the live mid
        fast = start_flight_recorder(gw, run)
    except BaseException:
        if strategy is not None:
            strategy.ctx.router.close()
        if metrics is not None:
            metrics.close()
        raise
    stopped = None
    try:
        summary = gw.run(count=run.count, duration=run.duration)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, SIGTERM, SIGHUP: still report
        summary = gw.summary()
        stopped = exc if isinstance(exc, SystemExit) else None
    finally:
        if metrics is not None:
            metrics.close()
        if fast is not None:
            summary["flight_recorder"] = dump_flight_recorder(fast, run.trace_latency, say)
        if strategy is not None:
            summary_orders = strategy.ctx.router.summary()
            strategy.ctx.router.close()
    if strategy is not None:
        summary["orders"] = summary_orders
    return Outcome(summary, stopped)


def queue_consumer(prog, opts: Options, say: Say = _quiet) -> Callable:
    """What each queue's worker process runs (see xdpgw/pipeline/workers.py): tune, open its AF_XDP socket on
    the shared program, its own pcap file (PATH-qN.pcap), flight recorder (FILE-qN.csv, written when the
    worker ends) and feed decoder/handlers: the one-queue Gateway."""
    cpus = opts.run.cpus or (None,) * len(opts.receiver.queues)
    cpu_of = dict(zip(opts.receiver.queues, cpus, strict=True))

    def consumer(queue: int, stack: contextlib.ExitStack):
        tune(cpu_of[queue], opts.run, say)
        rxs = [stack.enter_context(rx) for rx in open_receivers(opts, program=prog, queue=queue)]
        gw = make_gateway(rxs, opts, status=None, taps=pcap_taps(stack, opts.run, queue))
        fast = start_flight_recorder(gw, opts.run)
        if fast is not None:
            stack.callback(dump_flight_recorder, fast, queue_path(opts.run.trace_latency, queue),
                           lambda line: say(f"queue {queue}: {line}"))
        return gw

    return consumer


def run_workers(pool, opts: Options, *, detach: Callable[[], None], on_tick: Callable) -> Outcome:
    """Aggregate a running `QueueWorkers` (this process only waits on pipes); detach, stop, summarise."""
    run = opts.run
    metrics = metrics_server(run.metrics_port)  # after the fork: its HTTP thread stays in the parent

    def tick(p) -> None:
        on_tick(p)
        if metrics is not None:
            metrics.update(p.summary())

    stopped = None
    try:
        pool.run(count=run.count, duration=run.duration, on_tick=tick, status=None if run.quiet else sys.stderr)
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:  # SIGTERM/SIGHUP (signals_as_exit): stop cleanly, report, exit with it
        stopped = exc
    finally:
        detach()  # the feed goes back to the kernel first ...
        pool.stop()  # ... then the workers end and send their final snapshots
        if metrics is not None:
            metrics.close()
    return Outcome(pool.summary(), stopped)
