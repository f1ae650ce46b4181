"""xdpgw.ops.tuning on this machine: each test runs in a child process so pytest itself stays untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, as_nobody
from xdpgw.ops.tuning import _cpulist

PRELUDE = f"""
import json, os, sys, warnings
sys.path.insert(0, {str(ROOT)!r})
from xdpgw.ops import tuning
from xdpgw.errors import GatewayError
out = {{}}
"""


def run_child(body: str, nobody: bool = False) -> dict:
    cmd = [sys.executable, "-c", PRELUDE + body + "\nprint(json.dumps(out))"]
    p = subprocess.run(as_nobody(cmd) if nobody else cmd, capture_output=True, text=True, timeout=20, cwd="/")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_cpulist_format() -> None:
    assert _cpulist([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert _cpulist([3]) == "3"


def test_pin_cpu_changes_affinity() -> None:
    cpu = max(os.sched_getaffinity(0))
    out = run_child(f"r = tuning.pin_cpu({cpu}); out['r'] = str(r); out['ok'] = r.ok; "
                    "out['aff'] = sorted(os.sched_getaffinity(0))")
    assert out["ok"] and out["aff"] == [cpu]
    assert f"pinned to CPU {cpu}" in out["r"]


def test_pin_cpu_bad_cpu_says_which_are_allowed() -> None:
    out = run_child("try:\n    tuning.pin_cpu(4095)\nexcept GatewayError as e:\n    out['err'] = str(e)")
    assert "taskset -cp" in out["err"] and "4095" in out["err"]


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO success path needs root")
def test_set_fifo_as_root() -> None:
    out = run_child("r = tuning.set_fifo(3); out['ok'] = r.ok; "
                    "out['pol'] = os.sched_getscheduler(0) == os.SCHED_FIFO; "
                    "out['prio'] = os.sched_getparam(0).sched_priority")
    assert out == {"ok": True, "pol": True, "prio": 3}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_set_fifo_eperm_explains_fix() -> None:
    out = run_child("try:\n    tuning.set_fifo(5)\nexcept GatewayError as e:\n    out['err'] = str(e)",
                    nobody=True)
    assert "not allowed" in out["err"]
    assert "run as root" in out["err"] and "cap_sys_nice" in out["err"]


def test_set_fifo_rejects_bad_priority() -> None:
    out = run_child("try:\n    tuning.set_fifo(0)\nexcept GatewayError as e:\n    out['err'] = str(e)")
    assert "1..99" in out["err"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mlockall success path needs CAP_IPC_LOCK")
def test_lock_memory_as_root() -> None:
    out = run_child("r = tuning.lock_memory(); out['ok'] = r.ok; "
                    "out['vmlck'] = [l for l in open('/proc/self/status') if l.startswith('VmLck')][0]")
    assert out["ok"]
    assert int(out["vmlck"].split()[1]) > 0  # kB actually locked


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_lock_memory_unprivileged_warns_not_fatal() -> None:
    # This machine's RLIMIT_MEMLOCK (8 MiB) is below a Python process's size: mlockall fails with ENOMEM.
    body = ("import resource\nresource.setrlimit(resource.RLIMIT_MEMLOCK, (1 << 20, 1 << 20))\n"
            "with warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n"
            "    r = tuning.lock_memory()\n"
            "out.update(ok=r.ok, detail=r.detail, fix=r.fix, warned=[str(x.message) for x in w])")
    out = run_child(body, nobody=True)
    assert out["ok"] is False
    assert "ENOMEM" in out["detail"] and "1024 KiB" in out["detail"]
    assert "ulimit -l unlimited" in out["fix"]
    assert out["warned"] and "ulimit -l" in out["warned"][0]
