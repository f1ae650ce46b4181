"""Transports: one Receiver/Sender interface, XDP (AF_XDP) and kernel-socket implementations."""

from xdpgw.batch import Batch
from xdpgw.transport.base import Receiver, Sender

__all__ = ["Batch", "Receiver", "Sender"]
