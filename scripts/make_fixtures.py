#!/usr/bin/env python3
"""Build the small MoldUDP64/ITCH 5.0 pcaps in fixtures/ (deterministic; re-run after protocol changes).

Ethernet/IPv4/UDP 10.77.0.1 -> 10.77.0.2, dst port 9001 (addresses only used inside test namespaces).
Each ``<name>.pcap`` has a ``<name>.json`` sidecar with what a correct decoder finds: per packet
(sequence, count, message lengths), the decode error counters, and the sequences delivered in order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scapy.all import IP, UDP, Ether, wrpcap

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xdpgw.protocol import itch  # noqa: E402
from xdpgw.protocol.decode import decode_payloads  # noqa: E402
from xdpgw.protocol.moldudp64 import encode_end_of_session, encode_heartbeat, encode_packet  # noqa: E402
from xdpgw.protocol.sequencer import Sequencer  # noqa: E402

OUT = ROOT / "fixtures"
SESSION = "XDPGWTEST1"
T0 = 1_700_000_000.0

SAMPLES: dict[str, dict] = {
    "S": {"event_code": "O"},
    "R": {"stock": "IVOO", "market_category": "G", "financial_status": "N", "round_lot_size": 100,
          "round_lots_only": "N", "issue_classification": "Q", "issue_subtype": "Z", "authenticity": "P",
          "short_sale_threshold": "N", "ipo_flag": " ", "luld_tier": "1", "etp_flag": "Y",
          "etp_leverage_factor": 1, "inverse_indicator": "N"},
    "H": {"stock": "IVOO", "trading_state": "T", "reason": ""},
    "Y": {"stock": "IVOO", "reg_sho_action": "0"},
    "L": {"mpid": "NSDQ", "stock": "IVOO", "primary_market_maker": "Y", "market_maker_mode": "N",
          "participant_state": "A"},
    "V": {"level1": 3_000_000_000_000, "level2": 2_800_000_000_000, "level3": 2_600_000_000_000},
    "W": {"breached_level": "1"},
    "K": {"stock": "NEWCO", "release_time": 36000, "release_qualifier": "A", "ipo_price": 200000},
    "J": {"stock": "IVOO", "ref_price": 873900, "upper_collar": 900000, "lower_collar": 850000,
          "extension": 1},
    "h": {"stock": "IVOO", "market_code": "Q", "halt_action": "H"},
    "A": {"order_ref": 23508286, "side": "B", "shares": 1600, "stock": "IVOO", "price": 873900},
    "F": {"order_ref": 23508287, "side": "S", "shares": 200, "stock": "IVOO", "price": 874000,
          "attribution": "GSCO"},
    "E": {"order_ref": 23508286, "executed_shares": 100, "match_number": 4242},
    "C": {"order_ref": 23508286, "executed_shares": 100, "match_number": 4243, "printable": "Y",
          "execution_price": 873800},
    "X": {"order_ref": 23508286, "cancelled_shares": 100},
    "D": {"order_ref": 23508286},
    "U": {"original_order_ref": 23508287, "new_order_ref": 23508288, "shares": 300, "price": 874100},
    "P": {"order_ref": 0, "side": "B", "shares": 50, "stock": "IVOO", "price": 873900, "match_number": 4244},
    "Q": {"shares": 10000, "stock": "IVOO", "cross_price": 873900, "match_number": 4245, "cross_type": "O"},
    "B": {"match_number": 4244},
    "I": {"paired_shares": 5000, "imbalance_shares": 100, "imbalance_direction": "B", "stock": "IVOO",
          "far_price": 873000, "near_price": 873500, "current_ref_price": 873900, "cross_type": "O",
          "price_variation": "L"},
    "N": {"stock": "IVOO", "interest_flag": "B"},
    "O": {"stock": "NEWCO", "open_eligibility": "Y", "min_allowable_price": 180000,
          "max_allowable_price": 220000, "near_execution_price": 200000, "near_execution_time": 36000000000,
          "lower_price_range_collar": 190000, "upper_price_range_collar": 210000},
}
assert set(SAMPLES) == set(itch.TYPES)


def m(t: str, k: int = 0) -> bytes:
    return itch.encode_message(t, locate=5528, tracking=k, timestamp=34_199_999_894_278 + k, **SAMPLES[t])


def all_types() -> list[bytes]:
    types = list(itch.TYPES)
    pkts, seq = [encode_heartbeat(SESSION, 1)], 1
    for i in range(0, len(types), 8):
        chunk = [m(t, seq + j) for j, t in enumerate(types[i : i + 8])]
        pkts.append(encode_packet(SESSION, seq, chunk))
        seq += len(chunk)
    pkts += [encode_heartbeat(SESSION, seq), encode_end_of_session(SESSION, seq)]
    return pkts


def sequencing() -> list[bytes]:
    def p(seq: int, n: int) -> bytes:
        return encode_packet(SESSION, seq, [m("AD"[(seq + j) % 2], seq + j) for j in range(n)])
    return [p(1, 3), p(4, 2), p(4, 2),  # duplicate packet
            p(9, 2), p(6, 3),  # 9-10 arrive before 6-8: reordering
            p(14, 1),  # 11-13 never arrive: a gap
            encode_heartbeat(SESSION, 15), p(15, 2), p(1, 3)]  # a late replay of old data


def malformed() -> list[bytes]:
    good = encode_packet(SESSION, 1, [m("A", 1), m("D", 2)])
    miscount = bytearray(encode_packet(SESSION, 3, [m("X", 3)]))
    miscount[19] = 3
    overrun = encode_packet(SESSION, 4, [m("E", 4), m("A", 5)])[:-6]
    unknown = encode_packet(SESSION, 6, [b"z" + bytes(10), m("D", 7)])
    bad_len = encode_packet(SESSION, 8, [m("A", 8)[:-2], m("D", 9)])
    return [good, b"MOLD", bytes(miscount), overrun, unknown, bad_len, encode_packet(SESSION, 10, [m("S", 10)]),
            encode_heartbeat(SESSION, 11)]  # the heartbeat backs message 10: the gap before it is given up


def frame(payload: bytes, i: int) -> Ether:
    pkt = (Ether(src="02:00:0a:4d:00:01", dst="02:00:0a:4d:00:02") /
           IP(src="10.77.0.1", dst="10.77.0.2", id=i, ttl=64) / UDP(sport=40000, dport=9001) / payload)
    pkt.time = T0 + i * 0.001
    return pkt


def expected(payloads: list[bytes]) -> dict:
    dec = decode_payloads(payloads)
    sq = Sequencer(first_seq=1)
    delivered = sq.on_decoded(dec, 0.0)
    packets = []
    for i in range(len(payloads)):
        sel = dec.pkt == i
        packets.append({"sequence": int(dec.pkt_seq[i]), "count": int(dec.pkt_count[i]),
                        "error": int(dec.pkt_error[i]),
                        "msglen": [int(x) for x in decode_lengths(payloads[i])],
                        "types": "".join(chr(t) if t else "?" for t in dec.type[sel])})
    st = sq.stats()
    return {"packets": packets, "errors": dec.errors, "delivered": [int(s) for s in delivered.seq],
            "sequencer": {k: st[k] for k in ("gaps", "gap_messages", "missing", "duplicates", "late",
                                             "recovered", "heartbeats", "end_of_session")}}


def decode_lengths(payload: bytes) -> list[int]:
    """Block lengths as a plain walker sees them (complete blocks only)."""
    out, pos = [], 20
    while pos + 2 <= len(payload):
        n = int.from_bytes(payload[pos : pos + 2], "big")
        if pos + 2 + n > len(payload):
            break
        out.append(n)
        pos += 2 + n
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, build in (("all_types", all_types), ("sequencing", sequencing), ("malformed", malformed)):
        payloads = build()
        wrpcap(str(OUT / f"{name}.pcap"), [frame(p, i) for i, p in enumerate(payloads)])
        (OUT / f"{name}.json").write_text(json.dumps(expected(payloads), indent=1, sort_keys=True) + "\n")
        print(f"fixtures/{name}.pcap: {len(payloads)} packets")


if __name__ == "__main__":
    main()
