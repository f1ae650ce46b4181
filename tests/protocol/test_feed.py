"""FeedHandler end to end: decode -> sequence -> filter, with a real re-request server on 127.0.0.1."""

import time
from functools import partial

import pytest

from tests import builders
from tests.helpers import RerequestServer
from xdpgw.batch import Batch
from xdpgw.errors import GatewayError
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.protocol.moldudp64 import RetransmitRequest, encode_heartbeat, encode_packet

SESSION = "FEEDTEST01"


msg = partial(builders.msg, kind="DAA")  # every third message a delete (locate 2), the others adds
def pkt(seq: int, n: int = 2) -> bytes:
    return builders.pkt(seq, n, SESSION, kinds="DAA")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server():
    srv = RerequestServer({s: msg(s) for s in range(1, 100)})
    yield srv
    srv.close()


def wait_for(feed: FeedHandler) -> list[int]:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        out = feed.poll()
        if out is not None:
            return [int(x) for x in out.seq]
        time.sleep(0.001)
    return []


def test_in_order_feed_and_stats_keys():
    with FeedHandler(clock=Clock()) as feed:
        out = feed.on_batch(Batch.from_payloads([pkt(1), pkt(3), encode_heartbeat(SESSION, 5)]))
        assert list(out.seq) == [1, 2, 3, 4]
        assert feed.on_batch(Batch.from_payloads([pkt(3)])) is None
        st = feed.stats()
        from xdpgw.pipeline.summary import FEED_FIELDS

        assert set(st) == set(FEED_FIELDS) - {"lines", "books"}  # only with A/B lines, --book
        assert st["messages"] == 4 and st["messages_by_type"] == {"A": 3, "D": 1} and st["duplicates"] == 2


def test_gap_recovered_through_the_rerequest_server_in_order(server):
    clock = Clock()
    with FeedHandler(retransmit=server.addr, clock=clock, give_up_after=5.0) as feed:
        assert [int(x) for x in feed.on_batch(Batch.from_payloads([pkt(1), pkt(5)])).seq] == [1, 2]
        req = server.serve_one()
        assert (req.session, req.first, req.count) == (SESSION.encode(), 3, 2)
        assert wait_for(feed) == [3, 4, 5, 6]
        out = feed.on_batch(Batch.from_payloads([pkt(7)]))
        assert list(out.seq) == [7, 8]
        st = feed.stats()
        assert st["gaps"] == 1 and st["recovered"] == 2 and st["missing"] == 0 and st["messages"] == 8


def test_unanswered_gap_is_retried_then_given_up(server):
    clock = Clock()
    with FeedHandler(retransmit=server.addr, clock=clock, give_up_after=1.0, retry_interval=0.2) as feed:
        feed.on_batch(Batch.from_payloads([pkt(1), pkt(10), encode_heartbeat(SESSION, 12)]))
        server.serve_one(answer=False)
        clock.t += 0.3
        assert feed.poll() is None
        assert server.serve_one(answer=False).first == 3
        clock.t += 1.0
        out = feed.poll()
        assert list(out.seq) == [10, 11]
        assert feed.stats()["missing"] == 7 and feed.detail()["retransmit"]["sent"] == 2


def test_symbols_filter_and_ab_lines():
    clock = Clock()
    with FeedHandler(locates=[2], clock=clock) as feed:
        a = feed.on_batch(Batch.from_payloads([pkt(1, 3), pkt(4, 3)]), line=0)
        b = feed.on_batch(Batch.from_payloads([pkt(1, 6), pkt(7, 3)]), line=1)
        assert [m["order_ref"] for m in a.messages()] == [1, 3, 5, 6]
        assert [m["order_ref"] for m in b.messages()] == [7, 9]
        st = feed.stats()
        assert st["lines"][0]["first"] == 6 and st["lines"][1]["first"] == 3
        with pytest.raises(GatewayError, match="use 0..1"):
            feed.on_batch(Batch.empty(), line=2)


def test_malformed_input_is_counted_not_raised():
    clock = Clock()
    with FeedHandler(clock=clock) as feed:
        out = feed.on_batch(Batch.from_payloads([b"junk", pkt(1), pkt(3)[:-4], pkt(5), pkt(7)]))
        assert [m["seq"] for m in out.messages()] == [1, 2, 3]  # 4 was cut off: 5.. wait for the other line
        clock.t += 0.01
        assert [m["seq"] for m in feed.poll().messages()] == [5, 6, 7, 8]
        st = feed.stats()
        assert st["decode_errors"] == {"short_packet": 1, "block_overrun": 1}
        assert st["missing"] == 1 and st["messages"] == 7


def test_retransmission_answers_arrive_in_bursts_through_a_socket_receiver(server):
    """The client is a SocketReceiver (one recvmmsg per burst), not a recv per datagram."""
    from xdpgw.transport.socket import SocketReceiver

    with FeedHandler(retransmit=server.addr, clock=Clock(), give_up_after=5.0) as feed:
        client = feed.client
        assert isinstance(client.rx, SocketReceiver) and feed.fileno() == client.rx.fileno()
        client.send([RetransmitRequest(SESSION.encode(), s, 1) for s in (3, 4, 5)])
        for _ in range(3):
            server.serve_one()
        got: list[Batch] = []
        deadline = time.monotonic() + 2.0
        while sum(b.count for b in got) < 3 and time.monotonic() < deadline:
            b = client.recv()
            if b.count:
                assert (b.dports[: b.count] == client.rx.port).all()
                got.append(b.copy())
        assert [p for b in got for p in b.payloads()] == [
            encode_packet(SESSION, s, [msg(s)]) for s in (3, 4, 5)]
        assert client.received == 3 and client.sent == 3
