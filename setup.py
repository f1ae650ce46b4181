"""Only here to hand the cffi extension to setuptools; metadata lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["cffi_build.py:ffibuilder", "xdpgw/_native/book_build.py:ffibuilder"])
