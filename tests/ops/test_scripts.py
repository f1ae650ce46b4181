"""The tuning shell scripts: dry runs change nothing, say what they would do, and rewrite conf idempotently.

No test passes --apply as root: the machine's sysctls are never changed here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, as_nobody

TUNE = ROOT / "scripts" / "tune_network.sh"
HUGE = ROOT / "scripts" / "setup_hugepages.sh"
KEYS = ("net.core.rmem_max", "net.core.wmem_max", "net.core.rmem_default", "net.core.wmem_default",
        "net.core.netdev_budget", "net.core.netdev_budget_usecs", "net.core.netdev_max_backlog",
        "net.core.busy_poll", "net.core.busy_read", "vm.nr_hugepages")
REAL_CONF = Path("/etc/sysctl.d/90-xdpgw.conf")


def snapshot(iface: str | None = None) -> dict[str, str]:
    state = {k: Path("/proc/sys/" + k.replace(".", "/")).read_text() for k in KEYS}
    state["conf"] = REAL_CONF.read_text() if REAL_CONF.exists() else "<absent>"
    state["mounts"] = Path("/proc/mounts").read_text().count("hugetlbfs")
    if iface:
        for opt in ("-g", "-k"):
            state[opt] = subprocess.run(["ethtool", opt, iface], capture_output=True, text=True).stdout
    return state


def run(script: Path, *args: str, env: dict[str, str] | None = None, nobody: bool = False):
    cmd = ["bash", str(script), *args]
    return subprocess.run(as_nobody(cmd) if nobody else cmd, capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})}, cwd="/")


def nic() -> str | None:
    return next((n for n in sorted(os.listdir("/sys/class/net"))
                 if os.path.islink(f"/sys/class/net/{n}/device/driver")), None)


@pytest.mark.parametrize("script", [TUNE, HUGE])
def test_syntax_and_help(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    p = run(script, "--help")
    assert p.returncode == 0 and "--apply" in p.stdout and "90-xdpgw.conf" in p.stdout


def test_tune_dry_run_changes_nothing_and_says_what() -> None:
    iface = nic()
    before = snapshot(iface)
    p = run(TUNE, *([iface] if iface else []), "--no-gro")
    assert p.returncode == 0, p.stderr
    assert snapshot(iface) == before
    for key in KEYS[:-1]:
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith(f"sysctl {key}:"))
        cur = before[key].strip()
        assert line.startswith(f"sysctl {key}: {cur} ")  # current value, then "-> want" or "(already ...)"
        assert "->" in line or "already" in line
    assert "90-xdpgw.conf" in p.stdout
    if iface:
        assert f"{iface} rings:" in p.stdout and f"{iface} offloads:" in p.stdout
    last = p.stdout.strip().splitlines()[-1]
    assert last == "nothing to change" or last.startswith("dry run: nothing changed; apply with: sudo ")


def test_hugepages_dry_run_changes_nothing_and_says_what() -> None:
    before = snapshot()
    p = run(HUGE, "--pages", "64", "--mount", "/tmp/xdpgw-no-such-hugetlbfs")
    assert p.returncode == 0, p.stderr
    assert snapshot() == before
    assert not Path("/tmp/xdpgw-no-such-hugetlbfs").exists()
    cur = before["vm.nr_hugepages"].strip()
    assert f"sysctl vm.nr_hugepages: {cur}" in p.stdout
    assert cur == "64" or "-> 64 (128 MiB)" in p.stdout
    assert "would mount at /tmp/xdpgw-no-such-hugetlbfs" in p.stdout
    assert "--apply --pages 64" in p.stdout


def test_conf_sections_are_rewritten_not_appended(tmp_path: Path) -> None:
    conf = tmp_path / "90-xdpgw.conf"
    conf.write_text("kernel.keep_me = 1\nnet.core.rmem_max = 5\nvm.nr_hugepages = 3\n")
    env = {"XDPGW_SYSCTL_CONF": str(conf)}
    for _ in range(2):  # twice each, alternating: the file converges and never grows
        for script, args in ((TUNE, ()), (HUGE, ("--pages", "128"))):
            p = run(script, "--print-conf", *args, env=env)
            assert p.returncode == 0, p.stderr
            conf.write_text(p.stdout)
    text = conf.read_text()
    lines = [ln.split("=")[0].strip() for ln in text.splitlines() if "=" in ln and not ln.startswith("#")]
    assert len(lines) == len(set(lines)), text  # no key twice
    assert "kernel.keep_me = 1" in text and "vm.nr_hugepages = 128" in text
    assert "net.core.rmem_max = 5" not in text
    assert text.count("# BEGIN xdpgw tune_network") == 1 and text.count("# BEGIN xdpgw hugepages") == 1
    p = run(TUNE, "--print-conf", env=env)
    assert p.stdout == text  # idempotent
    # the dry run agrees that nothing is left to write
    p = run(HUGE, "--pages", "128", env=env)
    assert f"{conf} already up to date" in p.stdout


def test_bad_arguments_name_the_fix() -> None:
    p = run(TUNE, "--bogus")
    assert p.returncode == 2 and "--help" in p.stderr
    p = run(TUNE, "nosuch9")
    assert p.returncode == 1 and "ip -br link" in p.stderr
    p = run(HUGE, "--pages", "lots")
    assert p.returncode == 2 and "--pages 512" in p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
@pytest.mark.parametrize("script", [TUNE, HUGE])
def test_apply_refused_without_root(script: Path) -> None:
    before = snapshot()
    p = run(script, "--apply", nobody=True)
    assert p.returncode == 1 and "run as root: sudo" in p.stderr
    assert snapshot() == before
