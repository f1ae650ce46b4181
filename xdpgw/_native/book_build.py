"""cffi API-mode build of ``xdpgw._native._book``, the order-book engine.

``book.h`` is read here as the cdef and #included by ``book.c`` (the pyca/cryptography pattern):
every declaration Python sees exists once. ``xdpgw.book`` owns every pointer handed out.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "book.h").read_text())
ffibuilder.set_source(
    "xdpgw._native._book",
    '#include "book.c"\n',
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-Wall", "-Wno-unused-function"],
    depends=[str(HERE / "book.h"), str(HERE / "book.c")],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
