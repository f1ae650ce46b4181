#!/usr/bin/env python3
"""Soak: millions of MoldUDP64 packets with malformed ones mixed in, through XDP into the feed handler.

On a veth lab of its own (``xgs`` + random hex, one queue) an XdpReceiver + FeedHandler(lines=1) runs in this process,
pinned to CPU 0; a sender process in the tx namespace, pinned to CPU 1, sends ``--packets`` packets
with sendmmsg bursts (SocketSender), paced at ``--rate`` packets/s. A ``--malformed-ratio`` share of
extra packets are hostile (see ``KINDS``): random bytes, truncated MoldUDP64 headers, or a copy of a real
packet (just sent, or still to come) whose first block length lies; the stream ends with a heartbeat and
an end of session. The sender prints its totals as JSON; the consumer checks that every
valid message arrived exactly once, in order, and otherwise says how many were lost and where,
separating generator/kernel drops (sent vs BPF ``seen``), AF_XDP ring drops (XDP_STATISTICS) and
consumer losses (delivered to the handler but not to the user).

    sudo .venv/bin/python scripts/soak.py [--packets 10000000] [--rate 100000] [--malformed-ratio 0.001]

Not part of the test run. Exit status 0 only when zero valid messages were lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PORT = 9001
SESSION = "SOAK000001"
CHUNK = 1 << 16  # packets per generated template (sequence numbers are patched per chunk)


# --- sender (runs in the tx namespace) --------------------------------------------------------------------
#: Hostile packet kinds, all survived with zero loss: short, cut headers, a duplicate whose first block
#: length lies, ``random`` (any bytes, so any session and sequence: never a confirmed session, never a
#: corroborated gap) and ``future`` (a real packet from up to 1000 packets ahead, first block length lying:
#: nothing in it is trusted). What no handler can catch without a checksum: a well-formed packet of the
#: right session with a wrong sequence or altered message bytes.
KINDS = ("random_short", "truncated_header", "bad_length", "random", "future")
DEFAULT_KINDS = ",".join(KINDS)


def _hostile(rng: np.random.Generator, buf: np.ndarray, offs: np.ndarray, lens: np.ndarray, where: np.ndarray,
             allowed: list[str]) -> tuple[list[bytes], dict[str, int]]:
    """One hostile payload per insertion point ``where[k]`` (it goes before packet ``where[k]``)."""
    out, kinds = [], dict.fromkeys(KINDS, 0)
    n = len(offs)

    def pkt(i: int) -> bytes:
        return buf[offs[i] : offs[i] + lens[i]].tobytes()

    for w in where.tolist():
        kind = allowed[int(rng.integers(0, len(allowed)))]
        if kind == "bad_length" and w == 0:
            kind = "truncated_header"
        kinds[kind] += 1
        if kind == "random_short":
            out.append(rng.bytes(int(rng.integers(0, 20))))
        elif kind == "random":
            out.append(rng.bytes(int(rng.integers(0, 200))))
        elif kind == "truncated_header":
            out.append(pkt(min(w, n - 1))[: int(rng.integers(0, 20))])
        else:  # a duplicate of the packet just sent, or (future) of one still to come; first block length lies
            base = pkt(w - 1) if kind == "bad_length" else pkt(min(n - 1, w + int(rng.integers(1, 1000))))
            lie = int(rng.choice([0, 1, int.from_bytes(base[20:22], "big") + 1, 0xFFFF]))
            out.append(base[:20] + lie.to_bytes(2, "big") + base[22:])
    return out, kinds


def run_sender(args: argparse.Namespace) -> None:
    from xdpgw.batch import Batch
    from xdpgw.protocol.moldudp64 import encode_end_of_session, encode_heartbeat
    from xdpgw.tools.synth import synth_packets
    from xdpgw.transport.socket import SocketSender

    rng = np.random.default_rng(args.seed)
    tmpl, _ = synth_packets(CHUNK, (1, 4), first_seq=1, session=SESSION, seed=args.seed)
    per_pkt = np.frombuffer(tmpl.buf, np.uint8)[tmpl.offsets[:, None] + np.arange(18, 20)]
    counts = per_pkt[:, 0].astype(np.int64) << 8 | per_pkt[:, 1]
    first = np.zeros(CHUNK, np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    msgs_per_chunk = int(counts.sum())
    seq_pos = tmpl.offsets[:, None] + 10 + np.arange(8)  # the big-endian u64 sequence field
    buf = tmpl.buf.copy()

    sent_pkts = valid_pkts = valid_msgs = hostile_pkts = 0
    kinds_total = dict.fromkeys(KINDS, 0)
    burst, left, chunk = args.burst, args.packets, 0
    t0 = time.perf_counter()
    with SocketSender(args.dest, PORT, sndbuf=32 << 20, stall_timeout=5.0) as tx:
        while left > 0:
            n = min(CHUNK, left)
            seqs = (1 + chunk * msgs_per_chunk + first).astype(">u8")
            buf[seq_pos] = seqs.view(np.uint8).reshape(CHUNK, 8)
            offs, lens = tmpl.offsets[:n], tmpl.lengths[:n]
            is_valid = np.ones(n, bool)
            n_bad = int(rng.binomial(n, args.malformed_ratio)) if args.malformed_ratio > 0 else 0
            if n_bad:
                where = np.sort(rng.integers(0, n + 1, n_bad))
                bad, kinds = _hostile(rng, buf, offs, lens, where, args.kinds.split(","))
                for k, v in kinds.items():
                    kinds_total[k] += v
                extra = Batch.from_payloads(bad)
                data = np.concatenate([buf, extra.buf])
                offs = np.insert(offs, where, extra.offsets + len(buf))
                lens = np.insert(lens, where, extra.lengths)
                is_valid = np.insert(is_valid, where, False)
            else:
                data = buf
            total = len(offs)
            i = 0
            while i < total:
                j = min(i + burst, total)
                due = t0 + (sent_pkts + (j - i)) / args.rate
                while (wait := due - time.perf_counter()) > 0:
                    if wait > 2e-4:
                        time.sleep(wait - 1e-4)
                done = tx.send_batch(Batch(data, offs[i:j], lens[i:j], np.zeros(j - i, np.uint64), j - i))
                if done == 0:
                    raise SystemExit(f"sender stalled: {tx.last_error} (is the consumer alive?)")
                sent_pkts += done
                i += done
            valid_pkts += n
            valid_msgs += int(counts[:n].sum())
            hostile_pkts += total - n
            left -= n
            chunk += 1
        # an idle MoldUDP64 server heartbeats, then ends the session: the consumer learns the last packets
        # were not followed by a gap (a gap before them is only skipped once something corroborates it)
        end = [encode_heartbeat(SESSION, valid_msgs + 1), encode_end_of_session(SESSION, valid_msgs + 1)]
        sent_pkts += tx.send_batch(Batch.from_payloads(end))
        st = tx.stats()
    elapsed = time.perf_counter() - t0
    print(json.dumps({"packets_sent": sent_pkts, "valid_packets": valid_pkts, "valid_messages": valid_msgs,
                      "last_seq": valid_msgs, "hostile_packets": hostile_pkts, "hostile_kinds": kinds_total,
                      "elapsed_s": round(elapsed, 3), "rate_pps": round(sent_pkts / elapsed),
                      "socket": st}), flush=True)


# --- consumer (this process, rx namespace) ----------------------------------------------------------------
def _neigh(ns: str, addr: str, mac: str, dev: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "ip", "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud",
                    "permanent"], check=True)


def run_soak(args: argparse.Namespace) -> int:
    from xdpgw.errors import GatewayError
    from xdpgw.pipeline.feed import FeedHandler
    from xdpgw.tools.lab import Lab, in_netns
    from xdpgw.transport.xdp.rx import XdpReceiver

    cpus = sorted(os.sched_getaffinity(0))
    rx_cpu, tx_cpu = cpus[0], cpus[-1]
    lab = Lab(args.lab, queues=1) if args.lab else Lab.unique("xgs", queues=1)
    rx = None
    try:
        lab.up()
        tx_mac, rx_mac = lab.macs()
        _neigh(lab.tx_ns, lab.rx_ip, rx_mac, lab.tx_if)  # no ARP-queue drops on the first burst
        _neigh(lab.rx_ns, lab.tx_ip, tx_mac, lab.rx_if)
        # veth leaves UDP checksums to "offload" (a partial sum on the wire) and the consumer checks them:
        # have the sender's kernel fill them in, as a real NIC's traffic has them
        subprocess.run(["ip", "netns", "exec", lab.tx_ns, "ethtool", "-K", lab.tx_if, "tx", "off"], check=True,
                       capture_output=True)
        with in_netns(lab.rx_ns):
            rx = XdpReceiver(lab.rx_if, 0, [PORT], mode=args.mode, frames=1 << 15, rx_size=1 << 14)
        os.sched_setaffinity(0, {rx_cpu})
        fh = FeedHandler(lines=1, first_seq=1)
        cmd = ["ip", "netns", "exec", lab.tx_ns, "taskset", "-c", str(tx_cpu), sys.executable, __file__,
               "--sender", "--dest", lab.rx_ip, "--packets", str(args.packets), "--rate", str(args.rate),
               "--burst", str(args.burst), "--malformed-ratio", str(args.malformed_ratio), "--seed", str(args.seed),
               "--kinds", args.kinds]
        sender = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        t0 = time.perf_counter()
        delivered = packets = 0
        expect = 1
        breaks: list[dict] = []  # where delivery skipped or repeated sequences
        idle_since = None
        error = ""
        next_report = 1_000_000
        while True:
            try:
                b = rx.recv_batch(256, timeout=0.01)
            except GatewayError as exc:  # report what we have (and where) instead of a bare traceback
                error = f"{exc} after {packets:,} packets, {delivered:,} messages; receiver {rx.stats()}"
                sender.kill()
                sender.wait()
                break
            if packets >= next_report:
                print(f"soak: {packets:,} packets, {delivered:,} messages", file=sys.stderr, flush=True)
                next_report += 1_000_000
            out = fh.on_batch(b) if b.count else fh.poll()
            packets += b.count
            if out is not None and len(out):
                seq = out.seq
                delivered += len(seq)
                if seq[0] != expect or (len(seq) > 1 and not (np.diff(seq.astype(np.int64)) == 1).all()):
                    bad = np.flatnonzero(np.diff(np.r_[expect - 1, seq.astype(np.int64)]) != 1)
                    for k in bad[:5]:
                        prev = expect - 1 if k == 0 else int(seq[k - 1])
                        if len(breaks) < 100:
                            breaks.append({"after_seq": prev, "got_seq": int(seq[k]), "at_packet": packets})
                expect = int(seq[-1]) + 1
            if b.count or (out is not None and len(out)):
                idle_since = None
            elif sender.poll() is not None:
                idle_since = idle_since or time.perf_counter()
                if time.perf_counter() - idle_since > 0.5:
                    break
        elapsed = time.perf_counter() - t0
        lines = (sender.stdout.read() or "").strip().splitlines()
        report = json.loads(lines[-1]) if sender.returncode == 0 and lines else {}
        if error:
            breaks.append({"error": error})
        st = rx.stats()
        bpf = {k[4:]: v for k, v in st.items() if k.startswith("bpf_")}
        if expect - 1 != int(report.get("last_seq", 0)):  # delivery stopped early (e.g. a session switch)
            breaks.append({"last_delivered_seq": expect - 1, "at_packet": packets})
        return _summarise(args, report, st, bpf, fh, delivered, breaks, elapsed, sender.returncode)
    finally:
        if rx is not None:
            rx.close()
        lab.down()


def _summarise(args, report, st, bpf, fh, delivered, breaks, elapsed, sender_rc) -> int:
    valid = int(report.get("valid_messages", 0))
    sent = int(report.get("packets_sent", 0))
    fs = fh.stats()
    before_xdp = sent - bpf["redirected"] - bpf["rate_limited"] - bpf["denied"]  # generator/veth drops
    ring = st["xdp_rx_dropped"] + st["xdp_rx_ring_full"]  # redirected but not in the AF_XDP ring
    summary = {
        "packets": args.packets, "rate_target_pps": args.rate, "mode": args.mode,
        "sender": report, "sender_exit": sender_rc,
        "valid_messages_sent": valid, "valid_messages_delivered": delivered,
        "lost_messages": valid - delivered,
        "drops": {"before_xdp": before_xdp, "af_xdp_ring": ring,
                  "fill_ring_empty": st["xdp_rx_fill_ring_empty_descs"],
                  "consumer_bad_frames": st["bad_frames"]},
        "bpf": bpf,
        "receiver": {k: st[k] for k in ("packets", "bytes", "drops", "no_stamp", "wakeups", "bad_checksum")
                     if k in st},
        "handler": {k: fs[k] for k in ("messages", "gaps", "missing", "duplicates", "decode_errors", "rejected")
                    if k in fs},
        "sequence_breaks": breaks,
        "consumer_elapsed_s": round(elapsed, 3),
    }
    lost = summary["lost_messages"]
    if lost == 0 and not breaks and sender_rc == 0:
        verdict = "PASS: zero valid messages lost"
    elif before_xdp or ring:
        verdict = (f"FAIL: {lost} valid messages lost; the kernel dropped {before_xdp} packets before XDP and "
                   f"{ring} at the AF_XDP ring (the generator out-ran the consumer: lower --rate)")
    else:
        verdict = f"FAIL: {lost} valid messages lost by the consumer (no kernel drops): see sequence_breaks"
    summary["verdict"] = verdict
    print(json.dumps(summary, indent=1))
    hostile = report.get("hostile_packets", 0)
    print(f"soak: {sent:,} packets ({hostile:,} hostile) at {report.get('rate_pps', 0):,} pps, "
          f"{delivered:,}/{valid:,} valid messages delivered, decode errors {fs['decode_errors']}, "
          f"rejected {fs.get('rejected', {})}, "
          f"BPF seen {bpf['seen']:,} redirected {bpf['redirected']:,} passed {bpf['passed']:,}: {verdict}")
    return 0 if lost == 0 and not breaks and sender_rc == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=10_000_000)
    ap.add_argument("--rate", type=float, default=100_000, help="packets/s the sender paces to")
    ap.add_argument("--burst", type=int, default=64, help="packets per sendmmsg")
    ap.add_argument("--malformed-ratio", type=float, default=0.001)
    ap.add_argument("--kinds", default=DEFAULT_KINDS,
                    help=f"hostile packet kinds, comma separated, from {', '.join(KINDS)} (see KINDS)")
    ap.add_argument("--mode", default="drv", choices=["auto", "drv", "skb"])
    ap.add_argument("--lab", default=None, help="lab name (default: a fresh unique one)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dest", default="10.77.0.2", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not set(args.kinds.split(",")) <= set(KINDS):
        ap.error(f"--kinds: choose from {', '.join(KINDS)}")
    if args.sender:
        run_sender(args)
        return 0
    from xdpgw.errors import friendly
    from xdpgw.kernel.features import require_root

    friendly(require_root)("the soak (network namespaces, XDP)")  # else one line on stderr, exit status 2
    return run_soak(args)


if __name__ == "__main__":
    sys.exit(main())
