"""The router's configuration file (TOML, read with ``tomllib``): venues, routing rules, risk, throttle.

```toml
[venues]                       # name = URL (xdpgw.orders.venue.connect_url)
nasdaq = "ouch://127.0.0.1:15000?user=U1"
backup = "ouch://127.0.0.1:15001?user=U1"

[routing]                      # xdpgw.orders.routing.routing_from_mapping
lot = 100
default = [{ venue = "nasdaq", share = 1 }]
[routing.symbols]
AAPL = [{ venue = "nasdaq", share = 60, priority = 1 }, { venue = "backup", share = 40, priority = 2 }]

[risk]                         # xdpgw.orders.risk.limits_from_mapping (money in currency units)
max_qty = 10000
max_notional = 1000000
collar_pct = 5
reference_prices = { AAPL = 190.25 }
max_open_per_symbol = 100
max_gross_per_symbol = 5000000
max_gross_total = 20000000
max_position = 50000
restricted = ["TSLA"]
duplicate_window_ms = 0

[throttle]                     # orders in any one-second window
total = 1000
per_venue = 500                # or { nasdaq = 500, backup = 200 }
policy = "queue"               # or "reject"
```
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xdpgw.errors import GatewayError
from xdpgw.orders.risk import RiskLimits, limits_from_mapping
from xdpgw.orders.routing import RoutingTable, routing_from_mapping
from xdpgw.orders.throttle import Throttle

_SECTIONS = {"venues", "routing", "risk", "throttle"}


@dataclass(slots=True)
class RouterConfig:
    venues: dict[str, str] = field(default_factory=dict)  # name → URL
    routing: dict[str, Any] = field(default_factory=dict)
    risk: dict[str, Any] = field(default_factory=dict)
    throttle: dict[str, Any] = field(default_factory=dict)

    def limits(self) -> RiskLimits:
        return limits_from_mapping(self.risk)

    def routing_table(self) -> RoutingTable:
        return routing_from_mapping(self.routing, list(self.venues))

    def make_throttle(self) -> Throttle:
        t = self.throttle
        unknown = set(t) - {"total", "per_venue", "policy"}
        if unknown:
            raise GatewayError(f"unknown throttle setting(s) {', '.join(sorted(unknown))}",
                               "use total, per_venue and policy")
        pv = t.get("per_venue")
        return Throttle(total=t.get("total"), per_venue=dict(pv) if isinstance(pv, Mapping) else pv,
                        policy=t.get("policy", "queue"))


def load_config(path: str) -> RouterConfig:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise GatewayError(f"cannot read config {path} ({e.strerror})", "pass an existing TOML file to --config") from e
    except tomllib.TOMLDecodeError as e:
        raise GatewayError(f"config {path} is not valid TOML ({e})", "fix the line it names") from e
    unknown = set(data) - _SECTIONS
    if unknown:
        raise GatewayError(f"config {path}: unknown section(s) {', '.join(sorted(unknown))}",
                           f"use only {', '.join(sorted(_SECTIONS))}")
    venues = data.get("venues", {})
    if not all(isinstance(v, str) for v in venues.values()):
        raise GatewayError(f"config {path}: [venues] must map names to URLs",
                           'write e.g. nasdaq = "ouch://127.0.0.1:15000?user=U1"')
    return RouterConfig(dict(venues), data.get("routing", {}), data.get("risk", {}), data.get("throttle", {}))
