"""The committed fixture pcaps replayed through every receiver on the veth lab, decoded and sequenced as
received, and checked against the fixtures' sidecars (written when the fixtures were made, not by the
code under test)."""

from __future__ import annotations

import json

import pytest
from scapy.layers.inet import UDP
from scapy.utils import rdpcap

from tests.helpers import FIXTURES, TRANSPORTS, collect, feed_frames, open_receiver, send_frames
from xdpgw.protocol import decode_batch
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.transport import Batch


def pcap_payloads(name: str) -> list[bytes]:
    return [bytes(p[UDP].payload) for p in rdpcap(str(FIXTURES / f"{name}.pcap")) if UDP in p]


@pytest.mark.xdp
@pytest.mark.parametrize("name", ["all_types", "sequencing", "malformed"])
@pytest.mark.parametrize("kind", TRANSPORTS)
def test_fixture_through_the_receiver_decodes_exactly(lab, kind, name):
    sent = pcap_payloads(name)
    with open_receiver(kind, lab) as rx:
        send_frames(lab, feed_frames(lab, sent))
        got, _ = collect(rx, len(sent), timeout=5)
    assert got == sent  # byte-identical, in order, once
    want = json.loads((FIXTURES / f"{name}.json").read_text())
    received = decode_batch(Batch.from_payloads(got))
    assert len(received.pkt_seq) == len(want["packets"])
    for i, p in enumerate(want["packets"]):
        assert (int(received.pkt_seq[i]), int(received.pkt_count[i]), int(received.pkt_error[i])) == \
            (p["sequence"], p["count"], p["error"]), f"packet {i}"
        assert "".join(chr(t) if t else "?" for t in received.type[received.pkt == i]) == p["types"], f"packet {i}"
    assert {k: v for k, v in received.errors.items() if v} == {k: v for k, v in want["errors"].items() if v}
    sq = Sequencer(first_seq=1)
    assert [int(s) for s in sq.on_decoded(received, 0.0).seq] == want["delivered"]
    st = sq.stats()
    assert {k: st[k] for k in want["sequencer"]} == want["sequencer"]
