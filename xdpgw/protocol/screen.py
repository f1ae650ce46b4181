"""What in a decoded burst may be believed, before any sequencing (sans-IO, vectorised).

MoldUDP64 has no checksum of its own: a truncated or corrupted copy shows only through its framing.

- A packet too short for its header, or whose sequence is 0 or so large that its messages would run
  past ``MAX_SEQ`` (u64 wrap-around), is dropped whole (``bad_sequence_packets`` counts the latter,
  ``bad_sequence`` their messages).
- Every message dropped is counted by cause (``undecodable``: a block that did not decode; ``untrusted``;
  ``bad_sequence``), so that nothing taken in goes unaccounted.
- Within a packet only its *valid prefix* is trusted: the messages before its first block that did not
  decode. After a broken block the block lengths can no longer be trusted, so whatever follows may
  be garbage that happens to parse (``untrusted`` counts the valid messages dropped that way).
- A packet's *reach* (``pkt_nmsg`` of the screened burst) is that prefix: the packet announces the
  sequences ``[seq, seq + reach)`` and nothing beyond, so a broken copy never claims messages it does
  not carry. A packet that carries blocks but no trusted one announces nothing and is dropped.
- A packet is *well-formed* when its framing is exact (no count mismatch, no overrun) and every block
  decoded; only well-formed packets may start or confirm a session.
"""

from __future__ import annotations

import numpy as np

from xdpgw.protocol.decode import Decoded
from xdpgw.protocol.moldudp64 import OK, SHORT_PACKET

#: Highest sequence a packet may start at: leaves room for 0xFFFF messages within int64 arithmetic.
MAX_SEQ = (1 << 63) - (1 << 16)
_PKT_ARRAYS = ("pkt_session", "pkt_seq", "pkt_count", "pkt_nmsg", "pkt_error", "pkt_ts_ns")


def select(dec: Decoded, pkt_mask: np.ndarray, msg_mask: np.ndarray | None = None) -> Decoded:
    """The packets ``pkt_mask`` with their messages (only ``msg_mask`` ones, if given), renumbered."""
    keep = pkt_mask[dec.pkt]
    if msg_mask is not None:
        keep &= msg_mask
    sub = dec.take(keep)
    sub.pkt = (np.cumsum(pkt_mask) - 1)[sub.pkt]
    for name in _PKT_ARRAYS:
        setattr(sub, name, getattr(dec, name)[pkt_mask])
    return sub


def screen(dec: Decoded) -> tuple[Decoded, np.ndarray | None, dict[str, int]]:
    """``(believable part of dec, well-formed mask per packet or None for all, drop counts)``.

    ``dec`` must come from the decoder (messages packet by packet, in block order).
    """
    f = dec.facts
    if f is not None and 1 <= f.start <= f.end <= MAX_SEQ:
        return dec, None, {}  # a simple burst (no error, chained): everything holds, in O(1)
    npk = len(dec.pkt_seq)
    if npk == 0:
        return dec, None, {}
    if not dec.errors and dec.pkt_seq.min() >= 1 and dec.pkt_seq.max() <= MAX_SEQ:
        return dec, None, {}  # the decoder saw no error of any kind: only the sequences needed a look
    perr, seq = dec.pkt_error, dec.pkt_seq
    short = perr == SHORT_PACKET
    sane = (seq >= 1) & (seq <= MAX_SEQ)
    keep = ~short & sane
    well = perr == OK
    bad = dec.error != OK
    counts: dict[str, int] = {}
    if not bad.any() and well.all() and sane.all():
        return dec, None, counts
    if (n := int(np.count_nonzero(~short & ~sane))):
        counts["bad_sequence_packets"] = n
        counts["bad_sequence"] = int(np.count_nonzero(~sane[dec.pkt]))  # their messages
    reach = dec.pkt_nmsg.astype(np.int64)
    trusted = None
    if bad.any():
        pstart = np.zeros(npk, np.int64)
        np.cumsum(reach[:-1], out=pstart[1:])
        pos = np.arange(len(dec)) - pstart[dec.pkt]  # block index within its packet
        ib = np.flatnonzero(bad)
        first = ib[np.r_[True, dec.pkt[ib][1:] != dec.pkt[ib][:-1]]]  # first broken block per packet
        reach[dec.pkt[first]] = pos[first]
        well[dec.pkt[first]] = False
        trusted = pos < reach[dec.pkt]
        if (n := int(np.count_nonzero(~bad & ~trusted & keep[dec.pkt]))):
            counts["untrusted"] = n
        if (n := int(np.count_nonzero(bad & keep[dec.pkt]))):
            counts["undecodable"] = n
    keep &= (reach > 0) | well  # blocks but none trusted: says nothing (a heartbeat or EOS is well-formed)
    out = select(dec, keep, trusted)
    out.pkt_nmsg = reach[keep].astype(np.uint32)
    return out, well[keep], counts
