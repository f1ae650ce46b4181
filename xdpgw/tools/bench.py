"""`xdpgw bench`: kernel socket vs XDP (skb, drv) side by side, one generator, one table.

On a veth lab made on the spot, the generator for every row is `xdpgw blast` (BPF_PROG_RUN live frames;
real MoldUDP64/ITCH, gap-free, each frame stamped with its send time), run by a separate process in the
tx namespace on its own CPU. The consumer is the real pipeline, in this process on the other CPU:
receiver → :class:`~xdpgw.pipeline.gateway.Gateway` → :class:`~xdpgw.pipeline.feed.FeedHandler` (decoding, sequencing) →
a handler that notes send → handler for every delivered message; kernel-receive → handler is the
Gateway's own per-packet histogram.

Per transport and frame size:
  throughput  the blaster at full speed → offered and received packets/s, loss, consumer ns/packet
              (busy time per packet: receive + decode + handler), decoded messages/s;
  latency     the blaster paced at ``latency_pps`` (default 100 kpps) → percentiles.
Per transport, a burst: the base rate, then 100× it for 100 ms, then the base rate again → loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from xdpgw.errors import GatewayError
from xdpgw.pipeline import flight
from xdpgw.pipeline.histogram import LatencyHistogram
from xdpgw.pipeline.options import DEFAULTS, Options
from xdpgw.tools.lab import Lab, in_netns

PORT = DEFAULTS.receiver.ports[0]
DECODING = DEFAULTS.with_(feed={"protocol": "moldudp64"})  # what `xdpgw attach|listen --protocol moldudp64` run
NS_PER_DAY = 86_400 * 10**9
TRANSPORTS = ("socket", "xdp-skb", "xdp-drv")
SIZES = {"small": 1, "1KB": 0}  # messages per frame; 0: as many as make a ~1 KB frame (see frame_msgs)
LAT_KEYS = ("p50", "p90", "p99", "p999", "max")


@dataclass(frozen=True)
class Plan:
    """How long each part runs (``quick`` keeps the whole bench under a minute)."""

    throughput_s: float = 2.0
    latency_s: float = 2.0
    latency_pps: float = 100_000.0
    burst_base_pps: float = 10_000.0
    burst_factor: float = 100.0
    burst_s: float = 0.1
    calm_s: float = 0.5

    @classmethod
    def quick(cls) -> Plan:
        return cls(throughput_s=0.5, latency_s=0.4, calm_s=0.2)


def frame_msgs(target: int = 1024) -> int:
    """Messages per blast frame that make the frame closest to ``target`` bytes."""
    from xdpgw.tools.blast import MAX_MSGS, blast_frame
    from xdpgw.transport.xdp.tx import Route

    route = Route("x", 1, 9000, "02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2", "10.0.0.2")
    sizes = {n: len(blast_frame(route, 40000, PORT, n, "B")) for n in range(1, MAX_MSGS + 1)}
    return min(sizes, key=lambda n: abs(sizes[n] - target))


# --- the generator process --------------------------------------------------------------------------------
def blaster_main(iface: str, dst_ip: str, cpu: int, msgs: dict[str, int]) -> None:
    """Runs in the tx namespace: one Blaster per frame size, commands in JSON lines on stdin, reports out."""
    from xdpgw.tools.blast import Blaster

    blasters = {size: Blaster(iface, dst_ip, PORT, msgs_per_packet=n, session=f"BENCH{size}"[:10])
                for size, n in msgs.items()}
    print(json.dumps({"ready": {s: len(b.frame) for s, b in blasters.items()}}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        b = blasters[cmd["size"]]
        for other in blasters.values():  # one anchor per namespace (loopback takes one program): the
            if other is not b:           # blaster about to run holds it, else its paced runs of more
                other.release_anchor()   # than one frame pay ~24 ms each and come out in 24 ms bursts
        b.anchor()  # full-speed runs too (each BPF_PROG_RUN call of an unanchored program pays that update)
        if cmd["op"] == "full":
            rep = b.run(1 << 62, chunk=1 << 16, duration=cmd["seconds"], cpu=cpu)
        elif cmd["op"] == "paced":
            rep = b.run_paced(cmd["pps"], cmd["seconds"], cpu=cpu)
        else:  # burst: calm, burst, calm
            parts = [b.run_paced(pps, secs, cpu=cpu) for pps, secs in cmd["schedule"]]
            rep = {"packets": sum(p["packets"] for p in parts), "seconds": sum(p["seconds"] for p in parts),
                   "parts": [{"target_pps": p["target_pps"], "pps": p["pps"], "packets": p["packets"]} for p in parts]}
            rep["pps"] = rep["packets"] / rep["seconds"]
        print(json.dumps(rep), flush=True)
    for b in blasters.values():
        b.close()


class BlasterProcess:
    """The generator, in its own process in the tx namespace, pinned to ``cpu``."""

    def __init__(self, lab: Lab, cpu: int, msgs: dict[str, int]) -> None:
        code = (f"from xdpgw.tools.bench import blaster_main; "
                f"blaster_main({lab.tx_if!r}, {lab.rx_ip!r}, {cpu}, {msgs!r})")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.tx_ns, "taskset", "-c", str(cpu), sys.executable, "-c", code],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = self.reply(timeout=120)
        self.frame_len: dict[str, int] = ready["ready"]

    def send(self, cmd: dict) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def poll_reply(self) -> dict | None:
        """The reply if one is ready (no waiting)."""
        if select.select([self.proc.stdout], [], [], 0)[0]:
            return self._read()
        return None

    def reply(self, timeout: float) -> dict:
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise GatewayError(f"the bench generator did not answer in {timeout:.0f} s", "run `xdpgw doctor`")
        return self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            raise GatewayError(f"the bench generator died: {err[-1] if err else 'no message'}",
                               "check `xdpgw blast` on its own, and `xdpgw doctor`")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):  # no ResourceWarning at exit
            if pipe is not None and not pipe.closed:
                pipe.close()


# --- the consumer side ------------------------------------------------------------------------------------
class SendLatencyProbe:
    """The bench's handler: send → now for every delivered message (its ITCH timestamp, CLOCK_REALTIME ns
    since midnight, stamped by the blaster). Kernel receive → handler is the Gateway's own histogram."""

    def __init__(self) -> None:
        self.send = LatencyHistogram()

    def __call__(self, dec) -> None:
        from xdpgw.protocol.itch import timestamps

        real = time.time_ns() % NS_PER_DAY
        for recs in dec.by_type.values():
            self.send.record_since(real, timestamps(recs))  # (a run across midnight counts as rejected)


