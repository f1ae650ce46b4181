"""Prometheus exposition of the gateway's stats dict (``pip install 'xdpgw[metrics]'``).

`MetricsServer` serves ``http://ADDR:PORT/metrics`` from its own `CollectorRegistry`. The gateway calls
``update(stats)`` with cumulative totals whenever it likes (cheap: it only swaps a reference); every
scrape renders the latest snapshot, so counters are exported as the totals the gateway already keeps.

Accepted ``stats`` keys (all optional; counts are cumulative since start)::

    packets, bytes                      -> xdpgw_packets_total, xdpgw_bytes_total
    drops: {cause: n}                   -> xdpgw_drops_total{cause}
    drops: n                            -> xdpgw_drops_total{cause="receiver"}  (as in a Gateway summary)
      (flat transport counters named in DROP_KEYS, e.g. rx_dropped, rx_ring_full, are added as causes)
    gaps: n                             -> xdpgw_gap_messages_total  (sequence numbers missed)
    gap_events: n                       -> xdpgw_gap_events_total
    decode_errors: {kind: n}            -> xdpgw_decode_errors_total{kind}
    messages: {type: n}                 -> xdpgw_messages_total{type}   (ITCH type letter, e.g. "A")
    queues: {queue: {packets, bytes, drops}}  (e.g. the per-queue summaries of a multi-queue attach)
                                        -> xdpgw_queue_{packets,bytes,drops}_total{queue[,cause]}
    latency_ns: {"p50": v, "p99": v, "p99.9": v, "max": v, "count": n, "sum": ns}
                                        -> summary xdpgw_latency_seconds{quantile}
    latency_ns: {"buckets": {upper_ns: n, ..., "+Inf": n}, "count": n, "sum": ns}
                                        -> histogram xdpgw_latency_seconds_bucket{le}
      bucket counts are per bucket (as numpy.histogram gives), not cumulative; they are summed here.
    any other int/float key             -> xdpgw_stat{name}  (gauge; nothing the gateway counts is lost)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from xdpgw.errors import GatewayError

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

DROP_KEYS = ("rx_dropped", "rx_invalid_descs", "rx_ring_full", "rx_fill_ring_empty_descs", "rx_bad_frames",
             "tx_invalid_descs", "tx_ring_full", "drops_kernel", "drops_truncated", "drops_malformed")
_SPECIAL = {"packets", "bytes", "drops", "gaps", "gap_events", "decode_errors", "messages", "queues",
            "latency_ns"}
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


def _drops(stats: Mapping[str, Any]) -> dict[str, float]:
    drops = stats.get("drops")
    if isinstance(drops, Mapping):
        out = {str(k): float(v) for k, v in drops.items()}
    else:  # a Gateway summary: one number, the receiver's own drops
        out = {"receiver": float(drops)} if isinstance(drops, int | float) else {}
    for k in DROP_KEYS:
        if isinstance(stats.get(k), int | float):
            out[k] = out.get(k, 0.0) + float(stats[k])
    return out


def _traffic(p: str, kind: str, doc: str, scopes: Mapping[str, Any] | list[Mapping[str, Any]],
             labels: list[list[str]]) -> Iterator[Metric]:
    """packets/bytes/drops families over one scope (totals) or many (per queue, label ``queue``)."""
    rows = [scopes] if isinstance(scopes, Mapping) else scopes
    qlabel = ["queue"] if kind else []
    for key, what in (("packets", "Packets received"), ("bytes", "Bytes received")):
        fam = CounterMetricFamily(f"{p}_{kind}{key}", what + doc, labels=qlabel)
        for lab, sc in zip(labels, rows, strict=True):
            if isinstance(sc.get(key), int | float):
                fam.add_metric(lab, float(sc[key]))
        yield fam
    drops = CounterMetricFamily(f"{p}_{kind}drops", "Packets dropped, by cause" + doc,
                                labels=[*qlabel, "cause"])
    for lab, sc in zip(labels, rows, strict=True):
        for cause, v in _drops(sc).items():
            drops.add_metric([*lab, cause], v)
    yield drops


class StatsCollector:
    """Renders the latest stats snapshot as Prometheus families (see the module doc for the keys)."""

    def __init__(self, prefix: str = "xdpgw") -> None:
        self.prefix = prefix
        self._stats: Mapping[str, Any] = {}

    def update(self, stats: Mapping[str, Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s, p = self._stats, self.prefix
        yield from _traffic(p, "", "", s, [[]])
        queues = [(str(q), v) for q, v in (s.get("queues") or {}).items()]
        if queues:
            yield from _traffic(p, "queue_", " per queue", [v for _, v in queues], [[q] for q, _ in queues])
        for key, name, doc in (("gaps", "gap_messages", "Messages missed (sequence gaps)"),
                               ("gap_events", "gap_events", "Sequence gaps detected")):
            if isinstance(s.get(key), int | float):
                yield CounterMetricFamily(f"{p}_{name}", doc, value=float(s[key]))
        for key, name, label, doc in (("decode_errors", "decode_errors", "kind", "Malformed input, by kind"),
                                      ("messages", "messages", "type", "Messages decoded, by ITCH type")):
            fam = CounterMetricFamily(f"{p}_{name}", doc, labels=[label])
            for k, v in (s.get(key) or {}).items():
                fam.add_metric([str(k)], float(v))
            yield fam
        lat = s.get("latency_ns")
        if lat:
            yield from self._latency(lat)
        other = GaugeMetricFamily(f"{p}_stat", "Other gateway counters, by name", labels=["name"])
        for k, v in s.items():
            known = k in _SPECIAL or k in DROP_KEYS
            if not known and isinstance(v, int | float) and not isinstance(v, bool):
                other.add_metric([str(k)], float(v))
        yield other

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
