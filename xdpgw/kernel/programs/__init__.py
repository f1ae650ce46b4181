"""The BPF C sources, shipped as package data, and the one place that compiles them with BCC.

``xdpgw_rx.c`` is the XDP program `xdpgw attach` loads, ``xdpgw_rx.h`` its ABI (also read by the cffi
build: counters, config slots, guard flags, metadata); ``blast.c`` the live-frames generator of
`xdpgw blast`. They are read with :mod:`importlib.resources`, so an installed wheel works anywhere, not
only an editable checkout.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from xdpgw.errors import GatewayError


def source(name: str) -> str:
    """The text of the C source ``name`` (e.g. ``"xdpgw_rx.c"``)."""
    return resources.files(__name__).joinpath(name).read_text()


def compile_xdp(name: str, func: str, what: str) -> tuple[object, object]:
    """Compile ``name`` with BCC and load its XDP function ``func``: ``(BPF object, function)``.
    ``what`` names the program in errors; each error says what to do."""
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if not build.exists():
        raise GatewayError(f"BCC needs kernel headers and {build} is missing",
                           "run scripts/setup.sh (it links Debian's linux-headers into place)")
    try:
        from bcc import BPF
    except ImportError as exc:
        raise GatewayError("cannot import bcc (Debian's python3-bpfcc)",
                           "run scripts/setup.sh and use .venv/bin/xdpgw (the venv sees Debian's bcc), or a venv "
                           "made with --system-site-packages") from exc
    try:
        here = resources.files(__name__)  # a directory on disk: the package is installed unzipped
        bpf = BPF(text=source(name).encode(), cflags=["-w", f"-I{here}"])
        fn = bpf.load_func(func.encode(), BPF.XDP)
    except Exception as exc:  # BCC raises bare Exception; its compiler output is already on stderr
        raise GatewayError(f"cannot compile/load {what} ({exc})",
                           "check that BPF works here (`xdpgw doctor`) and that scripts/setup.sh ran") from exc
    return bpf, fn