def receiver_options(kind: str, lab: Lab) -> Options:
    """A row's pipeline: `xdpgw listen` (socket) or `xdpgw attach` (xdp-skb, xdp-drv) on the lab, as the
    commands open it by default."""
    if kind == "socket":
        return DECODING.with_(receiver={"transport": "socket"})
    return DECODING.with_(receiver={"iface": lab.rx_if, "mode": kind.split("-", 1)[1]})


def open_receiver(kind: str, lab: Lab):
    from xdpgw.pipeline.assembly import open_receivers

    with in_netns(lab.rx_ns):
        (rx,) = open_receivers(receiver_options(kind, lab))
    return rx


def run_phase(rx, feed, gen: BlasterProcess, cmd: dict, probe: bool = True, tail: float = 0.2,
              limit: float = 60.0, handlers: tuple = (), taps: tuple = ()) -> dict:
    """Start ``cmd`` on the generator and consume until it is done and the stream has drained.

    ``probe``: a handler notes every message's send → handler latency (else no handler: the throughput
    phases measure the pipeline itself, decoding included). ``handlers``/``taps``: more for the Gateway
    (e.g. the tick-to-trade strategy)."""
    from xdpgw.pipeline.assembly import make_gateway
    from xdpgw.pipeline.gateway import Gateway

    lp = SendLatencyProbe()
    state: dict = {"report": None, "deadline": time.monotonic() + limit, "packets": 0, "last": 0.0}

    def tick(gw: Gateway) -> None:
        now = time.monotonic()
        if gw.totals.packets != state["packets"]:  # when packets last arrived (to within a tick, 2 ms)
            state["packets"], state["last"] = gw.totals.packets, now
        if state["report"] is None:
            state["report"] = gen.poll_reply()
            if state["report"] is not None:
                state["deadline"] = now + tail
        elif gw.totals.packets >= state["report"]["packets"]:
            gw.stop()
        if now >= state["deadline"]:
            gw.stop()

    gw = make_gateway([rx], DECODING.with_(run={"status_interval": 0.002}), feed=feed,
                      handlers=([lp] if probe else []) + list(handlers), on_tick=tick, taps=taps)
    stats0 = rx.stats()
    feed0 = feed.stats() if feed is not None else {}
    t0 = time.monotonic()
    gen.send(cmd)
    summary = gw.run()
    report = state["report"] or gen.reply(timeout=30)
    stats1, feed1 = rx.stats(), feed.stats() if feed is not None else {}
    active = max(state["last"] - t0, report["seconds"], 1e-9)
    return {
        "offered": report["packets"], "offered_pps": report["pps"], "gen": report,
        "received": summary["packets"], "received_pps": summary["packets"] / active,
        "ns_per_packet": summary.get("ns_per_packet"),
        "messages": feed1.get("messages", 0) - feed0.get("messages", 0),
        "msgs_per_s": (feed1.get("messages", 0) - feed0.get("messages", 0)) / active,
        "missing": feed1.get("missing", 0) - feed0.get("missing", 0), "gaps": feed1.get("gaps", 0) - feed0.get("gaps", 0),
        "drops": stats1.get("drops", 0) - stats0.get("drops", 0),
        "rx_latency": gw.latency, "send_latency": lp.send, "fast_path_packets": summary.get("fast_path_packets", 0),
    }


