"""The suite's own rules (tests/conftest.py), run on a throw-away test file: under CI=true a skip fails
unless the test says why it may skip, and every skip is listed with its reason."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT

SAMPLE = '''
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no frobnicator here")

@pytest.mark.skipif(True, reason="never on this machine")
def test_skipif():
    pass

@pytest.mark.ci_may_skip("frobnicators are rare in CI")
def test_allowed():
    pytest.skip("no frobnicator here either")
'''


def run_sample(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_sample.py")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_under_ci_a_skip_fails_unless_allowed_and_every_skip_is_listed(tmp_path):
    p = run_sample(tmp_path, ci=True)
    assert p.returncode == 1, p.stdout
    assert "1 failed, 1 passed, 1 skipped, 1 error" in p.stdout, p.stdout  # a skip at set-up: an error
    assert "skipped under CI=true, which must not happen: no frobnicator here" in p.stdout
    assert "skipped under CI=true, which must not happen: never on this machine" in p.stdout
    assert ("SKIPPED test_sample.py::test_allowed: no frobnicator here either "
            "(allowed in CI: frobnicators are rare in CI)") in p.stdout, p.stdout


def test_outside_ci_skips_are_listed_with_their_reasons(tmp_path):
    p = run_sample(tmp_path, ci=False)
    assert p.returncode == 0 and "1 passed, 3 skipped" in p.stdout, p.stdout
    for line in ("SKIPPED test_sample.py::test_skips: no frobnicator here",
                 "SKIPPED test_sample.py::test_skipif: never on this machine"):
        assert line in p.stdout, p.stdout
    assert "random order: --randomly-seed=" in p.stdout
