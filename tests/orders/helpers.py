"""Helpers for the order-path tests: waiting for a condition, and kill -9 at the right moment."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

from tests.helpers import wait_for as shared_wait_for


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """The suite's ``tests.helpers.wait_for`` with the order tests' bound (generous: a bound for a hung run,
    not a speed check; CI under double load once needed more than 20 s), polled every 10 ms."""
    shared_wait_for(cond, timeout, what, interval=0.01)


def reap(p: subprocess.Popen) -> None:
    """Kill ``p`` if it still runs, wait for it and close its pipes."""
    if p.poll() is None:
        p.kill()
    p.wait()
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            f.close()


def kill9_when(p: subprocess.Popen, cond: Callable[[], bool], what: str) -> None:
    """SIGKILL ``p`` as soon as ``cond()`` holds; the process is reaped even if waiting fails."""
    try:
        wait_for(cond, what=what)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        reap(p)