def _lat(h: LatencyHistogram) -> dict[str, float]:
    p = h.percentiles()
    return {"p50": p["p50"], "p90": p["p90"], "p99": p["p99"], "p999": p["p99.9"], "max": p["max"], "count": p["count"]}


def _loss(offered: int, received: int) -> float:
    return round(100.0 * max(offered - received, 0) / offered, 4) if offered else 0.0


def bench_transport(kind: str, lab: Lab, gen: BlasterProcess, plan: Plan, say) -> tuple[list[dict], dict, dict]:
    """The rows of one transport (one per frame size), its burst result and its latency histograms."""
    from xdpgw.pipeline.assembly import make_feed

    rows, hists = [], {}
    with open_receiver(kind, lab) as rx:
        mode = rx.describe().get("mode")
        for size in SIZES:
            feed = make_feed(DECODING.feed)
            say(f"{kind}: {size} frames at full speed for {plan.throughput_s:g} s")
            thr = run_phase(rx, feed, gen, {"op": "full", "size": size, "seconds": plan.throughput_s}, probe=False)
            say(f"{kind}: {size} frames paced at {plan.latency_pps / 1e3:g} kpps for {plan.latency_s:g} s")
            drain(rx)  # the full-speed phase's backlog is not the latency phase's
            lat = run_phase(rx, feed, gen, {"op": "paced", "size": size, "pps": plan.latency_pps,
                                            "seconds": plan.latency_s})
            hists[size] = lat["rx_latency"]
            rows.append({
                "transport": kind, "mode": mode, "size": size, "frame_bytes": gen.frame_len[size],
                "offered_pps": round(thr["offered_pps"]), "received_pps": round(thr["received_pps"]),
                "loss_pct": _loss(thr["offered"], thr["received"]),
                "ns_per_packet": thr["ns_per_packet"], "msgs_per_s": round(thr["msgs_per_s"]),
                "latency_ns": _lat(lat["rx_latency"]), "send_latency_ns": _lat(lat["send_latency"]),
                "latency_offered_pps": round(lat["offered_pps"]),
                "latency_loss_pct": _loss(lat["offered"], lat["received"]),
                "gaps": thr["gaps"] + lat["gaps"], "missing_msgs": thr["missing"] + lat["missing"],
            })
        say(f"{kind}: burst {plan.burst_factor:g}x {plan.burst_base_pps / 1e3:g} kpps for {plan.burst_s * 1e3:g} ms")
        calm = (plan.burst_base_pps, plan.calm_s)
        b = run_phase(rx, make_feed(DECODING.feed), gen, {
            "op": "burst", "size": "small",
            "schedule": [calm, (plan.burst_base_pps * plan.burst_factor, plan.burst_s), calm]})
        burst = {"transport": kind, "offered": b["offered"], "received": b["received"],
                 "loss_pct": _loss(b["offered"], b["received"]), "burst_pps": round(b["gen"]["parts"][1]["pps"]),
                 "missing_msgs": b["missing"], "latency_ns": _lat(b["rx_latency"])}
    return rows, burst, hists


