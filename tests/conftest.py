"""Fixtures (one way to build a veth lab) and the run's rules.

- In CI (CI=true) a test that skips FAILS, whatever made it skip (an XDP test on a machine without XDP, a
  missing tool, too few CPUs): green must mean it really ran. A test that may rightly not run on some CI
  machine says so with ``@pytest.mark.ci_may_skip("why")``; its skip is then allowed but never silent.
- Every run ends with one line per skipped test and why, and the random-order seed (pytest-randomly).
Helpers live in tests/helpers.py, packet builders in tests/builders.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import IN_CI, require_xdp
from xdpgw.tools.lab import Lab

_SKIPS: list[tuple[str, str]] = []


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "ci_may_skip(why): this test may skip under CI=true (say why)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdp"):
            item.fixturenames.insert(0, "_xdp_gate")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason.removeprefix("Skipped: ")
    allowed = item.get_closest_marker("ci_may_skip")
    if IN_CI and allowed is None:
        rep.outcome = "failed"
        rep.longrepr = (f"skipped under CI=true, which must not happen: {reason}\n"
                        "fix the machine (scripts/setup.sh installs what the tests need), or mark the test "
                        "@pytest.mark.ci_may_skip('why it may not run in CI')")
        return
    why = f" (allowed in CI: {allowed.args[0]})" if allowed is not None and allowed.args else ""
    _SKIPS.append((item.nodeid, reason + why))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    tr = terminalreporter
    if _SKIPS:
        tr.write_sep("-", f"{len(_SKIPS)} skipped" + (" under CI=true" if IN_CI else ""))
        for nodeid, reason in _SKIPS:
            tr.write_line(f"SKIPPED {nodeid}: {reason}")
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None and getattr(config.option, "randomly_reorganize", True):
        tr.write_line(f"random order: --randomly-seed={seed} replays it (-p no:randomly: file order)")


@pytest.fixture
def _xdp_gate() -> None:
    require_xdp()


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """``make_lab(queues=1, prefix="xt")``: a fresh veth lab with a unique name, torn down after the test."""
    made: list[Lab] = []

    def make(queues: int = 1, prefix: str = "xt") -> Lab:
        require_xdp()
        lb = Lab(prefix + secrets.token_hex(3), queues=queues)
        made.append(lb)
        return lb.up()

    try:
        yield make
    finally:
        for lb in made:
            lb.down()


@pytest.fixture
def lab(make_lab) -> Lab:
    """A fresh one-queue veth lab, always torn down."""
    return make_lab(1)


@pytest.fixture
def lab2(make_lab) -> Lab:
    """A fresh two-queue veth lab, always torn down."""
    return make_lab(2)


@pytest.fixture
def lab4(make_lab) -> Lab:
    """A fresh four-queue veth lab, always torn down."""
    return make_lab(4)
