"""cffi build of ``xdpgw._native._xsk``: AF_XDP receive and send, the in-order fast path, the latency histogram.

One extension for four headers because their C calls across files: the fast path receives with
``xgw_rx_burst`` (xsk.c) and stamps latency with ``xgw_hist_since`` (hist.c); the send path (frames.c)
works on the socket's rings (xsk_internal.h). Python owns every pointer handed out here.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _build, as setuptools runs this file alone
from _build import binding  # noqa: E402

ffibuilder = binding(
    "_xsk",
    headers=["xsk.h", "frames.h", "fastpath.h", "hist.h"],
    sources=["xsk.c", "frames.c", "fastpath.c", "hist.c"],
    includes=("<linux/if_xdp.h>",),
    libraries=("xdp", "bpf"),
)
