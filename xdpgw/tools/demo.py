"""`xdpgw demo`: the whole path on a veth lab made on the spot, in well under a minute.

lab up → XDP program + AF_XDP consumer (decoding MoldUDP64/ITCH) in the rx namespace on one core →
a synthetic ITCH feed with a deliberate gap and a malformed packet, sent from the tx namespace by a
separate process on the other core → live status → final report → lab down (also on Ctrl-C/errors).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from xdpgw.errors import GatewayError
from xdpgw.pipeline.options import DEFAULTS
from xdpgw.tools.lab import Lab, in_netns

PORT = DEFAULTS.receiver.ports[0]


def _cores() -> tuple[int, int]:
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[-1]) if len(cpus) > 1 else (cpus[0], cpus[0])


def sender_main(dest: str, packets: int, rate: float, gap_at: int, malformed_at: int) -> None:
    """Runs in the tx namespace: a paced synthetic feed, one packet at a time (a feed, not bursts)."""
    from xdpgw.batch import Batch
    from xdpgw.tools.synth import split_batch, synth_packets
    from xdpgw.transport.socket import SocketSender

    batch, _ = synth_packets(packets, msgs_per_packet=(20, 30), seed=7)
    keep = np.ones(packets, bool)
    keep[gap_at] = False  # the deliberate gap: one packet (20-30 messages) never sent
    payloads = [bytes(batch.payload(i)) for i in range(packets) if keep[i]]
    payloads.insert(malformed_at, b"\x00" * 9)  # shorter than a MoldUDP64 header
    feed = Batch.from_payloads(payloads)
    host, port = dest.rsplit(":", 1)
    t0 = time.monotonic()
    sent = 0
    with SocketSender(host, int(port)) as tx:
        for part in split_batch(feed, 1):
            while sent / rate > time.monotonic() - t0:  # pace every packet
                time.sleep(0.0005)
            while part.count:
                done = tx.send_batch(part)
                sent += done
                part = part.slice(done)
    print(json.dumps({"sent": sent, "gap_packet": gap_at, "malformed": 1}), flush=True)


def run_demo(packets: int = 20000, rate: float = 5000.0, mode: str = "auto", as_json: bool = False,
             tick_to_trade: float = 1.0) -> dict:
    """The feed demo, then (``tick_to_trade`` seconds > 0) a short tick-to-trade run: a feed tick on a
    fresh lab triggers an OUCH order to the venue simulator, socket vs XDP drv, 1000 ticks/s."""
    from xdpgw.pipeline.assembly import make_gateway, open_receivers
    from xdpgw.pipeline.gateway import signals_as_exit

    consumer_cpu, sender_cpu = _cores()
    allowed = os.sched_getaffinity(0)  # the feed part pins this process; the tick-to-trade run needs both CPUs
    lab = Lab.unique("xgd", queues=1)  # a name of its own: two demos never tear down each other's lab
    opts = DEFAULTS.with_(receiver={"iface": lab.rx_if, "mode": mode}, feed={"protocol": "moldudp64"})
    say = (lambda *a: None) if as_json else (lambda *a: print("demo:", *a, file=sys.stderr, flush=True))
    with signals_as_exit():
        say(f"lab up: {lab.tx_ns}/{lab.tx_if} {lab.tx_ip} -> {lab.rx_ns}/{lab.rx_if} {lab.rx_ip}")
        lab.up()
        sender = None
        try:
            with in_netns(lab.rx_ns):
                (rx,) = open_receivers(opts)  # the receiver attaches (and later detaches) the program itself
            with rx:
                say(f"XDP program attached to {lab.rx_if} ({rx.describe()['mode']} mode), AF_XDP socket on queue 0;"
                    f" consumer on CPU {consumer_cpu}, sender on CPU {sender_cpu}")
                os.sched_setaffinity(0, {consumer_cpu})
                gw = make_gateway([rx], opts, status=None if as_json else sys.stderr)
                sender = subprocess.Popen(
                    ["ip", "netns", "exec", lab.tx_ns, "taskset", "-c", str(sender_cpu), sys.executable, "-c",
                     "import sys; from xdpgw.tools.demo import sender_main; "
                     f"sender_main('{lab.rx_ip}:{PORT}', {packets}, {rate}, {packets // 2}, {packets // 3})"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                say(f"streaming {packets} MoldUDP64 packets (~25 ITCH messages each) at {rate:.0f} pkt/s, "
                    "with one packet left out (a gap) and one malformed packet")
                gw.run(count=packets, duration=packets / rate + 10)
                out, err = sender.communicate(timeout=30)
                if sender.returncode != 0:
                    raise GatewayError(f"demo sender failed: {err.strip()[-300:]}", "run `xdpgw doctor`")
                report = gw.summary()
                report["sender"] = json.loads(out.strip().splitlines()[-1])
        finally:
            if sender is not None and sender.poll() is None:
                sender.kill()
            lab.down()
            say("lab down")
            os.sched_setaffinity(0, allowed)
        if tick_to_trade > 0:
            from xdpgw.orders.tick_to_trade import run_tick_to_trade

            say(f"tick-to-trade: each feed tick sends an OUCH order to the venue simulator, {tick_to_trade:g} s "
                "at 1000 ticks/s per transport")
            report["tick_to_trade"] = run_tick_to_trade((1000,), tick_to_trade, ("socket", "xdp-drv"), say=say)
    if as_json:
        print(json.dumps(report, default=str))
    else:
        print(format_report(report))
    return report


def format_report(r: dict) -> str:
    lat = r.get("latency_ns", {})
    by_type = ", ".join(f"{k} {v}" for k, v in sorted(r.get("messages_by_type", {}).items(), key=lambda kv: -kv[1]))
    errors = ", ".join(f"{k} {v}" for k, v in r.get("decode_errors", {}).items() if v) or "none"
    lines = [
        "",
        "=== xdpgw demo report ===",
        f"transport        {r['transport']} ({r['mode']} mode) on {r['iface']} queue {r['queue']}, port {r['port']}",
        f"packets          {r['packets']} received of {r['sender']['sent']} sent, drops {r['drops']}",
        f"messages         {r.get('messages', 0)} delivered in sequence order",
        f"by type          {by_type}",
        f"gaps             {r.get('gaps', 0)} (missing messages {r.get('missing', 0)}; one packet was left out on purpose)",
        f"decode errors    {errors} (one malformed packet was sent on purpose)",
        f"duplicates       {r.get('duplicates', 0)}",
        "latency          kernel RX (XDP stamp) -> handler: "
        + " ".join(f"{k} {lat[k] / 1e3:.1f}µs" for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max") if k in lat),
        f"BPF counters     {r.get('drops_bpf', {})}",
    ]
    if "tick_to_trade" in r:
        from xdpgw.orders.tick_to_trade import format_table

        lines += ["", format_table(r["tick_to_trade"])]
    return "\n".join(lines)
