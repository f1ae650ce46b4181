"""One consumer process per RX queue (``xdpgw attach IFACE --queue 0-3``): no GIL shared between queues.

The parent attaches the XDP program, then `QueueWorkers.start` forks one worker per queue. A worker
inherits the program's map fds, dies with the parent (``PR_SET_PDEATHSIG``: its socket closes, its
queue's feed goes back to the kernel), opens its own AF_XDP socket, feed decoder and handlers through
the ``consumer`` callback, and runs the same `Gateway` loop as a single-queue attach. The parent never
touches packets: it sleeps on the workers' pipes and merges their snapshots into the status line, the
state file, metrics and the final summary.

Worker -> parent messages (pickled, one pipe per worker)::

    ("ready", snapshot)   socket open, the loop starts
    ("tick", snapshot)    every ``interval`` s; skipped when the pipe is full (a slow parent never stalls a worker)
    ("final", snapshot)   the loop ended (``count`` reached, or SIGTERM from the parent)
    ("error", what, fix)  a GatewayError (or a crash) in the worker, which then exits non-zero

``snapshot`` = ``{"t": monotonic s, "summary": Gateway.summary(), "stats": Gateway.stats(),
"latency": LatencyHistogram.to_dict()}``; histograms merge exactly (`LatencyHistogram.merge`).

Stopping is the parent's job, in this order: detach the program (the feed goes back to the kernel), then
`QueueWorkers.stop`: SIGTERM to every worker (its loop ends, it sends its final snapshot and closes its
socket), SIGKILL for any still there after ``stop_timeout``. A worker never detaches or closes the
program and leaves with ``os._exit`` (no atexit hooks, finalizers or ``with`` blocks of the parent run).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import math
import os
import pickle
import signal
import struct
import sys
import termios
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, TextIO

from xdpgw.errors import GatewayError
from xdpgw.pipeline.gateway import Gateway, status_text, write_status
from xdpgw.pipeline.histogram import LatencyHistogram
from xdpgw.pipeline.summary import Summary

#: Runs in the worker: open queue ``q``'s receiver (register what must be closed in ``stack``), tune the
#: process, and return the Gateway to run (the worker sets its status/on_tick).
Consumer = Callable[[int, contextlib.ExitStack], Gateway]

PR_SET_PDEATHSIG = 1
PIPE_BYTES = 1 << 20  # room for many snapshots (the default 64 KiB holds a few)
_MARGIN = 8192  # pipe pages are shared by consecutive writes, so free room is a little less than bytes
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_AFTER_DEATH = ("xdpgw detached and stopped the other queues, so the whole feed is on the kernel path now; look "
                "for its error above (or the OOM killer in `dmesg`), then start `xdpgw attach` again")
# Summary keys that are not summed over queues (the rest are counters, summed key by key).
_SAME = ("transport", "mode", "iface", "port")
_DERIVED = ("queue", "duration_s", "pps", "ns_per_packet", "latency_ns", "last_handler_error", "pid")


@dataclass
class Worker:
    """The parent's view of one worker process."""

    queue: int
    pid: int
    conn: Connection
    snapshot: dict | None = None  # the latest one received
    final: bool = False  # its final snapshot arrived
    ended: str = ""  # how the process ended, once reaped ("exited with status 0", "was killed by SIGKILL")
    pps: float = 0.0
    mark: tuple[float, int] = (0.0, 0)  # (snapshot time, packets) at the last rate update


