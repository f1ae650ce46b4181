"""A consistent ITCH 5.0 order flow: a trading day in miniature, for book tests and benchmarks.

Unlike :mod:`xdpgw.tools.synth` (random records, for decoding), every order message here refers to
a live order: executions and cancels never exceed the order, replaces and deletes name orders that
rest, and each symbol's bids stay below its fixed mid and asks above it (no crossed book). All 23
message types occur: the day opens with system events, the directory (R), trading actions (H) and
the other reference data, and closes with the end-of-day events. The result is a length-prefixed
stream (the NASDAQ daily file framing) that :func:`packets` cuts into MoldUDP64 datagrams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import HEADER_SIZE, session_bytes

_NAMES = ("AAPL", "MSFT", "AMZN", "NVDA", "GOOGL", "META", "TSLA", "IVOO", "SPY", "QQQ")
#: Share of each order-book event in the steady state (the rest are trades and reference data).
MIX = {"A": 0.34, "F": 0.04, "D": 0.27, "U": 0.09, "E": 0.08, "C": 0.02, "X": 0.07, "P": 0.02, "Q": 0.002}
_ADMIN = ("H", "Y", "L", "J", "K", "h", "I", "N", "O", "B", "V", "W")


@dataclass(slots=True)
class Flow:
    """A generated day: ``stream`` (length-prefixed messages), per message its frame start and type."""

    stream: np.ndarray  # uint8
    starts: np.ndarray  # int64: offset of each message's length prefix
    types: np.ndarray  # uint8 type codes
    symbols: list[str]  # symbol of stock locate i + 1

    def __len__(self) -> int:
        return len(self.types)

    def save(self, path: str) -> None:
        """Write it as a NASDAQ TotalView-ITCH daily file."""
        self.stream.tofile(path)


def symbol_names(n: int) -> list[str]:
    """``n`` distinct symbols: the well-known ones first, then S0010, S0011, ..."""
    return list(_NAMES[:n]) + [f"S{i:04d}" for i in range(len(_NAMES), n)]


def order_flow(n_messages: int, n_symbols: int = 300, seed: int = 0, live_target: int = 20_000) -> Flow:
    """About ``n_messages`` messages over ``n_symbols`` symbols (stock locates 1..n_symbols)."""
    rng = np.random.default_rng(seed)
    syms = symbol_names(n_symbols)
    stock = [s.ljust(8).encode() for s in syms]
    mid = (rng.integers(10, 500, n_symbols + 1) * 10_000).tolist()  # whole dollars, Price(4)
    rows: dict[str, list[tuple]] = {t: [] for t in itch.TYPES}
    order: list[int] = []
    ts = 3 * 3600 * 10**9
    loc_all = list(range(1, n_symbols + 1))

    def emit(t: str, loc: int, *body: object) -> None:
        rows[t].append((t.encode(), loc, 0, ts >> 32, ts & 0xFFFFFFFF, *body))
        order.append(ord(t))

    emit("S", 0, b"O")
    emit("V", 0, 300_000_000_000, 250_000_000_000, 200_000_000_000)
    for loc in loc_all:
        emit("R", loc, stock[loc - 1], b"Q", b"N", 100, b"N", b"C", b"Z ", b"P", b"N", b"N", b"1", b"N", 0, b"N")
        emit("H", loc, stock[loc - 1], b"T", b" ", b"    ")
    emit("S", 0, b"S")
    emit("S", 0, b"Q")

    # live orders: refs in a list (random pick, swap-remove) and their state by ref
    live: list[int] = []
    where: dict[int, int] = {}
    state: dict[int, list] = {}  # ref -> [locate, side byte, price, shares]
    next_ref = 1
    match = 1
    kinds = list(MIX)
    probs = np.array([MIX[k] for k in kinds])
    budget = max(n_messages - len(order) - 4, 0)
    draws = rng.choice(len(kinds), budget, p=probs / probs.sum()).tolist()
    r_loc = rng.integers(1, n_symbols + 1, budget).tolist()
    r_side = rng.integers(0, 2, budget).tolist()
    r_tick = (rng.geometric(0.25, budget) * 100).tolist()  # cents away from the mid
    r_shares = (rng.integers(1, 20, budget) * 100).tolist()
    r_pick = rng.random(budget).tolist()
    r_frac = rng.random(budget).tolist()
    r_dt = rng.integers(50, 20_000, budget).tolist()
    r_admin = rng.random(budget).tolist()

    def pick(i: int) -> int:
        return live[int(r_pick[i] * len(live))]

    def forget(ref: int) -> list:
        k = where.pop(ref)
        last = live.pop()
        if last != ref:
            live[k] = last
            where[last] = k
        return state.pop(ref)

    def rest(ref: int, loc: int, side: bytes, px: int, shares: int) -> None:
        where[ref] = len(live)
        live.append(ref)
        state[ref] = [loc, side, px, shares]

    for i in range(budget):
        ts += r_dt[i]
        kind = kinds[draws[i]]
        if kind in "DUEXC" and (not live or (kind in "DUX" and len(live) < live_target // 4)):
            kind = "A"
        if kind in "AF" and len(live) > live_target:
            kind = "D"
        if kind in "AF":
            loc = r_loc[i]
            side = b"S" if r_side[i] else b"B"
            px = mid[loc] + r_tick[i] if side == b"S" else mid[loc] - r_tick[i]
            if kind == "A":
                emit("A", loc, next_ref, side, r_shares[i], stock[loc - 1], px)
            else:
                emit("F", loc, next_ref, side, r_shares[i], stock[loc - 1], px, b"MPID")
            rest(next_ref, loc, side, px, r_shares[i])
            next_ref += 1
        elif kind == "D":
            ref = pick(i)
            loc = forget(ref)[0]
            emit("D", loc, ref)
        elif kind == "U":
            ref = pick(i)
            loc, side, _, _ = forget(ref)
            px = mid[loc] + r_tick[i] if side == b"S" else mid[loc] - r_tick[i]
            emit("U", loc, ref, next_ref, r_shares[i], px)
            rest(next_ref, loc, side, px, r_shares[i])
            next_ref += 1
        elif kind in "EXC":
            ref = pick(i)
            st = state[ref]
            loc, shares = st[0], st[3]
            n = max(1, int(shares * r_frac[i])) if r_frac[i] < 0.7 else shares  # a third take it all
            if kind == "X":
                n = min(n, shares - 1) if shares > 1 else 1
                emit("X", loc, ref, n)
            elif kind == "E":
                emit("E", loc, ref, n, match)
                match += 1
            else:
                emit("C", loc, ref, n, match, b"Y" if r_frac[i] < 0.8 else b"N", st[2] + (100 if st[1] == b"S" else -100))
                match += 1
            if n >= shares:
                forget(ref)
            else:
                st[3] = shares - n
        elif kind == "P":
            loc = r_loc[i]
            emit("P", loc, 0, b"B", r_shares[i], stock[loc - 1], mid[loc], match)
            match += 1
        else:  # Q
            loc = r_loc[i]
            emit("Q", loc, r_shares[i] * 10, stock[loc - 1], mid[loc], match, b"O")
            match += 1
        if r_admin[i] < 0.003:  # reference data now and then: every other type occurs
            _admin(emit, _ADMIN[int(r_admin[i] / 0.003 * len(_ADMIN)) % len(_ADMIN)], r_loc[i], stock, mid, match)
    emit("S", 0, b"M")
    emit("S", 0, b"E")
    emit("S", 0, b"C")
    return _frame(rows, np.array(order, np.uint8), syms)


def _admin(emit, t: str, loc: int, stock: list[bytes], mid: list[int], match: int) -> None:
    s = stock[loc - 1]
    if t == "H":
        emit("H", loc, s, b"T", b" ", b"    ")
    elif t == "Y":
        emit("Y", loc, s, b"0")
    elif t == "L":
        emit("L", loc, b"MPID", s, b"Y", b"N", b"A")
    elif t == "J":
        emit("J", loc, s, mid[loc], mid[loc] + 10_000, mid[loc] - 10_000, 1)
    elif t == "K":
        emit("K", loc, s, 34_200, b"A", mid[loc])
    elif t == "h":
        emit("h", loc, s, b"Q", b"T")
    elif t == "I":
        emit("I", loc, 1000, 200, b"B", s, mid[loc], mid[loc], mid[loc], b"O", b"L")
    elif t == "N":
        emit("N", loc, s, b"B")
    elif t == "O":
        emit("O", loc, s, b"Y", mid[loc] - 10_000, mid[loc] + 10_000, mid[loc], 34_200_000_000_000,
             mid[loc] - 20_000, mid[loc] + 20_000)
    elif t == "B":
        emit("B", loc, max(match - 1, 1))
    elif t == "V":
        emit("V", 0, 300_000_000_000, 250_000_000_000, 200_000_000_000)
    else:  # W
        emit("W", 0, b"1")


def _frame(rows: dict[str, list[tuple]], codes: np.ndarray, syms: list[str]) -> Flow:
    """Lay the messages out in order, each behind its u16 big-endian length (vectorised per type)."""
    sizes = itch.SIZE_TABLE[codes].astype(np.int64)
    starts = np.zeros(len(codes), np.int64)
    np.cumsum(sizes[:-1] + 2, out=starts[1:])
    stream = np.zeros(int((sizes + 2).sum()), np.uint8)
    stream[starts] = (sizes >> 8).astype(np.uint8)
    stream[starts + 1] = (sizes & 0xFF).astype(np.uint8)
    for t, recs in rows.items():
        if recs:
            size = itch.SIZES[t]
            arr = np.array(recs, itch.DTYPES[t])
            at = starts[codes == ord(t)] + 2
            stream[at[:, None] + np.arange(size)] = arr.view(np.uint8).reshape(len(arr), size)
    return Flow(stream, starts, codes, syms)


def packets(flow: Flow, per_packet: int = 25, session: str | bytes = "FLOW000001", first_seq: int = 1,
            ) -> list[bytes]:
    """The flow as MoldUDP64 datagrams of ``per_packet`` messages (blocks are the file's frames as they are)."""
    sess = session_bytes(session)
    ends = np.append(flow.starts, len(flow.stream))
    out = []
    raw = flow.stream.tobytes()
    for a in range(0, len(flow), per_packet):
        b = min(a + per_packet, len(flow))
        hdr = sess + (first_seq + a).to_bytes(8, "big") + (b - a).to_bytes(2, "big")
        out.append(hdr + raw[ends[a] : ends[b]])
    assert all(len(p) >= HEADER_SIZE for p in out)
    return out