def two_cpus() -> tuple[int, int]:
    """(consumer CPU, generator CPU): the first and last this process may use."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise GatewayError("the bench needs two CPUs (generator and consumer each on its own)",
                           "run it on a machine (or cgroup) with at least 2 CPUs")
    return cpus[0], cpus[-1]


@contextlib.contextmanager
def bench_lab(name: str, msgs: dict[str, int], say=lambda *a: None):
    """A fresh veth lab with the generator running on one CPU and this process pinned to another (both
    removed afterwards, also on errors): yields ``(lab, generator, {"consumer": cpu, "generator": cpu})``.
    ``name``: the lab's prefix (at most 7 characters; see ``Lab.unique``)."""
    from xdpgw.kernel.features import require_root
    from xdpgw.ops.tuning import on_cpu

    require_root()
    consumer_cpu, gen_cpu = two_cpus()
    lab = Lab.unique(name, queues=1)  # a name of its own: two benches never tear down each other's lab
    say(f"lab {lab.name} up; generator (blast) on CPU {gen_cpu}, consumer on CPU {consumer_cpu}")
    lab.up()
    gen = None
    try:
        # blast frames reach a veth peer only if it has native XDP or GRO on (see xdpgw.tools.blast)
        subprocess.run(["ip", "netns", "exec", lab.rx_ns, "ethtool", "-K", lab.rx_if, "gro", "on"],
                       check=True, capture_output=True)
        gen = BlasterProcess(lab, gen_cpu, msgs)
        with on_cpu(consumer_cpu):
            yield lab, gen, {"consumer": consumer_cpu, "generator": gen_cpu}
    finally:
        if gen is not None:
            gen.close()
        lab.down()
        say("lab down")


def run_bench(plan: Plan, transports: tuple[str, ...] = TRANSPORTS, say=lambda *a: None) -> dict:
    """The whole bench on a fresh lab (removed afterwards, also on errors); the result as a dict."""
    rows, bursts, cdfs = [], [], {}
    with bench_lab("xgb", {"small": SIZES["small"], "1KB": frame_msgs(1024)}, say) as (lab, gen, cpus):
        for kind in transports:
            r, b, h = bench_transport(kind, lab, gen, plan, say)
            rows += r
            bursts.append(b)
            cdfs[kind] = h
    add_ratios(rows)
    return {"rows": rows, "burst": bursts, "plan": plan.__dict__, "receiver": DEFAULTS.to_dict()["receiver"],
            "cpus": cpus, "kernel": os.uname().release,
            "lab": lab.name, "_cdfs": cdfs}


def add_ratios(rows: list[dict]) -> None:
    """Each row's received packets/s over the socket row's of the same size; and socket p99 / row p99."""
    base = {r["size"]: r for r in rows if r["transport"] == "socket"}
    for r in rows:
        b = base.get(r["size"])
        r["ratio_vs_socket"] = round(r["received_pps"] / b["received_pps"], 2) if b and b["received_pps"] else None
        p99 = r["latency_ns"]["p99"]
        r["p99_ratio_socket_over_this"] = round(b["latency_ns"]["p99"] / p99, 2) if b and p99 else None


