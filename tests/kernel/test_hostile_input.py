"""Hostile input against the real XDP program (drv and skb mode on the veth lab) and the feed decoder.

Every frame class is injected raw on the tx veth; the BPF counters must move exactly as
``xdpgw/kernel/programs/xdpgw_rx.c`` says, nothing may crash, and a valid burst sent afterwards must still arrive
byte-identical (no ring stall). The decoder is fuzzed with hypothesis: it never raises and its error
counters account for every bad packet and message.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import feed_frames, send_frames
from xdpgw.batch import Batch
from xdpgw.kernel.maps import COUNTERS
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.protocol.decode import Decoder
from xdpgw.protocol.moldudp64 import BLOCK_OVERRUN, COUNT_MISMATCH, HEADER_SIZE, SHORT_PACKET
from xdpgw.tools.lab import Lab, in_netns
from xdpgw.tools.synth import synth_packets

PORT = 9001
MODES = ["skb", "drv"]


# --- the rig: one lab + one receiver per XDP mode, shared by the tests of this module ------------------
@dataclass
class Rig:
    lab: Lab
    rx: object  # XdpReceiver
    mode: str
    rx_mac: str
    tx_mac: str


def _ns_run(ns: str, *cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True)


def _quiet(lab: Lab, tx_mac: str) -> None:
    """No background traffic into the rx side: tx has no IPv6 (RS/MLD/NS), rx knows tx's MAC (no ARP)."""
    _ns_run(lab.tx_ns, "sysctl", "-qw", f"net.ipv6.conf.{lab.tx_if}.disable_ipv6=1")
    for addr in (lab.tx_ip, lab.tx_ip6):
        _ns_run(lab.rx_ns, "ip", "neigh", "replace", addr, "lladdr", tx_mac, "dev", lab.rx_if, "nud", "permanent")


@pytest.fixture(scope="module", params=MODES)
def _rig(request) -> Iterator[Rig]:
    """One quiet lab and receiver per XDP mode for the module: compiling and loading the program takes
    seconds on a loaded machine, and 30 of them would double the module's time. ``rig`` makes each test
    start from a clean state instead."""
    from tests.helpers import require_xdp
    from xdpgw.transport.xdp.rx import XdpReceiver

    require_xdp()
    lab = Lab.unique("xh", queues=1)
    try:
        lab.up()
        tx_mac, rx_mac = lab.macs()
        _quiet(lab, tx_mac)
        with in_netns(lab.rx_ns):
            rx = XdpReceiver(lab.rx_if, 0, [PORT], mode=request.param)
        with rx:
            assert rx.program.attached_mode == request.param
            yield Rig(lab, rx, request.param, rx_mac, tx_mac)
    finally:
        lab.down()


@pytest.fixture
def rig(_rig: Rig) -> Iterator[Rig]:
    """The module's rig, guards off and nothing in flight, before and after each test: whatever a test
    (even a failing one) left behind, the next one starts clean."""
    _reset(_rig)
    yield _rig
    _reset(_rig)


def _reset(r: Rig, timeout: float = 5.0) -> None:
    r.rx.program.set_allowlist(None)
    r.rx.program.set_rate_cap(None)
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:  # until the ring is empty and the program saw nothing new meanwhile
        drained = r.rx.recv_batch(256, timeout=0.05).count
        now = counters(r)["seen"]
        if not drained and now == seen:
            return
        seen = now
    pytest.fail(f"{r.mode}: the rig did not settle within {timeout} s (background traffic?)")


# --- frames -----------------------------------------------------------------------------------------------
def eth(r: Rig, **kw):
    from scapy.layers.l2 import Ether

    return Ether(dst=r.rx_mac, src=r.tx_mac, **kw)


def ip4(r: Rig, **kw):
    from scapy.layers.inet import IP

    kw.setdefault("src", r.lab.tx_ip)
    return IP(dst=r.lab.rx_ip, **kw)


