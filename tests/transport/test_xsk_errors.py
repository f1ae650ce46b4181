"""The one errno table for opening AF_XDP sockets (pure logic), and the doctor's probe reading it."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, as_nobody
from xdpgw.transport.xdp.xsk_errors import OPEN_ERRORS, OTHER, xsk_open_error


def test_libxdp_message_maps_by_its_errno():
    text = "xsk_socket__create: Device or resource busy (errno 16)"
    e = xsk_open_error(text, "eth1", 3)
    assert e.what == f"eth1 queue 3 already has an AF_XDP socket ({text})"
    assert "xdpgw status eth1" in e.fix and "--queue" in e.fix


def test_every_entry_says_what_to_do():
    assert OTHER not in OPEN_ERRORS.values()
    for code in [*OPEN_ERRORS, 0]:
        e = xsk_open_error(code, "eth0", 0) if code else xsk_open_error("no errno in it", "eth0", 0)
        assert e.what and e.fix and "{" not in str(e), (code, str(e))
    assert xsk_open_error(errno.EACCES).fix == xsk_open_error(errno.EPERM).fix
    assert "this machine" in xsk_open_error(errno.EPERM).what  # the doctor's probe: no interface yet
    assert xsk_open_error("odd", "eth0", 0).fix.startswith("run `xdpgw doctor eth0`")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_doctor_af_xdp_probe_as_nobody_reads_the_table():
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from xdpgw.ops import doctor; "
            "c = doctor.check_af_xdp(); print(json.dumps([c.status, c.detail, c.fix]))")
    p = subprocess.run(as_nobody([sys.executable, "-c", code]), capture_output=True, text=True, timeout=20, cwd="/")
    assert p.returncode == 0, p.stderr
    status, detail, fix = json.loads(p.stdout)
    want = xsk_open_error(errno.EPERM)
    assert status == "fail" and detail == want.what and fix == want.fix