def format_table(res: dict) -> str:
    def us(v: float) -> str:
        return f"{v / 1e3:.1f}"

    head = (f"{'transport':9} {'size':>5} {'frame':>5} {'offered':>9} {'received':>9} {'loss%':>6} {'ns/pkt':>7} "
            f"{'msgs/s':>9} {'x sock':>6} | {'rx→handler µs p50':>17} {'p99':>6} {'p99.9':>7} {'max':>7} | "
            f"{'send→handler p50':>16} {'p99':>6}")
    out = [f"xdpgw bench: kernel {res['kernel']}, consumer CPU {res['cpus']['consumer']}, generator (blast) CPU "
           f"{res['cpus']['generator']}; throughput {res['plan']['throughput_s']:g} s at full speed, latency at "
           f"{res['plan']['latency_pps'] / 1e3:g} kpps", head, "-" * len(head)]
    for r in res["rows"]:
        lat, snd = r["latency_ns"], r["send_latency_ns"]
        out.append(
            f"{r['transport']:9} {r['size']:>5} {r['frame_bytes']:>5} {r['offered_pps'] / 1e6:>8.3f}M "
            f"{r['received_pps'] / 1e6:>8.3f}M {r['loss_pct']:>6.2f} {r['ns_per_packet'] or 0:>7.0f} "
            f"{r['msgs_per_s'] / 1e6:>8.2f}M {r['ratio_vs_socket'] or 0:>5.1f}x | {us(lat['p50']):>17} "
            f"{us(lat['p99']):>6} {us(lat['p999']):>7} {us(lat['max']):>7} | {us(snd['p50']):>16} {us(snd['p99']):>6}")
    out.append("")
    out.append(f"burst: {res['plan']['burst_base_pps'] / 1e3:g} kpps, then {res['plan']['burst_factor']:g}x for "
               f"{res['plan']['burst_s'] * 1e3:g} ms, then {res['plan']['burst_base_pps'] / 1e3:g} kpps (small frames)")
    for b in res["burst"]:
        out.append(f"  {b['transport']:9} offered {b['offered']:>7} (burst {b['burst_pps'] / 1e6:.2f} Mpps) received "
                   f"{b['received']:>7} loss {b['loss_pct']:.3f}%  p99 {us(b['latency_ns']['p99'])} µs")
    return "\n".join(out)


def plot(res: dict, path: str) -> str:
    """Latency CDF per transport (small frames, kernel-receive → handler) and throughput bars, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise GatewayError("the PNG needs matplotlib", "pip install 'xdpgw[plot]' (scripts/setup.sh does)") from exc
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for kind, hists in res["_cdfs"].items():
        h = hists.get("small")
        if h is None or not len(h):
            continue
        nz = np.flatnonzero(h.counts)
        lows, widths = h.bucket_bounds(nz)
        cdf = np.cumsum(h.counts[nz]) / h.count
        ax1.step((lows + widths) / 1e3, cdf, where="post", label=kind)
    ax1.set_xscale("log")
    ax1.set_xlabel("kernel receive → handler (µs, log)")
    ax1.set_ylabel("fraction of messages")
    ax1.set_title(f"latency CDF at {res['plan']['latency_pps'] / 1e3:g} kpps, small frames")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend()
    sizes = list(dict.fromkeys(r["size"] for r in res["rows"]))
    kinds = list(dict.fromkeys(r["transport"] for r in res["rows"]))
    width = 0.8 / max(len(kinds), 1)
    for i, kind in enumerate(kinds):
        vals = [next((r["received_pps"] / 1e6 for r in res["rows"] if r["transport"] == kind and r["size"] == s), 0)
                for s in sizes]
        bars = ax2.bar(np.arange(len(sizes)) + i * width, vals, width, label=kind)
        ax2.bar_label(bars, fmt="%.2f", fontsize=8)
    ax2.set_xticks(np.arange(len(sizes)) + width * (len(kinds) - 1) / 2, sizes)
    ax2.set_ylabel("received Mpps (consumer, decoding)")
    ax2.set_title("throughput, generator at full speed")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def to_json(res: dict) -> str:
    return json.dumps({k: v for k, v in res.items() if not k.startswith("_")}, indent=2)


# --- `xdpgw bench --latency`: kernel receive → handler, per pipeline, rate and frame size ---------------
LAT_ROWS = (("bare C loop", "xdp-drv"), ("counting", "xdp-drv"), ("decoding", "xdp-drv"),
            ("decoding", "xdp-skb"), ("decoding", "socket"))
LAT_RATES = (1_000.0, 10_000.0, 100_000.0)
LAT_MSGS = {"1": 1, "25": 25}  # messages per frame


class _Handler:
    """The latency rows' Python handler: called with every delivered batch, notes how much it got."""

    def __init__(self) -> None:
        self.calls = self.items = 0

    def __call__(self, item) -> None:
        self.calls += 1
        self.items += len(item)


