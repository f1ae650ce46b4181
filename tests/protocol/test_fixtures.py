"""Committed pcaps: our decoder vs Wireshark's MoldUDP64 dissector (external oracle) and the sidecars."""

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, require
from xdpgw.protocol.decode import decode_payloads
from xdpgw.protocol.moldudp64 import BLOCK_OVERRUN, SHORT_PACKET
from xdpgw.protocol.sequencer import Sequencer

NAMES = ["all_types", "sequencing", "malformed"]


def udp_payloads(path: Path) -> list[bytes]:
    """UDP payloads of an Ethernet/IPv4 pcap (classic format), without scapy."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic == b"\xd4\xc3\xb2\xa1" else ">"
    pos, out = 24, []
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "IIII", data, pos)[2]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        out.append(udp[8 : struct.unpack_from(">H", udp, 4)[0]])
    return out


def sidecar(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def tshark_fields(path: Path) -> list[tuple[str, str, str]]:
    res = subprocess.run(
        ["tshark", "-r", str(path), "-d", "udp.port==9001,moldudp64", "-T", "fields",
         "-e", "moldudp64.sequence", "-e", "moldudp64.count", "-e", "moldudp64.msglen", "-E", "occurrence=a"],
        capture_output=True, text=True, timeout=30, check=True)
    return [tuple(line.split("\t")) for line in res.stdout.splitlines()]


@pytest.mark.parametrize("name", NAMES)
def test_fixture_matches_wireshark_dissector(name):
    require(shutil.which("tshark") is not None, "tshark is not installed: apt-get install tshark (scripts/setup.sh does)")
    path = FIXTURES / f"{name}.pcap"
    payloads = udp_payloads(path)
    dec = decode_payloads(payloads)
    rows = tshark_fields(path)
    assert len(rows) == len(dec.pkt_seq)
    for i, (seq, count, lens) in enumerate(rows):
        if dec.pkt_error[i] == SHORT_PACKET:
            assert (seq, count, lens) == ("", "", "")
            continue
        assert int(seq) == int(dec.pkt_seq[i]) and int(count) == int(dec.pkt_count[i])
        theirs = [int(x) for x in lens.split(",")] if lens else []
        assert [int(x) for x in dec.seq[dec.pkt == i] - dec.pkt_seq[i]] == list(range(int(dec.pkt_nmsg[i])))
        ours = [int(x) for x in dec.length[dec.pkt == i]]
        if dec.pkt_error[i] == BLOCK_OVERRUN:  # Wireshark also lists the declared length of the cut block
            theirs = theirs[:-1]
        assert ours == theirs


@pytest.mark.parametrize("name", NAMES)
def test_fixture_matches_its_sidecar(name):
    want = sidecar(name)
    dec = decode_payloads(udp_payloads(FIXTURES / f"{name}.pcap"))
    assert dec.errors == want["errors"]
    for i, p in enumerate(want["packets"]):
        assert (int(dec.pkt_seq[i]), int(dec.pkt_count[i]), int(dec.pkt_error[i])) == \
            (p["sequence"], p["count"], p["error"])
        assert "".join(chr(t) if t else "?" for t in dec.type[dec.pkt == i]) == p["types"]
    sq = Sequencer(first_seq=1)
    assert [int(s) for s in sq.on_decoded(dec, 0.0).seq] == want["delivered"]
    st = sq.stats()
    assert {k: st[k] for k in want["sequencer"]} == want["sequencer"]  # as the receiver test checks, sans-IO


def test_all_types_fixture_has_every_type_once():
    dec = decode_payloads(udp_payloads(FIXTURES / "all_types.pcap"))
    assert sorted(dec.counts_by_type().items()) == sorted((t, 1) for t in "SRHYLVWKJhAFECXDUPQBINO")
    assert list(dec.heartbeats) == [True, False, False, False, True, False]
    assert list(dec.end_of_session) == [False] * 5 + [True]
    a = next(m for m in dec.messages() if m["type"] == "A")
    assert (a["stock"], str(a["price"]), a["shares"], a["locate"]) == ("IVOO", "87.3900", 1600, 5528)


def test_sequencing_fixture_by_hand():
    """Hand-checked: dup of 4-5, 9-10 before 6-8, 11-13 lost, heartbeat, replay of 1-3."""
    dec = decode_payloads(udp_payloads(FIXTURES / "sequencing.pcap"))
    sq = Sequencer(first_seq=1)
    assert [int(s) for s in sq.on_decoded(dec, 0.0).seq] == list(range(1, 11)) + [14, 15, 16]
    st = sq.stats()
    assert (st["gaps"], st["missing"], st["duplicates"], st["recovered"], st["heartbeats"]) == (2, 3, 5, 3, 1)
