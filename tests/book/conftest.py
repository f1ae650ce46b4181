"""Shared helpers for the book tests: one generated day, and running it through our books."""

from __future__ import annotations

import numpy as np
import pytest

from xdpgw.book.engine import Books
from xdpgw.book.records import BBO, TRADE
from xdpgw.tools.flow import Flow, order_flow


@pytest.fixture(scope="session")
def day() -> Flow:
    """~150k messages over 300 symbols, every message type, a consistent order flow."""
    return order_flow(150_000, n_symbols=300, seed=7)


def run_stream(stream: np.ndarray, books: Books | None = None) -> tuple[Books, np.ndarray, np.ndarray]:
    """Apply a length-prefixed stream in one go (several C calls); all BBO and trade records."""
    books = Books() if books is None else books
    bbo, trades, pos, seq = [], [], 0, 1
    while pos < len(stream):
        used, m, upd = books.apply_stream(stream[pos:], seq)
        if not used:
            break
        pos, seq = pos + used, seq + m
        bbo.append(upd.bbo.copy())
        trades.append(upd.trades.copy())
    return books, np.concatenate(bbo or [np.zeros(0, BBO)]), np.concatenate(trades or [np.zeros(0, TRADE)])


@pytest.fixture(scope="session")
def ours(day):
    return run_stream(day.stream)
