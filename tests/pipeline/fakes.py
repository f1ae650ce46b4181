"""An in-memory `Receiver` for unit tests of the consumer loop without root (as httpx's MockTransport)."""

from __future__ import annotations

from collections.abc import Sequence

from xdpgw.batch import Batch

Burst = Sequence[bytes | tuple[bytes, int]]  # payloads (to the receiver's port) or (payload, UDP port)


class FakeReceiver:
    """Hands out the given bursts in order (a burst longer than asked for is split), then empty ones.

    It implements only what `xdpgw.transport.base.Receiver` guarantees (no ``recv_raw``: the general path).
    ``empty`` bursts in the list stand for polls that found nothing.
    """

    transport = "fake"

    def __init__(self, bursts: Sequence[Burst], port: int = 9001) -> None:
        self.port = port
        self.bursts = [self._batch(b) for b in bursts]
        self.calls = self.packets = self.bytes = 0
        self.closed = False

    def _batch(self, burst: Burst) -> Batch:
        items = [p if isinstance(p, tuple) else (p, self.port) for p in burst]
        return Batch.from_payloads([p for p, _ in items], dport=[port for _, port in items])

    @property
    def exhausted(self) -> bool:
        return not self.bursts

    def recv_batch(self, max_packets: int = 256, timeout: float | None = 0.0) -> Batch:
        self.calls += 1
        if not self.bursts:
            return Batch.empty()
        batch = self.bursts[0]
        if batch.count > max_packets:
            self.bursts[0] = batch.slice(max_packets)
            batch = batch.slice(0, max_packets)
        else:
            self.bursts.pop(0)
        self.packets += batch.count
        self.bytes += int(batch.lengths[: batch.count].sum())
        return batch

    def stats(self) -> dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes, "drops": 0}

    def describe(self) -> dict[str, object]:
        return {"transport": self.transport, "mode": None, "iface": None, "queue": None, "port": self.port}

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
