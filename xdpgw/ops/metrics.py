"""Prometheus exposition of the gateway summary (``pip install 'xdpgw[metrics]'``).

`MetricsServer` serves ``http://ADDR:PORT/metrics`` from its own `CollectorRegistry`. The gateway calls
``update(summary)`` with its :class:`xdpgw.pipeline.summary.Summary` whenever it likes (cheap: it only swaps a
reference); every scrape renders the latest snapshot, so counters are the totals the gateway keeps.

Families (see xdpgw/pipeline/summary.py for each field's meaning and producer)::

    packets, bytes                     -> xdpgw_packets_total, xdpgw_bytes_total
    drops, drops_kernel, drops_bpf     -> xdpgw_drops_total{source="receiver"|"kernel"|"bpf", cause}
    drops_bpf (every BPF counter)      -> xdpgw_bpf_packets_total{counter}
    handler_errors                     -> xdpgw_handler_errors_total
    queues: {q: Summary}               -> xdpgw_queue_{packets,bytes,drops}_total{queue[,source,cause]}
    messages_by_type                   -> xdpgw_messages_total{type}       (delivered to the handlers)
    received, filtered, duplicates, missing, recovered
                                       -> xdpgw_{received,filtered,duplicate,missing,recovered}_messages_total
    gaps                               -> xdpgw_gaps_total
    decode_errors, rejected            -> xdpgw_decode_errors_total{kind}, xdpgw_rejected_messages_total{cause}
    held                               -> xdpgw_held_messages{reason}      (gauge: waiting now)
    latency_ns                         -> summary xdpgw_latency_seconds{quantile} (+ _count; _sum with "sum")
      or {"buckets": {upper_ns: n, ..., "+Inf": n}, "count": n, "sum": ns} -> histogram (per-bucket counts)
    duration_s, pps, ns_per_packet     -> xdpgw_stat{name}  (gauges)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from xdpgw.errors import GatewayError
from xdpgw.pipeline.summary import BPF_NOT_DROPS, Summary
from xdpgw.protocol.sequencer import HELD_REASONS

try:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError as _e:  # pragma: no cover - depends on the install
    raise GatewayError("prometheus_client is not installed",
                       "pip install 'xdpgw[metrics]' (or: pip install prometheus_client)") from _e

_GAUGES = ("duration_s", "pps", "ns_per_packet")
_FEED_COUNTERS = (("received", "received_messages", "Feed messages taken in (decoded blocks, valid or not)"),
                  ("filtered", "filtered_messages", "Messages not subscribed (--symbols)"),
                  ("duplicates", "duplicate_messages", "Copies of messages already delivered or given up"),
                  ("missing", "missing_messages", "Sequence numbers given up (never received)"),
                  ("recovered", "recovered_messages", "Messages that filled a gap"),
                  ("gaps", "gaps", "Sequence gaps seen"))
_QUANTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def _quantile(key: str) -> str | None:
    """``"p99.9"`` -> ``"0.999"``, ``"max"`` -> ``"1"``, a number in (0, 1] stays; else None."""
    if key == "max":
        return "1"
    m = _QUANTILE.match(key)
    if m:
        return format((Decimal(m.group(1)) / 100).normalize(), "f")
    try:
        q = float(key)
    except ValueError:
        return None
    return repr(q) if 0 < q <= 1 else None


def drops_by_cause(s: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """``{(source, cause): packets}``: the receiver's drops, the kernel's (XDP_STATISTICS) and our BPF
    program's packets that were not bypassed (all but ``BPF_NOT_DROPS``)."""
    out: dict[tuple[str, str], int] = {}
    if isinstance(s.get("drops"), int | float):
        out["receiver", "drops"] = s["drops"]
    for k, v in (s.get("drops_kernel") or {}).items():
        out["kernel", str(k)] = v
    for k, v in (s.get("drops_bpf") or {}).items():
        if k not in BPF_NOT_DROPS:
            out["bpf", str(k)] = v
    return out


def _traffic(p: str, kind: str, doc: str, rows: list[Mapping[str, Any]], labels: list[list[str]]) -> Iterator[Metric]:
    """packets/bytes/drops families over one scope (totals) or many (per queue, label ``queue``)."""
    qlabel = ["queue"] if kind else []
    for key, what in (("packets", "Packets received"), ("bytes", "Bytes received")):
        fam = CounterMetricFamily(f"{p}_{kind}{key}", what + doc, labels=qlabel)
        for lab, sc in zip(labels, rows, strict=True):
            if isinstance(sc.get(key), int | float):
                fam.add_metric(lab, float(sc[key]))
        yield fam
    drops = CounterMetricFamily(f"{p}_{kind}drops", "Packets dropped or not bypassed, by source and cause" + doc,
                                labels=[*qlabel, "source", "cause"])
    for lab, sc in zip(labels, rows, strict=True):
        for (source, cause), v in drops_by_cause(sc).items():
            drops.add_metric([*lab, source, cause], float(v))
    yield drops


