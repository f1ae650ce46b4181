"""cffi build of ``xdpgw._native._net``: batched recvmmsg/sendmmsg with receive timestamps for the kernel-socket
transport (xdpgw.transport.socket)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _build, as setuptools runs this file alone
from _build import binding  # noqa: E402

ffibuilder = binding("_net", ["net.h"], ["net.c"], includes=("<sys/socket.h>",))
