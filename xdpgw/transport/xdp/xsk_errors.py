"""Why opening an AF_XDP socket failed and what to do: one errno table for the receiver, the sender and
the doctor."""

from __future__ import annotations

import errno
import os
import re

from xdpgw.errors import GatewayError

_DENIED = ("not allowed to open an AF_XDP socket on {where}", "run it as root (CAP_NET_ADMIN, CAP_NET_RAW)")
_NO_MEMORY = ("cannot allocate the UMEM/rings on {where}",
              "lower --frames / ring sizes, or raise the locked-memory limit (ulimit -l unlimited; `xdpgw doctor`)")
#: errno -> (what, fix), formatted with ``where`` ("IFACE queue N"), ``iface`` and ``doctor`` (the command).
OPEN_ERRORS: dict[int, tuple[str, str]] = {
    errno.EBUSY: ("{where} already has an AF_XDP socket",
                  "stop the other user of that queue (`xdpgw status {iface}`) or pick another --queue"),
    errno.EPERM: _DENIED,
    errno.EACCES: _DENIED,
    errno.ENOMEM: _NO_MEMORY,
    errno.ENOBUFS: _NO_MEMORY,
    errno.EAFNOSUPPORT: ("this kernel has no AF_XDP sockets",
                         "use a kernel built with CONFIG_XDP_SOCKETS=y (Debian's is), or --transport socket"),
}
OTHER = ("cannot open an AF_XDP socket on {where}", "run `{doctor}`, or use --transport socket")


def xsk_open_error(err: int | str, iface: str = "", queue: int = 0) -> GatewayError:
    """The error for a failed AF_XDP open. ``err``: an errno, or the message of ``xgw_xsk_open``
    (``"what: text (errno N)"``); ``iface`` empty: a socket not bound anywhere yet (the doctor's probe)."""
    if isinstance(err, int):
        code, detail = err, os.strerror(err)
    else:
        m = re.search(r"\(errno (\d+)\)", err)
        code, detail = (int(m.group(1)) if m else 0), err
    what, fix = OPEN_ERRORS.get(code, OTHER)
    fields = {"where": f"{iface} queue {queue}" if iface else "this machine", "iface": iface,
              "doctor": f"xdpgw doctor {iface}".strip()}
    return GatewayError(f"{what.format(**fields)} ({detail})", fix.format(**fields))