def drain(rx, quiet_s: float = 0.05, limit_s: float = 5.0) -> int:
    """Consume (and forget) whatever is queued until nothing came for ``quiet_s``: phases never see the
    previous phase's backlog."""
    got, t_end = 0, time.monotonic() + limit_s
    last = time.monotonic()
    while time.monotonic() - last < quiet_s and time.monotonic() < t_end:
        n = rx.recv_batch(256, timeout=0).count
        if n:
            got += n
            last = time.monotonic()
    return got


def latency_phase(what: str, rx, gen: BlasterProcess, size: str, pps: float, seconds: float) -> dict:
    """One paced phase; kernel receive → handler (bare C loop: → seen) percentiles, as a row."""
    from xdpgw.pipeline.feed import FeedHandler
    from xdpgw.pipeline.histogram import fold_latency, latency_acc

    drain(rx)
    cmd = {"op": "paced", "size": size, "pps": pps, "seconds": seconds}
    if what == "bare C loop":
        from xdpgw._native._xsk import lib

        h = LatencyHistogram()
        acc = latency_acc(h)
        gen.send(cmd)
        got = lib.xgw_bare_consume(rx._xsk, time.monotonic_ns() + int((seconds + 0.3) * 1e9), rx.spin_ns, acc[0])
        fold_latency(acc, h)
        report = gen.reply(timeout=30)
        res = {"offered": report["packets"], "received": int(got), "rx_latency": h, "delivered": 0,
               "fast_path_packets": 0, "gen": report}
    else:
        feed = None
        if what == "decoding":  # decoding, sequencing and a subscription (by locate: every message kept)
            feed = FeedHandler(lines=1, symbols=["AAPL", "MSFT"], locates=range(1 << 16))
            feed.fast.set_trace(1 << 17)  # the flight recorder: every tail over 100 µs gets its cause
        handler = _Handler()
        res = run_phase(rx, feed, gen, cmd, probe=False, handlers=(handler,))
        res["delivered"] = handler.items
        if feed is not None:
            res["tails"] = tail_causes(flight.explain(flight.entries(feed.fast)))
    return {"pipeline": what, "size": size, "pps": pps, "offered": res["offered"], "received": res["received"],
            "delivered": res["delivered"], "fast_path_packets": res["fast_path_packets"],
            "generator_anchored": res["gen"].get("anchored"),  # False: it sent 24 ms bursts, not a pace
            "tails": res.get("tails"), "latency_ns": _lat(res["rx_latency"]), "_hist": res["rx_latency"]}


def tail_causes(report: dict) -> dict:
    """A flight-recorder report (``flight.explain``) as counts of bursts over 100 µs by cause: the
    consumer off its CPU (another process ran), else the largest part: the kernel's or ours."""
    by = report.get("by_cause", {})
    return {"bursts": report.get("bursts", 0), "over_100us": report.get("tails", 0), "off_cpu": by.get("off_cpu", 0),
            "kernel": by.get("kernel", 0), "ours": by.get("ours", 0), "worst_us": report.get("worst_us", 0.0)}


def run_latency_bench(seconds: float = 1.0, rows=LAT_ROWS, rates=LAT_RATES, say=lambda *a: None) -> dict:
    """The latency table on a fresh lab: every row × rate × frame size, ratios to the bare C loop."""
    out: list[dict] = []
    load = [os.getloadavg()[0]]
    with bench_lab("xgl", LAT_MSGS, say) as (lab, gen, cpus):
        for what, kind in rows:
            with open_receiver(kind, lab) as rx:
                for size in LAT_MSGS:
                    for pps in rates:
                        say(f"{what} {kind}: {size} msg/frame at {pps / 1e3:g} kpps for {seconds:g} s")
                        r = latency_phase(what, rx, gen, size, pps, seconds)
                        r["transport"] = kind
                        out.append(r)
    load.append(os.getloadavg()[0])
    ref = {(r["size"], r["pps"]): r for r in out if r["pipeline"] == "bare C loop"}
    for r in out:
        b = ref.get((r["size"], r["pps"]))
        r["p50_x_ref"] = round(r["latency_ns"]["p50"] / b["latency_ns"]["p50"], 2) if b and b["latency_ns"]["p50"] else None
        r["p99_x_ref"] = round(r["latency_ns"]["p99"] / b["latency_ns"]["p99"], 2) if b and b["latency_ns"]["p99"] else None
    return {"latency_rows": out, "seconds": seconds, "load_1min": load, "kernel": os.uname().release, "cpus": cpus,
            "lab": lab.name}


