"""xdpgw: kernel-bypass (XDP + AF_XDP) market-data gateway, with a kernel-socket fallback."""

__version__ = "0.1.0"