class QueueWorkers:
    """Fork one worker per queue, aggregate their snapshots, stop them (see the module doc)."""

    def __init__(self, queues: Sequence[int], consumer: Consumer, *, count: int | None = None,
                 interval: float = 1.0, start_timeout: float = 30.0, stop_timeout: float = 5.0) -> None:
        """``count``: each worker's own limit (a worker alone never goes past the total); ``interval``:
        seconds between a worker's snapshots (short with ``count``: the parent stops on them)."""
        self.queues = list(queues)
        self.consumer = consumer
        self.count = count
        self.interval = interval
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.workers: list[Worker] = []
        self.t0 = time.monotonic()
        self.t_end: float | None = None

    # --- parent: lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Fork the workers and wait until every one has its socket open, or raise the first failure.
        Either way the caller calls `stop()` at the end (after detaching the program)."""
        for q in self.queues:
            self.workers.append(self._fork(q))
        deadline = time.monotonic() + self.start_timeout
        while pending := [w for w in self.workers if w.snapshot is None]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GatewayError(
                    f"the consumer of queue {pending[0].queue} (pid {pending[0].pid}) did not start within "
                    f"{self.start_timeout:.0f} s", "check the messages above and `xdpgw doctor`, then try again")
            for conn in wait([w.conn for w in pending], left):
                self._receive(self._worker(conn))
        self.t0 = time.monotonic()

    def _fork(self, queue: int) -> Worker:
        r, w = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                os.close(r)
                for other in self.workers:
                    other.conn.close()
                code = _worker_main(queue, self.consumer, Connection(w, readable=False), parent, self.count,
                                    self.interval)
            finally:
                os._exit(code)
        os.close(w)
        return Worker(queue, pid, Connection(r, writable=False))

    def run(self, count: int | None = None, duration: float | None = None,
            on_tick: Callable[[QueueWorkers], None] | None = None, status: TextIO | None = None,
            status_interval: float = 1.0) -> None:
        """Aggregate until ``count`` packets in total (checked on snapshots: may overshoot by what the
        other queues took in one ``interval``), ``duration`` seconds, or every worker finished. Raises
        GatewayError when a worker fails or dies."""
        now = self.t0 = time.monotonic()
        deadline = now + duration if duration else math.inf
        next_tick = now + status_interval
        while not (count is not None and self.packets() >= count):
            live = [w.conn for w in self.workers if not w.ended]
            if not live or now >= deadline:
                break
            for conn in wait(live, max(0.0, min(next_tick, deadline) - now)):
                self._receive(self._worker(conn))
            now = time.monotonic()
            if now >= next_tick:
                self._update_rates()
                if status is not None:
                    write_status(status, status_text(self.summary(), sum(w.pps for w in self.workers),
                                                     {w.queue: w.pps for w in self.workers}))
                if on_tick is not None:
                    on_tick(self)
                next_tick = now + status_interval
        self.t_end = time.monotonic()
        if status is not None and status.isatty():
            status.write("\n")

    def stop(self) -> None:
        """SIGTERM every worker, collect the final snapshots, SIGKILL what is left after ``stop_timeout``,
        reap all. Safe to call twice; stop signals wait until it is done (it is bounded)."""
        if self.t_end is None:
            self.t_end = time.monotonic()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            for w in self.workers:
                if not w.ended:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while (live := [w.conn for w in self.workers if not w.ended]) and (left := deadline - time.monotonic()) > 0:
                for conn in wait(live, left):
                    self._receive(self._worker(conn), strict=False)
            for w in self.workers:
                if not w.ended:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w.pid, signal.SIGKILL)
                    self._reap(w)
                w.conn.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    # --- parent: messages -----------------------------------------------------------------------
    def _worker(self, conn: object) -> Worker:
        return next(w for w in self.workers if w.conn is conn)

    def _receive(self, w: Worker, strict: bool = True) -> None:
        """Take one message from ``w`` (it is readable). ``strict``: a failure or death raises."""
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            self._reap(w)
            if strict and not w.final:
                raise GatewayError(f"the consumer of queue {w.queue} (pid {w.pid}) {w.ended}", _AFTER_DEATH) from None
            return
        if msg[0] == "error":
            if strict:
                raise GatewayError(f"{msg[1]} (consumer of queue {w.queue}, pid {w.pid})", msg[2])
            return
        w.snapshot = msg[1]
        w.final = w.final or msg[0] == "final"

    @staticmethod
    def _reap(w: Worker) -> None:
        try:
            _, status = os.waitpid(w.pid, 0)
        except ChildProcessError:
            w.ended = "is gone"
            return
        code = os.waitstatus_to_exitcode(status)
        w.ended = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"

    def _update_rates(self) -> None:
        for w in self.workers:
            if w.snapshot is None:
                continue
            t, packets = w.snapshot["t"], w.snapshot["summary"]["packets"]
            if t > w.mark[0]:
                if w.mark[0]:
                    w.pps = (packets - w.mark[1]) / (t - w.mark[0])
                w.mark = (t, packets)

    # --- parent: aggregates ---------------------------------------------------------------------
    def packets(self) -> int:
        return sum(w.snapshot["summary"]["packets"] for w in self.workers if w.snapshot)

    def pids(self) -> dict[int, int]:
        return {w.queue: w.pid for w in self.workers}

    def stats(self) -> dict[str, dict]:
        """Per-queue receiver counters plus the worker's pid and packet rate (for the state file)."""
        return {str(w.queue): {**w.snapshot["stats"], "pid": w.pid, "pps": round(w.pps, 1),
                               **({"held": w.snapshot["summary"]["held"]} if "held" in w.snapshot["summary"] else {})}
                for w in self.workers if w.snapshot}

    def summary(self) -> Summary:
        """Totals like a one-queue summary, latency merged, plus ``queues``: each worker's own summary."""
        parts = {w.queue: {**w.snapshot["summary"], "pid": w.pid} for w in self.workers if w.snapshot}
        latency = None
        for w in self.workers:
            if w.snapshot and w.snapshot["latency"]["count"]:
                h = LatencyHistogram.from_dict(w.snapshot["latency"])
                latency = h if latency is None else latency.merge(h)
        return merge_summaries(parts, (self.t_end or time.monotonic()) - self.t0, latency)


