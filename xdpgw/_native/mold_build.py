"""cffi build of ``xdpgw._native._mold``: MoldUDP64 block splitting and the gather by type (xdpgw.protocol.decode), with the error codes
and the ``info`` layout xdpgw.protocol.moldudp64 and decode read from ``lib``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _build, as setuptools runs this file alone
from _build import binding  # noqa: E402

ffibuilder = binding("_mold", ["mold.h"], ["mold.c"])