def format_latency_table(res: dict) -> str:
    def us(v: float) -> str:
        return f"{v / 1e3:.1f}"

    head = (f"{'pipeline':12} {'transport':9} {'msgs':>4} {'kpps':>5} {'recv':>7} {'fast%':>5} | {'p50 µs':>7} {'p90':>6} "
            f"{'p99':>6} {'p99.9':>7} {'max':>8} | {'p50 x ref':>9} {'p99 x ref':>9} | tails>100µs off-CPU/kernel/ours")
    load = res["load_1min"]
    out = [f"xdpgw bench --latency: kernel {res['kernel']}, consumer CPU {res['cpus']['consumer']}, generator CPU "
           f"{res['cpus']['generator']}, {res['seconds']:g} s per row, load (1 min) {load[0]:.2f} → {load[1]:.2f}; "
           "kernel receive stamp → handler (bare C loop: → seen)", head, "-" * len(head)]
    for r in res["latency_rows"]:
        lat = r["latency_ns"]
        fast = 100.0 * r["fast_path_packets"] / r["received"] if r["received"] else 0.0
        out.append(f"{r['pipeline']:12} {r['transport']:9} {r['size']:>4} {r['pps'] / 1e3:>5g} {r['received']:>7} {fast:>5.1f} | "
                   f"{us(lat['p50']):>7} {us(lat['p90']):>6} {us(lat['p99']):>6} {us(lat['p999']):>7} "
                   f"{us(lat['max']):>8} | {r['p50_x_ref'] or 0:>9.2f} {r['p99_x_ref'] or 0:>9.2f}"
                   + (f" | {t['over_100us']}: {t['off_cpu']}/{t['kernel']}/{t['ours']}" if (t := r.get("tails")) else ""))
    return "\n".join(out)


