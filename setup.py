"""Only here to hand the cffi extensions to setuptools; metadata lives in pyproject.toml."""

from setuptools import setup

# One build module per extension, each reading its bindings' headers (see xdpgw/_native/_build.py).
NATIVE = ("xsk", "net", "mold", "bpfobj", "blast", "book")

setup(cffi_modules=[f"xdpgw/_native/{name}_build.py:ffibuilder" for name in NATIVE])
