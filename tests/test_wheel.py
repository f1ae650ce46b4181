"""Issue 9, item 3: a wheel installed anywhere (not an editable checkout) can attach: the BPF C sources
ship inside the package. Builds the wheel, installs it into a fresh venv (system site packages, for
Debian's bcc) and runs `xdpgw attach` on a lab from outside the checkout.

Fast as it can be: pip's cache serves the build requirements and dependencies (PyPI only)."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, Xdpgw, attached, feed_frames, send_frames, summary_of, wait_for

pytestmark = pytest.mark.xdp


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def test_wheel_installed_elsewhere_attaches(lab, tmp_path):
    pip = [sys.executable, "-m", "pip"]
    built = run([*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)])
    assert "Warning" not in built.stderr.replace("WARNING: Location", ""), built.stderr  # e.g. license deprecation
    (wheel,) = (tmp_path / "dist").glob("xdpgw-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"xdpgw/kernel/programs/xdpgw_rx.c", "xdpgw/kernel/programs/xdpgw_rx.h",
            "xdpgw/kernel/programs/blast.c"} <= set(names), names
    built_ext = {Path(n).name.split(".")[0] for n in names if n.startswith("xdpgw/_native/") and n.endswith(".so")}
    assert {"_xsk", "_net", "_mold", "_bpfobj", "_blast", "_book"} <= built_ext, names  # every binding
    venv = tmp_path / "venv"
    run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    run([*pip, "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)])
    where = run([str(venv / "bin" / "python"), "-c", "import xdpgw; print(xdpgw.__file__)"], cwd=tmp_path).stdout
    assert Path(where.strip()).is_relative_to(venv), where
    with Xdpgw(lab, "attach", lab.rx_if, "--mode", "skb", "--count", "3", "--json", "--quiet",
               program=[str(venv / "bin" / "xdpgw")], cwd=tmp_path, env={"PYTHONPATH": None}) as gw:
        wait_for(lambda: attached(lab) is not None or gw.proc.poll() is not None, 60, "the wheel's xdpgw to attach")
        for _ in range(50):
            if gw.proc.poll() is not None:
                break
            send_frames(lab, feed_frames(lab, [b"from-the-wheel"]))
            time.sleep(0.1)
        summary = summary_of(gw)
    assert summary["packets"] == 3 and attached(lab) is None
