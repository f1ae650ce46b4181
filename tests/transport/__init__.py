"""Receivers and senders: XDP and kernel sockets, real packets."""
