"""Shared by the ``*_build.py`` modules (as pyca/cryptography's ``_cffi_src/utils.py``): one FFI per extension.

Every binding has one header that is both its cffi cdef and #included by its ``.c``. A header holds plain
declarations only (no #include; cffi parses it as it is) plus, where a value must come from the system
headers (cffi's ``...``), a block that only the cdef sees, written inside a C comment so the compiler
skips it::

    /* cdef-only
    #define XDP_COPY ...
    cdef-only */

Each ``.c`` is compiled on its own and linked into the extension; the cffi wrapper's own unit includes
``includes`` (the system headers those values come from) and the headers.
"""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
# The XDP program's ABI header (counters, config slots, guard flags, metadata) lives beside the BPF C that
# BCC compiles at run time; bindings that share it read it from there.
PROGRAMS = HERE.parent / "kernel" / "programs"
ROOT = HERE.parent.parent  # setup.py's directory: setuptools wants paths relative to it
_CDEF_ONLY = re.compile(r"/\* cdef-only[^\n]*\n(.*?)cdef-only \*/", re.S)
CFLAGS = ["-O2", "-Wall", "-Wno-unused-function"]


def cdef_text(header: Path) -> str:
    """The header as cffi reads it: its cdef-only blocks uncommented."""
    return _CDEF_ONLY.sub(r"\1", header.read_text())


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def binding(module: str, headers: list[Path | str], sources: list[str], *, includes: tuple[str, ...] = (),
            libraries: tuple[str, ...] = (), cflags: list[str] | None = None) -> FFI:
    """An FFI for ``xdpgw._native.<module>``: the cdef read from ``headers`` (names in this directory, or
    paths), the C from ``sources`` (names in this directory), each compiled on its own."""
    paths = [h if isinstance(h, Path) else HERE / h for h in headers]
    ffi = FFI()
    for path in paths:
        ffi.cdef(cdef_text(path))
    preamble = "".join(f"#include {inc}\n" for inc in ("<stdint.h>", "<stddef.h>", *includes))
    ffi.set_source(
        f"xdpgw._native.{module}",
        preamble + "".join(f'#include "{p.name}"\n' for p in paths),
        sources=[_rel(HERE / s) for s in sources],
        include_dirs=[_rel(HERE), _rel(PROGRAMS)],
        libraries=list(libraries),
        extra_compile_args=cflags or CFLAGS,
        depends=[_rel(p) for p in (*paths, *HERE.glob("*.h"), *(HERE / s for s in sources))],
    )
    return ffi