def _by_key(name: str, doc: str, label: str, values: Mapping[str, Any] | None, gauge: bool = False) -> Metric:
    fam = (GaugeMetricFamily if gauge else CounterMetricFamily)(name, doc, labels=[label])
    for k, v in (values or {}).items():
        fam.add_metric([str(k)], float(v))
    return fam


class StatsCollector:
    """Renders the latest summary snapshot as Prometheus families (see the module doc)."""

    def __init__(self, prefix: str = "xdpgw") -> None:
        self.prefix = prefix
        self._stats: Mapping[str, Any] = {}

    def update(self, stats: Summary | Mapping[str, Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s, p = self._stats, self.prefix
        yield from _traffic(p, "", "", [s], [[]])
        queues = [(str(q), v) for q, v in (s.get("queues") or {}).items()]
        if queues:
            yield from _traffic(p, "queue_", " per queue", [v for _, v in queues], [[q] for q, _ in queues])
        yield _by_key(f"{p}_bpf_packets", "Our XDP program's packet counters, by name", "counter", s.get("drops_bpf"))
        if isinstance(s.get("handler_errors"), int):
            yield CounterMetricFamily(f"{p}_handler_errors", "Exceptions raised by handlers",
                                      value=float(s["handler_errors"]))
        if "received" in s:  # a feed decoder runs
            yield from self._feed(s)
        lat = s.get("latency_ns")
        if lat:
            yield from self._latency(lat)
        other = GaugeMetricFamily(f"{p}_stat", "Other gateway figures, by name", labels=["name"])
        for k in _GAUGES:
            if isinstance(s.get(k), int | float):
                other.add_metric([k], float(s[k]))
        yield other

    def _feed(self, s: Mapping[str, Any]) -> Iterator[Metric]:
        p = self.prefix
        for key, name, doc in _FEED_COUNTERS:
            yield CounterMetricFamily(f"{p}_{name}", doc, value=float(s.get(key) or 0))
        yield _by_key(f"{p}_messages", "Messages delivered to the handlers, by ITCH type", "type",
                      s.get("messages_by_type"))
        yield _by_key(f"{p}_decode_errors", "Malformed input, by kind", "kind", s.get("decode_errors"))
        yield _by_key(f"{p}_rejected_messages", "Messages never to be delivered, by cause", "cause", s.get("rejected"))
        held = dict.fromkeys(HELD_REASONS, 0) | dict(s.get("held") or {})
        yield _by_key(f"{p}_held_messages", "Messages received and still waiting, by reason", "reason", held,
                      gauge=True)

    def _latency(self, lat: Mapping[str, Any]) -> Iterator[Metric]:
        name, doc = f"{self.prefix}_latency_seconds", "Latency from kernel receive stamp to decode"
        total = lat.get("sum")
        sum_s = None if total is None else float(total) / 1e9
        if "buckets" in lat:
            bounds = sorted(((math.inf if str(b) in ("+Inf", "inf") else float(b)), float(n))
                            for b, n in lat["buckets"].items())
            cum, out = 0.0, []
            for upper, n in bounds:
                cum += n
                out.append(("+Inf" if math.isinf(upper) else repr(upper / 1e9), cum))
            if not out or out[-1][0] != "+Inf":
                out.append(("+Inf", float(lat.get("count", cum))))
            yield HistogramMetricFamily(name, doc, buckets=out, sum_value=sum_s if sum_s is not None else 0.0)
            return
        summary = Metric(name, doc, "summary")
        for k, v in lat.items():
            q = _quantile(str(k))
            if q is not None:
                summary.add_sample(name, {"quantile": q}, float(v) / 1e9)
        if "count" in lat:
            summary.add_sample(f"{name}_count", {}, float(lat["count"]))
        if sum_s is not None:
            summary.add_sample(f"{name}_sum", {}, sum_s)
        yield summary


class MetricsServer:
    """``/metrics`` over HTTP on ``addr:port`` (port 0 picks a free one: see ``.port``)."""

    def __init__(self, port: int, addr: str = "127.0.0.1", prefix: str = "xdpgw") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = StatsCollector(prefix)
        self.registry.register(self.collector)
        try:
            self._httpd, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as e:
            raise GatewayError(
                f"cannot serve metrics on {addr}:{port} ({e.strerror})",
                f"pick a free port (see who holds it: ss -ltnp 'sport = :{port}'), or port 0 for any",
            ) from e
        self.addr = addr
        self.port = self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/metrics"

    def update(self, stats: Mapping[str, Any]) -> None:
        """Publish a new snapshot of cumulative stats (see the module doc for the keys)."""
        self.collector.update(stats)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
