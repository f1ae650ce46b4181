"""The transport interface: every receiver yields `Batch`es (xdpgw.batch), every sender takes them.

Small on purpose (as httpx's transports: one model in, one out): generic code (the gateway loop, A/B
lines, the pcap tap, the retransmission client) uses only what `Receiver` and `Batch` guarantee, never
which transport it has.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from xdpgw.batch import Batch


@runtime_checkable
class Receiver(Protocol):
    """Something that yields batches of UDP payloads. Use it as a context manager."""

    transport: str  # "xdp" or "socket"

    def recv_batch(self, max_packets: int = 256, timeout: float | None = 0.0) -> Batch:
        """Up to ``max_packets`` payloads; waits up to ``timeout`` s (None: forever) when idle.

        The batch stays valid until the next call. An empty batch means nothing arrived in time.
        Every field is filled for every packet, from arrays the receiver allocated once (its burst size,
        validated by ``xdpgw.batch.check_burst``): ``offsets``/``lengths`` of the UDP payloads in ``buf``,
        ``ts_ns`` the kernel receive stamps (0: none), ``dports`` the UDP destination ports and
        ``header_lengths`` the Ethernet + IP + UDP bytes in ``buf`` in front of each payload (0 when the
        transport keeps no headers, as kernel sockets).
        """
        ...

    def stats(self) -> dict[str, int]:
        """Counters: at least packets, bytes, and the transport's drop counters."""
        ...

    def describe(self) -> dict[str, object]:
        """Static facts for status/JSON: transport, mode, iface, queue, port, ..."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Receiver: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Sender(Protocol):
    """Something that sends batches of UDP payloads to one destination."""

    transport: str

    def send_batch(self, batch: Batch) -> int:
        """Queue every payload of ``batch``; returns how many were sent (may be fewer: retry the rest)."""
        ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sender: ...

    def __exit__(self, *exc: object) -> None: ...


def send_with_retries(sender: Sender, batch: Batch, tries: int = 3) -> int:
    """Send ``batch``, retrying a short send up to ``tries`` calls in all; returns how many went out."""
    sent = 0
    for _ in range(tries):
        sent += sender.send_batch(batch.slice(sent))
        if sent >= batch.count:
            break
    return sent
