"""The router's metrics port: ``GET /metrics`` (Prometheus text), ``GET /status`` (the summary as
JSON) and ``POST /kill`` (the kill switch). One HTTP thread; it only reads the last published
summary and sets the router's kill request, which the router's own thread acts on at its next poll.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from xdpgw.errors import GatewayError


class ControlServer:
    """``http://ADDR:PORT`` (port 0: any free one, see ``.port``)."""

    def __init__(self, port: int, on_kill: Callable[[str], None], addr: str = "127.0.0.1") -> None:
        self._summary: Mapping[str, Any] = {}
        self._render = _prometheus_renderer()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet: the router owns stderr
                pass

            def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/metrics":
                    self._reply(200, server._render(server._summary), "text/plain; version=0.0.4")
                elif self.path == "/status":
                    self._reply(200, json.dumps(server._summary).encode(), "application/json")
                else:
                    self._reply(404, b"use GET /metrics, GET /status or POST /kill\n")

            def do_POST(self) -> None:  # noqa: N802
                if self.path == "/kill":
                    on_kill(f"kill switch via http {self.client_address[0]}")
                    self._reply(200, b"kill switch requested\n")
                else:
                    self._reply(404, b"use POST /kill\n")

        try:
            self._httpd = ThreadingHTTPServer((addr, port), Handler)
        except OSError as e:
            raise GatewayError(f"cannot serve the router's metrics on {addr}:{port} ({e.strerror})",
                               f"pick a free port (ss -ltnp 'sport = :{port}'), or 0 for any") from e
        self.addr, self.port = addr, self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="xdpgw-router-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}"

    def update(self, summary: Mapping[str, Any]) -> None:
        self._summary = summary

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _prometheus_renderer() -> Callable[[Mapping[str, Any]], bytes]:
    """The summary as Prometheus text through ``xdpgw.ops.metrics`` when prometheus_client is there,
    else plain ``name value`` lines."""
    from xdpgw.orders.router import stats_for_metrics

    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import GaugeMetricFamily
    except ImportError:
        return lambda s: "".join(f"xdpgw_router_{k} {v}\n" for k, v in stats_for_metrics(s).items()).encode()

    class RouterCollector:
        """The router's flat figures as one gauge family, ``xdpgw_router_stat{name}``."""

        flat: Mapping[str, float] = {}

        def collect(self):
            fam = GaugeMetricFamily("xdpgw_router_stat", "Order router figures, by name", labels=["name"])
            for k, v in self.flat.items():
                fam.add_metric([k], float(v))
            yield fam

    collector = RouterCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    def render(summary: Mapping[str, Any]) -> bytes:
        collector.flat = stats_for_metrics(summary)
        return generate_latest(registry)

    return render


def request_kill(url: str, timeout: float = 5.0) -> str:
    """POST /kill to a running router's metrics port (``xdpgw killswitch --url``)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url.rstrip("/") + "/kill", method="POST"),
                                    timeout=timeout) as r:
            return r.read().decode().strip()
    except (urllib.error.URLError, OSError) as e:
        raise GatewayError(f"cannot reach the router at {url} ({e})",
                           "give the URL of its --metrics-port, e.g. http://127.0.0.1:9110") from e
