"""Transports: one Receiver/Sender interface, XDP (AF_XDP) and kernel-socket implementations."""

from xdpgw.transport.base import Batch, Receiver, Sender

__all__ = ["Batch", "Receiver", "Sender"]
