"""cffi build of ``xdpgw._native._book``, the order-book engine.

``book.h`` is read here as the cdef and #included by ``book.c`` (the pyca/cryptography pattern):
every declaration Python sees exists once. ``xdpgw.book`` owns every pointer handed out.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _build, as setuptools runs this file alone
from _build import binding  # noqa: E402

ffibuilder = binding("_book", ["book.h"], ["book.c"], cflags=["-O3", "-Wall", "-Wno-unused-function"])
