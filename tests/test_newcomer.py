"""Issue 9, item 4: what a newcomer trips on. The README's commands work as written on the machine we
document (Debian as root, no `sudo`); `xdpgw bench` writes where git does not look; a warning raised
from our own code fails the suite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings

import pytest

from tests.helpers import ROOT


def readme_commands() -> list[str]:
    """Every command of the README's ``sh`` blocks (comments stripped, backslash continuations joined)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    lines = [ln.split("#")[0].rstrip() for b in blocks for ln in re.sub(r"\\\n", " ", b).splitlines()]
    return [ln.strip() for ln in lines if ln.strip()]


def test_readme_commands_run_as_written_without_sudo():
    cmds = readme_commands()
    assert "scripts/demo.sh" in cmds and "scripts/test.sh" in cmds, cmds
    for cmd in cmds:
        first = cmd.split()[0]
        assert first != "sudo", f"{cmd!r}: Debian as root has no sudo"
        if "/" in first and not first.startswith(".venv/"):  # a script of ours: there and executable
            assert os.access(ROOT / first, os.X_OK), first
        elif not first.startswith(".venv/"):
            assert first == "xdpgw" or shutil.which(first), first


def test_bench_results_default_to_a_folder_git_ignores():
    from xdpgw.cli.bench import DEFAULT_OUT

    for suffix in (".json", ".png"):
        res = subprocess.run(["git", "check-ignore", "-q", DEFAULT_OUT + suffix], cwd=ROOT)
        assert res.returncode == 0, f"{DEFAULT_OUT}{suffix} is not ignored by git"


def test_a_warning_from_our_code_fails_the_suite():
    """pyproject's filterwarnings turns warnings attributed to xdpgw/tests modules into errors."""
    for module in ("xdpgw.pipeline.feed", "tests.test_newcomer"):
        with pytest.raises(DeprecationWarning):
            warnings.warn_explicit("some deprecated use", DeprecationWarning, "x.py", 1, module=module)
    with pytest.raises((SyntaxError, SyntaxWarning, DeprecationWarning), match="invalid escape sequence"):
        compile(r"x = '\.'", "ours.py", "exec")  # 3.11: a DeprecationWarning, turned into a SyntaxError
