"""cffi build of ``xdpgw._native._blast``: BPF_PROG_RUN live frames and the bpf_link attach behind `xdpgw blast`
(xdpgw.tools.blast)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _build, as setuptools runs this file alone
from _build import binding  # noqa: E402

ffibuilder = binding("_blast", ["blast.h"], ["blast.c"], libraries=("bpf",))