def ip6(r: Rig, **kw):
    from scapy.layers.inet6 import IPv6

    kw.setdefault("src", r.lab.tx_ip6)
    return IPv6(dst=r.lab.rx_ip6, **kw)


def udp(dport: int = PORT, **kw):
    from scapy.layers.inet import UDP

    return UDP(sport=40000, dport=dport, **kw)


def good_frames(r: Rig, n: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """``n`` valid MoldUDP64 feed frames (IPv4) and their payloads."""
    batch, _ = synth_packets(n, (1, 10), seed=seed)
    pays = batch.payloads()
    frames = [bytes(eth(r) / ip4(r) / udp() / p) for p in pays]
    return frames, pays


def inject(r: Rig, frames: list[bytes]) -> int:
    """Send raw frames on the tx veth; returns how many the tx kernel accepted (too short ones are refused)."""
    return send_frames(r.lab, frames)


def counters(r: Rig) -> dict[str, int]:
    return r.rx.program.counters()[0]


def run(r: Rig, frames: list[bytes], deliver: int = 0, timeout: float = 3.0) -> tuple[int, dict[str, int], list[bytes]]:
    """Inject ``frames``; wait until the program has seen them all and ``deliver`` payloads arrived.

    Returns (frames accepted by the tx kernel, counter deltas, delivered payloads)."""
    before = counters(r)
    sent = inject(r, frames)
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = r.rx.recv_batch(256, timeout=0.02)
        got += b.payloads()
        now = counters(r)
        if now["seen"] - before["seen"] >= sent and len(got) >= deliver:
            break
    got += r.rx.recv_batch(256, timeout=0.05).payloads()  # anything extra (a stray frame, a duplicate)
    after = counters(r)
    return sent, {k: after[k] - before[k] for k in COUNTERS}, got


def expect(sent: int, **moved: int) -> dict[str, int]:
    out = dict.fromkeys(COUNTERS, 0)
    out["seen"] = sent
    out.update(moved)
    return out


def check_still_flowing(r: Rig, seed: int) -> None:
    frames, pays = good_frames(r, 300, seed)
    sent, delta, got = run(r, frames, deliver=len(pays))
    assert sent == len(frames)
    assert got == pays, f"{r.mode}: valid packets after the hostile burst: {len(got)} of {len(pays)} identical"
    assert delta == expect(sent, redirected=sent), delta
    st = r.rx.stats()
    assert st["drops"] == 0 and st["bad_frames"] == 0 and st["no_stamp"] == 0, st


def assert_class(r: Rig, name: str, frames: list[bytes], deliver: list[bytes] | None = None,
                 min_sent: int | None = None, **moved_per_frame: int) -> int:
    """Every frame of the class moves each named counter by one (``seen`` always); payloads as given."""
    sent, delta, got = run(r, frames, deliver=len(deliver or []))
    assert sent == (len(frames) if min_sent is None else min_sent), f"{name}: tx kernel accepted {sent}"
    want = expect(sent, **{k: v * sent for k, v in moved_per_frame.items()})
    assert delta == want, f"{r.mode} {name}: counters moved {delta}, the program's code says {want}"
    assert got == (deliver or []), f"{r.mode} {name}: delivered {got[:5]}..."
    return sent


MALFORMED = {"malformed": 1, "passed": 1}
PASSED = {"passed": 1}
REDIRECTED = {"redirected": 1}


# --- truncation at every header ---------------------------------------------------------------------------
@pytest.mark.xdp
def test_truncated_headers_are_malformed_and_passed(rig):
    from scapy.layers.l2 import Dot1Q

    r = rig
    # Ethernet: the tx kernel refuses frames shorter than 14 bytes, so the program never sees them.
    assert inject(r, [bytes(eth(r) / ip4(r) / udp())[:k] for k in range(1, 14)]) == 0
    vlan = [bytes(eth(r, type=0x8100))[:14] + b"\x00\x2a\x08\x00"[:k] for k in range(4)]
    vlan += [bytes(eth(r, type=0x88A8))[:14] + b"\x00\x2a\x08\x00"[:k] for k in range(4)]
    assert_class(r, "vlan tag truncated", vlan, **MALFORMED)
    full4 = bytes(eth(r) / ip4(r) / udp() / b"x")
    assert_class(r, "ipv4 truncated", [full4[: 14 + k] for k in range(20)], **MALFORMED)
    full4v = bytes(eth(r) / Dot1Q(vlan=7) / ip4(r) / udp() / b"x")
    assert_class(r, "ipv4 in vlan truncated", [full4v[: 18 + k] for k in range(20)], **MALFORMED)
    full6 = bytes(eth(r) / ip6(r) / udp() / b"x")
    assert_class(r, "ipv6 truncated", [full6[: 14 + k] for k in range(40)], **MALFORMED)
    # UDP header cut: malformed before the port is even looked at (feed port or not).
    cut = [full4[: 34 + k] for k in range(8)] + [full6[: 54 + k] for k in range(8)]
    cut += [bytes(eth(r) / ip4(r) / udp(dport=5353))[: 34 + k] for k in range(8)]
    assert_class(r, "udp truncated", cut, **MALFORMED)
    check_still_flowing(r, 1)


@pytest.mark.xdp
def test_bad_ipv4_headers(rig):
    r = rig
    base = bytearray(bytes(eth(r) / ip4(r) / udp() / b"payload"))
    bad = []
    for ihl in range(5):
        f = bytearray(base)
        f[14] = 0x40 | ihl
        bad.append(bytes(f))
    for version in (0, 6, 15):  # EtherType IPv4, version field not 4
        f = bytearray(base)
        f[14] = version << 4 | 5
        bad.append(bytes(f))
    assert_class(r, "ihl<5 / version!=4", bad, **MALFORMED)
    # IHL 15 but the frame ends inside the options: the UDP header lies beyond data_end.
    f = bytearray(base[:34 + 8])
    f[14] = 0x4F
    assert_class(r, "ihl beyond frame", [bytes(f)], **MALFORMED)
    check_still_flowing(r, 2)


@pytest.mark.xdp
def test_ipv4_options_are_parsed_and_redirected(rig):
    from scapy.layers.inet import IPOption

    r = rig
    frames, pays = [], []
    for ihl in range(6, 16):
        p = b"opts-%02d" % ihl
        f = bytes(eth(r) / ip4(r, options=[IPOption(b"\x01" * (4 * (ihl - 5)))]) / udp() / p)
        assert f[14] == 0x40 | ihl, f"scapy built IHL {f[14] & 15}, wanted {ihl}"
        frames.append(f)
        pays.append(p)
    assert_class(r, "ipv4 options", frames, deliver=pays, **REDIRECTED)
    check_still_flowing(r, 3)


@pytest.mark.xdp
def test_what_the_program_leaves_to_the_kernel(rig):
    from scapy.layers.inet import ICMP, TCP
    from scapy.layers.inet6 import (
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
    )
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q

    r = rig
    ext = [bytes(eth(r) / ip6(r) / h / udp() / b"ext") for h in
           (IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(), IPv6ExtHdrFragment(m=1))]
    assert_class(r, "ipv6 extension headers", ext, **PASSED)
    qinq = [bytes(eth(r) / Dot1AD(vlan=1) / Dot1Q(vlan=2) / ip4(r) / udp() / b"qinq"),
            bytes(eth(r) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / ip6(r) / udp() / b"qinq")]
    assert_class(r, "stacked vlans (one tag parsed)", qinq, **PASSED)
    frags = [bytes(eth(r) / ip4(r, flags="MF") / udp() / b"first"),
             bytes(eth(r) / ip4(r, frag=100) / b"later-fragment"),
             bytes(eth(r) / ip4(r, frag=1, flags="MF") / b"middle")]
    assert_class(r, "ipv4 fragments", frags, **PASSED)
    other = [bytes(eth(r) / ip4(r) / udp(dport=9002) / b"other-port"),
             bytes(eth(r) / ip6(r) / udp(dport=9002) / b"other-port"),
             bytes(eth(r) / ip4(r) / TCP(dport=PORT)),
             bytes(eth(r) / ip4(r) / ICMP()),
             bytes(eth(r, type=0x0806) / ARP(pdst=r.lab.rx_ip, psrc="10.77.0.77")),
             bytes(eth(r, type=0x88B5)) + b"\0" * 50,
             # not-for-the-feed UDP with a lying length is never checked: passed, not malformed
             bytes(eth(r) / ip4(r) / udp(dport=9002, len=3) / b"x")]
    assert_class(r, "non-feed traffic", other, **PASSED)
    check_still_flowing(r, 4)


@pytest.mark.xdp
def test_udp_length_lying_both_ways(rig):
    r = rig
    more = [bytes(eth(r) / ip4(r) / udp(len=8 + 10 + k) / (b"x" * 10)) for k in (1, 100, 65535 - 18)]
    more += [bytes(eth(r) / ip6(r) / udp(len=8 + 11) / (b"y" * 10))]
    more += [bytes(eth(r) / ip4(r) / udp(len=k) / b"tiny") for k in range(8)]  # below the header itself
    assert_class(r, "udp length > frame or < 8", more, **MALFORMED)
    # UDP length < IP payload: valid, the UDP length rules (IPv4 without checksum; IPv6 summed over 3 bytes).
    less = [bytes(eth(r) / ip4(r) / udp(len=8 + k, chksum=0) / b"0123456789abcdef") for k in (0, 1, 5, 15)]
    less += [_set_u16(bytes(eth(r) / ip6(r) / udp() / b"012") + b"3456789", IP6_PLEN, 18)]
    assert_class(r, "udp length < frame", less, deliver=[b"", b"0", b"01234", b"0123456789abcde", b"012"],
                 **REDIRECTED)
    check_still_flowing(r, 5)


@pytest.mark.xdp
def test_zero_length_and_jumbo(rig):
    r = rig
    zero = [bytes(eth(r) / ip4(r) / udp()), bytes(eth(r) / ip6(r) / udp())]
    assert_class(r, "zero-length payload", zero, deliver=[b"", b""], **REDIRECTED)
    big4 = bytes(range(256)) * 6  # the largest payloads a 1500-byte MTU carries
    big = [bytes(eth(r) / ip4(r) / udp() / big4[:1472]), bytes(eth(r) / ip6(r) / udp() / big4[:1452])]
    assert all(len(f) == 1514 for f in big)
    assert_class(r, "MTU-sized", big, deliver=[big4[:1472], big4[:1452]], **REDIRECTED)
    check_still_flowing(r, 6)


def _flip_last(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


def _partial_checksum(frame: bytes, v6: bool) -> bytes:
    """The frame as a local sender leaves it with checksum offload (CHECKSUM_PARTIAL over a veth): the UDP
    checksum field holds only the pseudo-header sum, folded, not complemented."""
    addrs = frame[22:54] if v6 else frame[26:34]
    udp = 54 if v6 else 34
    s = sum(int.from_bytes(addrs[i:i + 2], "big") for i in range(0, len(addrs), 2)) + 17
    s += int.from_bytes(frame[udp + 4:udp + 6], "big")
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return frame[:udp + 6] + s.to_bytes(2, "big") + frame[udp + 8:]


@pytest.mark.xdp
def test_bad_udp_checksums_are_dropped_by_the_consumer(rig):
    """The program redirects them (it never sums payloads); the consumer drops them, as the kernel would."""
    r = rig
    bad = [_flip_last(bytes(eth(r) / ip4(r) / udp() / b"bad-sum4")),
           _flip_last(bytes(eth(r) / ip6(r) / udp() / b"bad-sum6")),
           bytes(eth(r) / ip4(r) / udp(chksum=0x1234) / b"wrong"),
           bytes(eth(r) / ip6(r) / udp(chksum=0) / b"v6-needs-a-sum")]
    before = r.rx.stats()["bad_checksum"]
    assert_class(r, "bad udp checksum", bad, **REDIRECTED)
    assert r.rx.stats()["bad_checksum"] - before == len(bad)
    # Right ones: IPv4 without a checksum (0), and a sum of 0 sent as 0xFFFF (the last payload word makes it so).
    from scapy.layers.inet import UDP

    word = bytes(eth(r) / ip4(r) / udp() / b"sum0\0\0")[40:42]  # the checksum with the word at 0
    ffff = bytes(eth(r) / ip4(r) / udp() / (b"sum0" + word))
    assert UDP(ffff[34:]).chksum == 0xFFFF
    ok = [bytes(eth(r) / ip4(r) / udp(chksum=0) / b"v4-no-sum"), ffff,
          _partial_checksum(bytes(eth(r) / ip4(r) / udp() / b"partial4"), v6=False),
          _partial_checksum(bytes(eth(r) / ip6(r) / udp() / b"partial6"), v6=True)]
    assert_class(r, "right udp checksum", ok, deliver=[b"v4-no-sum", b"sum0" + word, b"partial4", b"partial6"],
                 **REDIRECTED)
    assert r.rx.stats()["bad_checksum"] - before == len(bad)
    check_still_flowing(r, 15)


@pytest.mark.xdp
def test_checksum_verification_can_be_turned_off(lab):
    from xdpgw.transport.xdp.rx import XdpReceiver

    with in_netns(lab.rx_ns):
        rx = XdpReceiver(lab.rx_if, 0, [PORT], mode="drv", verify_checksums=False)
    with rx:
        bad = [_flip_last(f) for f in feed_frames(lab, [b"bad-sum-1", b"bad-sum-2"])]
        send_frames(lab, bad)
        got: list[bytes] = []
        deadline = time.monotonic() + 3
        while len(got) < 2 and time.monotonic() < deadline:
            got += rx.recv_batch(256, timeout=0.05).payloads()
        st = rx.stats()
    assert got == [f[-9:] for f in bad] and st["bad_checksum"] == 0, st


@pytest.mark.xdp
def test_random_garbage_burst_then_valid_feed(rig):
    """Random bytes after a real Ethernet header: whatever the program decides, it is one decision each."""
    r = rig
    rng = np.random.default_rng(7)
    frames = []
    for i in range(400):
        et = (b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\xa8")[i % 4]
        frames.append(bytes(eth(r))[:12] + et + rng.bytes(int(rng.integers(0, 120))))
    sent, delta, got = run(r, frames)
    assert sent == len(frames)
    assert delta["seen"] == sent
    assert delta["redirected"] + delta["passed"] == sent  # no drop without a guard configured
    assert delta["denied"] == delta["rate_limited"] == delta["no_socket"] == delta["no_meta"] == 0
    assert len(got) <= delta["redirected"]
    check_still_flowing(r, 7)


# --- guards -----------------------------------------------------------------------------------------------
@pytest.mark.xdp
@pytest.mark.parametrize("deny", ["pass", "drop"])
def test_allowlist(rig, deny):
    r = rig
    prog = r.rx.program
    try:
        prog.set_allowlist([r.lab.tx_ip, r.lab.tx_ip6], deny=deny)
        ok = [bytes(eth(r) / ip4(r) / udp() / b"ok4"), bytes(eth(r) / ip6(r) / udp() / b"ok6")]
        assert_class(r, "allowed sources", ok, deliver=[b"ok4", b"ok6"], **REDIRECTED)
        no = [bytes(eth(r) / ip4(r, src="10.77.0.9") / udp() / b"no4"),
              bytes(eth(r) / ip6(r, src="fd77::9") / udp() / b"no6")] * 5
        moved = {"denied": 1, "passed": 1} if deny == "pass" else {"denied": 1}
        assert_class(r, f"denied sources ({deny})", no, **moved)
        # non-feed traffic from anyone is not the allowlist's business; malformed is still malformed
        other = [bytes(eth(r) / ip4(r, src="10.77.0.9") / udp(dport=9002) / b"x")]
        assert_class(r, "non-feed from a denied source", other, **PASSED)
        lying = [bytes(eth(r) / ip4(r, src="10.77.0.9") / udp(len=200) / b"x")]
        assert_class(r, "malformed from a denied source", lying, **MALFORMED)
    finally:
        prog.set_allowlist(None)
    assert_class(r, "allowlist off", [bytes(eth(r) / ip4(r, src="10.77.0.9") / udp() / b"open")],
                 deliver=[b"open"], **REDIRECTED)
    check_still_flowing(r, 8)


@pytest.mark.xdp
def test_rate_cap_counts_exactly_the_excess(rig):
    r = rig
    prog = r.rx.program
    src_a, src_b = f"10.77.0.{20 + MODES.index(r.mode)}", f"10.77.0.{30 + MODES.index(r.mode)}"
    try:
        prog.set_rate_cap(0.001, burst=5)  # 1000 s interval: exactly 5 packets per source, however slow the run
        burst = [bytes(eth(r) / ip4(r, src=src_a) / udp() / (b"a%02d" % i)) for i in range(50)]
        burst += [bytes(eth(r) / ip4(r, src=src_b) / udp() / (b"b%02d" % i)) for i in range(50)]
        sent, delta, got = run(r, burst, deliver=10)
        assert sent == 100
        assert delta["seen"] == 100 and delta["passed"] == delta["malformed"] == delta["denied"] == 0, delta
        assert delta["redirected"] + delta["rate_limited"] == 100, delta
        a = [p for p in got if p.startswith(b"a")]
        b = [p for p in got if p.startswith(b"b")]
        # GCRA: the first 5 of each source pass, the other 45 are the excess
        assert a == [b"a%02d" % i for i in range(5)] and b == [b"b%02d" % i for i in range(5)], (a, b, delta)
        assert delta["redirected"] == len(got) == 10 and delta["rate_limited"] == 90, delta
    finally:
        prog.set_rate_cap(None)
    check_still_flowing(r, 9)


# --- decoder fuzzing (no network) -------------------------------------------------------------------------
_VALID, _ = synth_packets(20, (1, 5), seed=3)
_VALID_PAYLOADS = _VALID.payloads()


@st.composite
def hostile_payload(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "count", "length", "valid"]))
    base = _VALID_PAYLOADS[draw(st.integers(0, len(_VALID_PAYLOADS) - 1))]
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "truncated":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "count":  # header message count lies (including heartbeat 0 and end of session 0xFFFF)
        c = draw(st.sampled_from([0, 1, 2, 100, 0xFFFE, 0xFFFF]))
        return base[:18] + c.to_bytes(2, "big") + base[20:]
    if kind == "length":  # first block length lies
        n = draw(st.integers(0, 0xFFFF))
        return base[:20] + n.to_bytes(2, "big") + base[22:]
    return base


@given(st.integers(0, len(_VALID_PAYLOADS)), st.lists(hostile_payload(), max_size=40))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decoder_fuzz_never_raises_and_counts_every_bad_packet(clean, hostile):
    """``clean`` in-order valid packets, then hostile ones: nothing raises, every error is counted, and the
    hostile tail costs none of the clean head's messages."""
    payloads = _VALID_PAYLOADS[:clean] + hostile
    batch = Batch.from_payloads(payloads, 1)
    fh = FeedHandler(lines=1)
    fh.on_batch(batch)  # must not raise
    dec = Decoder().decode(batch)  # an independent decode of the same burst, for the accounting
    errs = fh.decode_errors
    assert errs == dec.errors
    pkt_bad = int(np.count_nonzero(dec.pkt_error))
    msg_bad = int(np.count_nonzero(dec.error))
    pkt_counted = sum(errs.get(k, 0) for k in ("short_packet", "count_mismatch", "block_overrun"))
    msg_counted = sum(errs.get(k, 0) for k in ("unknown_type", "bad_length"))
    assert pkt_counted == pkt_bad, (errs, dec.pkt_error)
    assert msg_counted == msg_bad, (errs, dec.error)
    assert errs.get("short_packet", 0) == sum(len(p) < HEADER_SIZE for p in payloads)
    assert set(np.unique(dec.pkt_error)) <= {0, SHORT_PACKET, COUNT_MISMATCH, BLOCK_OVERRUN}
    # never more than the valid messages; at least every message of the in-order head once two packets
    # corroborate the session (dropping everything would fail here)
    delivered = fh.stats()["messages"]  # (the C fast path hands its counters back when read)
    assert delivered <= int(np.count_nonzero(dec.error == 0))
    head = len(Decoder().decode(Batch.from_payloads(_VALID_PAYLOADS[:clean], 1))) if clean >= 2 else 0
    assert delivered >= head, (delivered, head, fh.sequencer.stats())
    good = [p for p in payloads if p in _VALID_PAYLOADS]
    if good and len(good) == len(payloads):
        assert not errs


@pytest.mark.xdp
def test_one_vlan_tag_is_parsed(rig):
    from scapy.layers.l2 import Dot1AD, Dot1Q

    r = rig
    tagged = [bytes(eth(r) / Dot1Q(vlan=42) / ip4(r) / udp() / b"q"),
              bytes(eth(r) / Dot1AD(vlan=43) / ip6(r) / udp() / b"ad")]
    assert_class(r, "one vlan tag", tagged, deliver=[b"q", b"ad"], **REDIRECTED)
    check_still_flowing(r, 10)


def _set_u16(frame: bytes, at: int, value: int) -> bytes:
    f = bytearray(frame)
    f[at:at + 2] = value.to_bytes(2, "big")
    return bytes(f)


IP4_TOT_LEN, IP6_PLEN = 14 + 2, 14 + 4  # offsets in an untagged frame


@pytest.mark.xdp
def test_ip_and_udp_lengths_must_agree(rig):
    """The IPv4 total length / IPv6 payload length must fit the frame and hold the whole UDP datagram."""
    r = rig
    f4 = bytes(eth(r) / ip4(r) / udp() / b"0123456789")  # IPv4 total length 38, UDP length 18
    f6 = bytes(eth(r) / ip6(r) / udp() / b"0123456789")  # IPv6 payload length 18, UDP length 18
    lying = [
        _set_u16(f4, IP4_TOT_LEN, 28),  # IP payload 8 < UDP length 18
        _set_u16(f4, IP4_TOT_LEN, 37),  # one byte short
        _set_u16(f4, IP4_TOT_LEN, 39),  # one byte beyond the frame
        _set_u16(f4, IP4_TOT_LEN, 0xFFFF),
        _set_u16(f4, IP4_TOT_LEN, 10),  # shorter than the IP header itself
        _set_u16(f4, IP4_TOT_LEN, 0),
        _set_u16(f6, IP6_PLEN, 17),  # IPv6 payload < UDP length
        _set_u16(f6, IP6_PLEN, 19),  # beyond the frame
        _set_u16(f6, IP6_PLEN, 0),
        # UDP length inside the frame (trailing bytes) but beyond what the IP header says
        bytes(eth(r) / ip4(r) / udp(len=8 + 14) / b"0123456789") + b"tail",
        _set_u16(bytes(eth(r) / ip6(r) / udp(len=8 + 14) / b"0123456789") + b"tail", IP6_PLEN, 18),
    ]
    assert_class(r, "ip length vs udp length vs frame", lying, **MALFORMED)
    # Trailing bytes beyond the IP datagram (e.g. Ethernet padding) are fine: the UDP length rules.
    padded = [bytes(eth(r) / ip4(r) / udp() / b"pad4") + b"\0" * 20,
              bytes(eth(r) / ip6(r) / udp() / b"pad6") + b"\0" * 20]
    assert_class(r, "ethernet padding", padded, deliver=[b"pad4", b"pad6"], **REDIRECTED)
    # Not the feed: the kernel's business, whatever its lengths say.
    other = [_set_u16(bytes(eth(r) / ip4(r) / udp(dport=9002) / b"x"), IP4_TOT_LEN, 0xFFFF)]
    assert_class(r, "non-feed with a lying ip length", other, **PASSED)
    check_still_flowing(r, 11)


@pytest.mark.xdp
def test_ipv6_version_must_be_6(rig):
    r = rig
    bad = []
    for version in (0, 4, 7, 15):
        f = bytearray(bytes(eth(r) / ip6(r) / udp() / b"v6"))
        f[14] = version << 4 | (f[14] & 0x0F)
        bad.append(bytes(f))
    assert_class(r, "ipv6 version != 6", bad, **MALFORMED)
    check_still_flowing(r, 12)


@pytest.mark.xdp
def test_rate_cap_starts_afresh_when_set_again(rig):
    r = rig
    prog = r.rx.program
    src = f"10.77.0.{40 + MODES.index(r.mode)}"
    frames = [bytes(eth(r) / ip4(r, src=src) / udp() / (b"c%02d" % i)) for i in range(8)]
    try:
        prog.set_rate_cap(0.001, burst=3)  # 1000 s interval: no test earns a 4th packet
        assert_class(r, "over the cap", frames[:3], deliver=[b"c00", b"c01", b"c02"], **REDIRECTED)
        assert_class(r, "over the cap", frames[3:6], rate_limited=1)
        prog.set_rate_cap(0.001, burst=3)  # the same cap again: the source's state is cleared
        assert_class(r, "after set_rate_cap", frames[:3], deliver=[b"c00", b"c01", b"c02"], **REDIRECTED)
    finally:
        prog.set_rate_cap(None)
    check_still_flowing(r, 13)


@pytest.mark.xdp
def test_rate_cap_charges_only_what_would_be_redirected(rig):
    """Denied (allowlist), non-feed and malformed packets of a source do not use up its rate allowance."""
    r = rig
    prog = r.rx.program
    src = f"10.77.0.{50 + MODES.index(r.mode)}"
    try:
        prog.set_rate_cap(0.001, burst=3)  # 1000 s interval: no test earns a 4th packet
        prog.set_allowlist([r.lab.tx_ip])  # src is not on it: passed to the kernel
        denied = [bytes(eth(r) / ip4(r, src=src) / udp() / b"denied")] * 5
        assert_class(r, "denied, not charged", denied, denied=1, passed=1)
        prog.set_allowlist(None)
        uncharged = [bytes(eth(r) / ip4(r, src=src) / udp(dport=9002) / b"other-port")] * 5
        uncharged += [_set_u16(bytes(eth(r) / ip4(r, src=src) / udp() / b"lying"), IP4_TOT_LEN, 0xFFFF)] * 5
        sent, delta, _ = run(r, uncharged)
        assert delta == expect(sent, passed=10, malformed=5), delta
        ok = [bytes(eth(r) / ip4(r, src=src) / udp() / (b"ok%d" % i)) for i in range(3)]
        assert_class(r, "the whole burst allowance is left", ok, deliver=[b"ok0", b"ok1", b"ok2"], **REDIRECTED)
        assert_class(r, "and then the cap", ok[:1], rate_limited=1)
    finally:
        prog.set_allowlist(None)
        prog.set_rate_cap(None)
    check_still_flowing(r, 14)
