"""The AF_XDP transport: receiver (rx) and sender (tx) over a libxdp UMEM."""
