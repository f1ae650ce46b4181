"""Native extensions built by cffi (one header per binding, read by the cdef and #included by the C).

``_book``: the order-book engine (``book.h``/``book.c``, built by ``book_build.py``); use it through
:mod:`xdpgw.book`.
"""
