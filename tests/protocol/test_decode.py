"""Burst decoding: agreement with the struct reference, validation counters, per-packet facts."""

import numpy as np

from xdpgw.batch import Batch
from xdpgw.protocol import itch
from xdpgw.protocol.decode import Decoded, Decoder, decode_batch, decode_payloads
from xdpgw.protocol.moldudp64 import (
    RetransmitRequest,
    encode_end_of_session,
    encode_heartbeat,
    encode_packet,
    parse_header,
)
from xdpgw.tools.reference import decode_packets
from xdpgw.tools.synth import split_batch, synth_packets


def _A(ref: int) -> bytes:
    return itch.encode_message("A", order_ref=ref, side="B", shares=100, stock="AAPL", price=1_000_000)


def test_matches_reference_decoder_on_realistic_mix():
    batch, codes = synth_packets(300, seed=7)
    parts = [decode_batch(b, Decoder(capacity=16)) for b in split_batch(batch, 64)]
    dec = Decoded.concat(parts)
    ref, errors = decode_packets(batch.payloads())
    assert not errors and not dec.errors
    assert len(dec) == len(ref) == len(codes)
    assert np.array_equal(dec.type, codes)
    assert list(dec.seq) == [r[0] for r in ref] == list(range(1, len(ref) + 1))
    for t, recs in dec.by_type.items():
        mine = [tuple(r.item()) for r in recs]
        theirs = [r[2] for r in ref if r[1] == t]
        assert [tuple(x.decode() if isinstance(x, bytes) else x for x in m) for m in mine] == \
            [tuple(x.decode() if isinstance(x, bytes) else x for x in m) for m in theirs]


def test_batch_with_gaps_between_payloads():
    p = [encode_packet("S", 1, [_A(1), _A(2)]), encode_packet("S", 3, [_A(3)])]
    raw = np.frombuffer(b"xxxx" + p[0] + b"yy" + p[1], np.uint8)
    batch = Batch(raw, np.array([4, 4 + len(p[0]) + 2]), np.array([len(p[0]), len(p[1])], np.uint32),
                  np.array([10, 20], np.uint64))
    dec = decode_batch(batch)
    assert list(dec.by_type["A"]["order_ref"]) == [1, 2, 3] and list(dec.pkt) == [0, 0, 1]
    assert list(dec.pkt_ts_ns) == [10, 20]


def test_every_malformed_class_is_counted_and_the_rest_decoded():
    good = encode_packet("S", 1, [_A(1), _A(2)])
    bad_count = bytearray(encode_packet("S", 3, [_A(3)]))
    bad_count[19] = 2  # says 2, carries 1
    overrun = encode_packet("S", 10, [_A(10), _A(11)])[:-5]
    unknown = encode_packet("S", 20, [b"Zabc", _A(21)])
    bad_len = encode_packet("S", 30, [_A(30)[:-1], _A(31)])
    payloads = [good, b"tiny", bytes(bad_count), overrun, unknown, bad_len, encode_packet("S", 40, [_A(40)])]
    dec = decode_payloads(payloads)
    assert dec.errors == {"short_packet": 1, "count_mismatch": 1, "block_overrun": 1, "unknown_type": 1,
                          "bad_length": 1}
    assert list(dec.by_type["A"]["order_ref"]) == [1, 2, 3, 10, 21, 31, 40]
    assert list(dec.pkt_error) == [0, 1, 2, 3, 0, 0, 0]
    _, ref_errors = decode_packets(payloads)
    assert ref_errors == dec.errors


def test_garbage_never_raises():
    rng = np.random.default_rng(3)
    payloads = [rng.integers(0, 256, rng.integers(0, 200), dtype=np.uint8).tobytes() for _ in range(500)]
    payloads += [encode_packet("S", 1, [_A(1)])[: k] for k in range(0, 60)]
    dec = decode_payloads(payloads)
    _, ref_errors = decode_packets(payloads)
    assert dec.errors == ref_errors
    assert len(dec) == int(dec.pkt_nmsg.sum())


def test_heartbeat_end_of_session_and_header_helpers():
    dec = decode_payloads([encode_heartbeat("S", 7), encode_end_of_session("S", 7), encode_packet("S", 7, [])])
    assert list(dec.heartbeats) == [True, False, True]
    assert list(dec.end_of_session) == [False, True, False]
    assert list(dec.pkt_seq) == [7, 7, 7] and len(dec) == 0 and not dec.errors
    h = parse_header(encode_end_of_session("SESS", 9))
    assert h.session == b"SESS      " and h.sequence == 9 and h.is_end_of_session
    req = RetransmitRequest(b"SESS      ", 100, 5)
    assert len(req.encode()) == 20 and RetransmitRequest.decode(req.encode()) == req


def test_take_reorders_and_filters_per_type_arrays():
    dec = decode_payloads([encode_packet("S", 1, [_A(1), itch.encode_message("D", order_ref=2), _A(3)])])
    sub = dec.take(np.array([2, 1]))
    assert list(sub.seq) == [3, 2] and list(sub.by_type["A"]["order_ref"]) == [3]
    assert list(sub.index_by_type["A"]) == [0] and list(sub.index_by_type["D"]) == [1]
    assert [m["seq"] for m in sub.messages()] == [3, 2]


def test_concat_and_take_keep_the_wire_dtypes():
    a = decode_payloads([encode_packet("S", 5, [_A(5), _A(6)])])
    b = decode_payloads([encode_packet("S", 3, [_A(3), _A(4)])])
    both = Decoded.concat([a, b])
    assert both.by_type["A"].dtype == itch.DTYPES["A"]
    out = both.take(np.argsort(both.seq))
    assert out.by_type["A"].dtype == itch.DTYPES["A"]
    assert list(out.by_type["A"]["order_ref"]) == [3, 4, 5, 6] and list(out.pkt) == [1, 1, 0, 0]
