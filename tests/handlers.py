"""Handlers for `xdpgw attach|listen --handler tests.handlers:NAME` in the tests (run by the gateway, in its
process): each call appends one JSON line to the file named by $XDPGW_TEST_OUT."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _note(row: dict) -> None:
    with open(os.environ["XDPGW_TEST_OUT"], "a") as f:
        f.write(json.dumps(row) + "\n")


def record(item) -> None:
    """A decoded burst: its sequence numbers and the stocks of its adds; a raw batch: its payloads."""
    if hasattr(item, "seq"):
        adds = item.by_type.get("A")
        stocks = [bytes(s).decode().strip() for s in adds["stock"]] if adds is not None else []
        _note({"seq": [int(s) for s in item.seq], "stocks": stocks})
    else:
        _note({"payloads": [p.decode(errors="replace") for p in item.payloads()]})


def explode(item) -> None:
    """User code with a bug: every call raises."""
    raise RuntimeError("boom in user code")


def calls(path) -> list[dict]:
    """What the handlers noted so far."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]
