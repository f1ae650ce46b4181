"""The committed fixture pcaps replayed through every receiver on the veth lab, decoded field by field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import UDP
from scapy.utils import rdpcap

from tests.conftest import feed_frames, send_frames
from tests.test_receive import TRANSPORTS, collect, open_receiver
from xdpgw.protocol import decode_batch
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.transport import Batch

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def pcap_payloads(name: str) -> list[bytes]:
    return [bytes(p[UDP].payload) for p in rdpcap(str(FIXTURES / f"{name}.pcap")) if UDP in p]


@pytest.mark.xdp
@pytest.mark.parametrize("name", ["all_types", "sequencing", "malformed"])
@pytest.mark.parametrize("kind", TRANSPORTS)
def test_fixture_through_the_receiver_decodes_exactly(lab, kind, name):
    sent = pcap_payloads(name)
    with open_receiver(kind, lab) as rx:
        send_frames(lab, feed_frames(lab, sent))
        got, _ = collect(rx, len(sent), timeout=3)
    assert got == sent
    direct, received = decode_batch(Batch.from_payloads(sent)), decode_batch(Batch.from_payloads(got))
    assert direct.errors == received.errors
    assert np.array_equal(direct.seq, received.seq) and np.array_equal(direct.type, received.type)
    for t, recs in direct.by_type.items():
        assert recs.tobytes() == received.by_type[t].tobytes(), f"type {t}: a field differs"
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    delivered = Sequencer(first_seq=1).on_decoded(received, 0.0)
    assert [int(s) for s in delivered.seq] == expected["delivered"]
    assert {k: v for k, v in received.errors.items() if v} == {k: v for k, v in expected["errors"].items() if v}
