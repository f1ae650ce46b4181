"""--book in the live pipeline: XDP (attach, real veth) and kernel sockets (loopback), real packets."""

from __future__ import annotations

import json
import socket

import pytest

from tests.book.conftest import run_stream
from tests.helpers import attach, feed_frames, send_frames, summary_of
from xdpgw.book.live import BookBatch, BookFeed
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.pipeline.gateway import Gateway, status_text
from xdpgw.tools.flow import order_flow, packets


@pytest.fixture(scope="module")
def tiny():
    return order_flow(3_000, n_symbols=12, seed=5)


def offline(flow) -> dict:
    books, _, _ = run_stream(flow.stream)
    return json.loads(json.dumps(books.summary()))


@pytest.mark.xdp
def test_attach_book_reports_the_books(lab, tiny):
    pk = packets(tiny, per_packet=25)
    with attach(lab, "--protocol", "moldudp64", "--book", "--count", str(len(pk)), "--duration", "30",
                "--json", "--mode", "skb") as gw:
        send_frames(lab, feed_frames(lab, pk))
        summary = summary_of(gw)
    assert summary["messages"] == len(tiny)
    want = offline(tiny)
    got = summary["books"]
    assert got["symbols"] == want["symbols"] and got["errors"] == {} and got["bbo"] == want["bbo"]
    assert got["count"] == 12 and not got["stale_all"]


def test_socket_gateway_hands_bbo_and_trades_to_handlers(tiny):
    from xdpgw.transport.socket import SocketReceiver

    pk = packets(tiny, per_packet=25)
    got: list[BookBatch] = []
    with SocketReceiver(0, bind_addr="127.0.0.1") as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        feed = BookFeed(FeedHandler(symbols=["AAPL", "MSFT"]))
        gw = Gateway([rx], [lambda b: got.append((len(b.decoded), b.bbo.copy(), b.trades.copy()))], feed=feed,
                     status=None)
        for p in pk:
            tx.sendto(p, ("127.0.0.1", rx.port))
        summary = gw.run(count=len(pk), duration=20)
    assert summary["packets"] == len(pk)
    bbo = [b for _, b, _ in got]
    total = sum(len(b) for b in bbo)
    want = offline(tiny)
    assert total == summary["books"]["bbo"] > 0
    assert summary["books"]["symbols"] == {k: want["symbols"][k] for k in ("AAPL", "MSFT")}
    assert {s for b in bbo for s in b["symbol"].tolist()} == {b"AAPL    ", b"MSFT    "}
    assert "books 2 bbo" in status_text(summary, 1000.0)