def plot_latency(res: dict, path: str) -> str:
    """CDF per row at 10 kpps, one panel per frame size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LAT_MSGS), figsize=(13, 5))
    for ax, size in zip(axes, LAT_MSGS, strict=True):
        for r in res["latency_rows"]:
            h = r.get("_hist")
            if r["size"] != size or r["pps"] != 10_000.0 or h is None or not len(h):
                continue
            nz = np.flatnonzero(h.counts)
            lows, widths = h.bucket_bounds(nz)
            ax.step((lows + widths) / 1e3, np.cumsum(h.counts[nz]) / h.count, where="post",
                    label=f"{r['pipeline']} {r['transport']}")
        ax.set_xscale("log")
        ax.set_xlabel("kernel receive → handler (µs, log)")
        ax.set_title(f"10 kpps, {size} msg/frame")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pipeline_cost(calls: int = 20_000) -> list[dict]:
    """Our part alone, in process (no kernel, no generator): ns per 1-packet burst from "the receiver
    returned" to "the handler returned", for the C fast path (the Gateway's fast lane: C pointers) and
    the general path (``FeedHandler(fast=False)``), 1 and 25 messages per packet, with the latency rows'
    subscription and handler. Median and p99 of single calls."""
    from xdpgw._native._xsk import ffi
    from xdpgw.batch import Batch
    from xdpgw.pipeline.feed import FeedHandler
    from xdpgw.tools.synth import synth_packets

    rows = []
    for msgs in LAT_MSGS.values():
        batch, codes = synth_packets(calls + 2, (msgs, msgs), seed=3)
        per = [batch.slice(i, i + 1) for i in range(calls + 2)]
        for fast in (True, False):
            feed = FeedHandler(lines=1, symbols=["AAPL", "MSFT"], locates=range(1 << 16), fast=fast,
                               clock=lambda: 0.0)
            handler = _Handler()
            feed.on_batch(Batch.from_payloads([p for b in per[:2] for p in b.payloads()]))
            buf = ffi.from_buffer("uint8_t[]", batch.buf)
            ptrs = [(ffi.from_buffer("int64_t[]", b.offsets), ffi.from_buffer("uint32_t[]", b.lengths),
                     ffi.from_buffer("uint64_t[]", b.ts_ns)) for b in per[2:]]
            took = np.empty(calls, np.int64)
            perf = time.perf_counter_ns
            on_burst = feed.on_burst
            for i, b in enumerate(per[2:]):
                t0 = perf()
                if fast:
                    offs, lens, ts = ptrs[i]
                    k = on_burst(buf, offs, lens, ts, 1)
                    out = feed.fast.out if k > 0 else None
                else:
                    out = feed.on_batch(b)
                if out is not None:
                    handler(out)
                took[i] = perf() - t0
            assert handler.items == calls * msgs, "the pipeline lost messages"
            rows.append({"path": "C fast path" if fast else "general path", "msgs": msgs,
                         "p50_ns": int(np.percentile(took, 50)), "p99_ns": int(np.percentile(took, 99))})
    return rows


def startup_cost(sessions: int = 40) -> list[dict]:
    """A session's start, in process: µs of our part (receiver returned → handler returned) for each of the
    first two 1-packet bursts of a fresh feed handler (the latency rows' subscription and handler, made right
    before, as each latency row makes one): the fast lane (C proves the session) vs the general path
    (``FeedHandler(fast=False)``, what start-up took before). Median and max over ``sessions`` handlers."""
    from xdpgw._native._xsk import ffi
    from xdpgw.pipeline.feed import FeedHandler
    from xdpgw.tools.synth import synth_packets

    rows = []
    perf = time.perf_counter_ns
    for msgs in LAT_MSGS.values():
        batch, _ = synth_packets(2, (msgs, msgs), seed=5)
        per = [batch.slice(i, i + 1) for i in range(2)]
        buf = ffi.from_buffer("uint8_t[]", batch.buf)
        ptrs = [(ffi.from_buffer("int64_t[]", b.offsets), ffi.from_buffer("uint32_t[]", b.lengths),
                 ffi.from_buffer("uint64_t[]", b.ts_ns)) for b in per]
        for fast in (True, False):
            took = np.empty((sessions, 2), np.int64)
            for j in range(sessions):
                feed = FeedHandler(lines=1, symbols=["AAPL", "MSFT"], locates=range(1 << 16), fast=fast)
                handler = _Handler()
                for i, b in enumerate(per):  # as the Gateway's fast lane: C first, the general path on DEFER
                    t0 = perf()
                    k = feed.on_burst(buf, *ptrs[i], 1) if fast else -1
                    out = (feed.fast.out if k > 0 else None) if k >= 0 else feed.on_batch(b)
                    if out is not None:
                        handler(out)
                    took[j, i] = perf() - t0
                assert handler.items == 2 * msgs, "the session start lost messages"
            rows.append({"path": "C fast path" if fast else "general path", "msgs": msgs,
                         **{f"burst{i + 1}_{q}_us": round(float(f(took[:, i])) / 1e3, 1)
                            for i in (0, 1) for q, f in (("p50", np.median), ("max", np.max))}})
    return rows


def format_startup_cost(rows: list[dict]) -> str:
    out = ["a session's start (first two 1-packet bursts of a fresh feed handler), our part, in process:",
           f"  {'path':<14}{'msgs':>5}{'1st p50 µs':>12}{'1st max':>9}{'2nd p50 µs':>12}{'2nd max':>9}"]
    for r in rows:
        out.append(f"  {r['path']:<14}{r['msgs']:>5}{r['burst1_p50_us']:>12.1f}{r['burst1_max_us']:>9.1f}"
                   f"{r['burst2_p50_us']:>12.1f}{r['burst2_max_us']:>9.1f}")
    return "\n".join(out)


def format_pipeline_cost(rows: list[dict]) -> str:
    out = ["our part per 1-packet burst (receiver returned → handler returned), in process:",
           f"  {'path':<14}{'msgs':>5}{'p50 µs':>9}{'p99 µs':>9}"]
    for r in rows:
        out.append(f"  {r['path']:<14}{r['msgs']:>5}{r['p50_ns'] / 1e3:>9.2f}{r['p99_ns'] / 1e3:>9.2f}")
    return "\n".join(out)
