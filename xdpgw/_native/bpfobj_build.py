"""cffi build of ``xdpgw._native._bpfobj``: libbpf helpers for xdpgw.kernel. Its cdef also reads the XDP program's ABI
header (xdpgw/kernel/programs/xdpgw_rx.h), so the BPF counter layout and names, config slots and guard
flags come from ``lib`` instead of being mirrored in Python."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _build, as setuptools runs this file alone
from _build import PROGRAMS, binding  # noqa: E402

ffibuilder = binding("_bpfobj", ["bpfobj.h", PROGRAMS / "xdpgw_rx.h"], ["bpfobj.c"], libraries=("bpf",))