def merge_summaries(parts: Mapping[int, Mapping[str, Any]], duration: float,
                    latency: LatencyHistogram | None = None) -> Summary:
    """One summary for several queues: counters summed key by key (nested dicts too), rates over
    ``duration``, ``latency_ns`` from the merged histogram, and ``queues``: {"q": that queue's summary}."""
    rows = list(parts.values())
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for p in rows for k in p):  # every key, in first-seen order
        if key in _SAME:
            out[key] = next(p[key] for p in rows if key in p)
        elif key in _DERIVED:
            out[key] = None  # keeps its place; filled in below
        elif key == "books":  # tops of book are not counters: never added together
            from xdpgw.book.engine import merge_books

            out[key] = merge_books({q: p[key] for q, p in parts.items() if key in p})
        else:
            for p in rows:
                if key in p:
                    out[key] = _add(out.get(key), p[key])
    packets = int(out.get("packets") or 0)
    duration = max(duration, 1e-9)
    busy = sum((p.get("ns_per_packet") or 0) * p.get("packets", 0) for p in rows)
    errors = [p["last_handler_error"] for p in rows if p.get("last_handler_error")]
    out.update(queue=list(parts), duration_s=round(duration, 6), pps=round(packets / duration, 1),
               ns_per_packet=round(busy / packets, 1) if packets else None,
               latency_ns=latency.percentiles() if latency is not None and len(latency) else None,
               last_handler_error=errors[-1] if errors else None)
    for key in ("latency_ns", "last_handler_error", "pid"):  # only when there is one, as in a Gateway summary
        if out.get(key) is None:
            out.pop(key, None)
    out["queues"] = {str(q): dict(p) for q, p in parts.items()}
    return out  # type: ignore[return-value]  # built key by key from Summary rows


def _add(a: Any, b: Any) -> Any:
    """``a + b`` for counters; dicts merged key by key; anything else keeps the first value."""
    if a is None:
        return dict(b) if isinstance(b, Mapping) else b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        merged = dict(a)
        for k, v in b.items():
            merged[k] = _add(merged.get(k), v)
        return merged
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return a + b
    return a


# --- worker ---------------------------------------------------------------------------------------
class _Outbox:
    """The worker's end of its pipe: whole pickled messages; a tick that does not fit is skipped."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.capacity = fcntl.fcntl(conn.fileno(), fcntl.F_GETPIPE_SZ)
        self.skipped = 0

    def send(self, msg: tuple, block: bool = True) -> None:
        data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
        if not block:
            queued = struct.unpack("i", fcntl.ioctl(self.conn.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
            if queued + len(data) + _MARGIN > self.capacity:
                self.skipped += 1  # the parent is behind: the next snapshot carries the same totals
                return
        with contextlib.suppress(OSError):  # EPIPE: the parent is gone (PDEATHSIG is stopping us)
            self.conn.send_bytes(data)


class _StopOnSignal:
    """SIGTERM/SIGHUP handler: end the gateway's loop (or the one about to start) cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self.gateway: Gateway | None = None

    def __call__(self, _signum: int, _frame: object) -> None:
        self.requested = True
        if self.gateway is not None:
            self.gateway.stop()

    def watch(self, gw: Gateway) -> None:
        self.gateway = gw
        if self.requested:
            gw.stop()


def _snapshot(gw: Gateway) -> dict:
    return {"t": time.monotonic(), "summary": gw.summary(), "stats": gw.stats(), "latency": gw.latency.to_dict()}


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the parent dies (even by SIGKILL); if it already has, stop now."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise GatewayError(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}", "run the gateway on Linux")
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(queue: int, consumer: Consumer, conn: Connection, parent: int, count: int | None,
                 interval: float) -> int:
    """The body of one worker process; returns its exit status."""
    out = _Outbox(conn)
    stop = _StopOnSignal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, stop)
    try:
        with contextlib.ExitStack() as stack:  # closes the socket (never the program) before we exit
            _die_with_parent(parent)
            gw = consumer(queue, stack)
            gw.status, gw.status_interval = None, interval
            gw.on_tick = lambda g: out.send(("tick", _snapshot(g)), block=False)
            stop.watch(gw)
            out.send(("ready", _snapshot(gw)))
            gw.run(count=count)
            out.send(("final", _snapshot(gw)))
        return 0
    except GatewayError as exc:
        out.send(("error", exc.what, exc.fix))
        return 2
    except BaseException as exc:  # a bug: the traceback goes to stderr, the parent reports the queue
        traceback.print_exc()
        out.send(("error", f"{type(exc).__name__}: {exc}", "see the traceback above and report it"))
        return 1
    finally:
        sys.stderr.flush()
