"""Native extensions built by cffi: one header per binding, read as the cdef and #included by its C.

Each ``*_build.py`` builds one extension (see ``_build.py``); each ``.c`` is compiled on its own.

- ``_xsk``: the AF_XDP socket and burst receive (``xsk.h``), the send path (``frames.h``), the in-order
  fast path with its flight recorder (``fastpath.h``) and the latency histogram (``hist.h``). One
  extension because their C calls across files (the fast path receives and stamps latency itself).
- ``_net``: batched recvmmsg/sendmmsg with timestamps (``net.h``), for :mod:`xdpgw.transport.socket`.
- ``_mold``: MoldUDP64 splitting and gathering (``mold.h``), for :mod:`xdpgw.protocol.decode`.
- ``_bpfobj``: libbpf helpers (``bpfobj.h``) plus the XDP program's ABI
  (``xdpgw/kernel/programs/xdpgw_rx.h``), for :mod:`xdpgw.kernel`.
- ``_blast``: BPF_PROG_RUN live frames (``blast.h``), for :mod:`xdpgw.tools.blast`.
- ``_book``: the order-book engine (``book.h``); use it through :mod:`xdpgw.book`.

Python owns every pointer these hand out.
"""
