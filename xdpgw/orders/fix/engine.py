"""What both ends (our connector, the test venue) need from QuickFIX: import it, find its data
dictionary, write a session settings file, read the engine's logs.

QuickFIX (PyPI ``quickfix`` 1.16, the C++ engine behind SWIG) owns the FIX session: logon/logout,
heartbeats and test requests, sequence numbers, resend requests and gap fill, and a FileStore that
keeps sequence numbers and sent messages on disk so a restart resumes the session.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from xdpgw.errors import GatewayError

VERSIONS = {"FIX.4.4": "FIX44.xml", "FIX.4.2": "FIX42.xml"}


def quickfix():
    """The ``quickfix`` module, or a GatewayError saying how to install it."""
    try:
        import quickfix as qf
    except ImportError:
        raise GatewayError("the FIX engine (quickfix) is not installed",
                           "run scripts/setup.sh (or: .venv/bin/pip install quickfix==1.16.0)") from None
    return qf


def data_dictionary(version: str) -> Path:
    """The engine's own spec file for ``version`` (installed by the quickfix package under
    ``<prefix>/share/quickfix``)."""
    if version not in VERSIONS:
        raise GatewayError(f"FIX version {version!r} is not supported", f"use one of {', '.join(VERSIONS)}")
    for base in (sysconfig.get_path("data"), sys.prefix, "/usr/local", "/usr"):
        path = Path(base, "share", "quickfix", VERSIONS[version])
        if path.is_file():
            return path
    raise GatewayError(f"no {VERSIONS[version]} data dictionary under <prefix>/share/quickfix",
                       "reinstall the engine: .venv/bin/pip install --force-reinstall quickfix==1.16.0")


def write_settings(path: Path, default: dict[str, object], session: dict[str, object]) -> Path:
    """A QuickFIX settings file with one [DEFAULT] and one [SESSION] section."""
    lines = ["[DEFAULT]", *(f"{k}={v}" for k, v in default.items()),
             "", "[SESSION]", *(f"{k}={v}" for k, v in session.items()), ""]
    path.write_text("\n".join(lines))
    return path


def common_settings(state_dir: Path, version: str, heartbeat: int) -> dict[str, object]:
    """Settings both ends share: store and logs in ``state_dir``, a non-stop session that is never
    reset by the engine (resets are a venue's start-of-day decision), validation on."""
    return {
        "FileStorePath": state_dir / "store",
        "FileLogPath": state_dir / "log",
        "NonStopSession": "Y",
        "HeartBtInt": heartbeat,
        "UseDataDictionary": "Y",
        "DataDictionary": data_dictionary(version),
        "ValidateUserDefinedFields": "N",
        "ResetOnLogon": "N",
        "ResetOnLogout": "N",
        "ResetOnDisconnect": "N",
        "PersistMessages": "Y",
        "SocketNodelay": "Y",
        "TimestampPrecision": 6,
    }


def message_log(state_dir: Path) -> Path | None:
    """The engine's log of every message in and out (``log/<session>.messages.current.log``)."""
    found = sorted(p for p in Path(state_dir, "log").glob("FIX*.messages.current.log"))
    return found[0] if found else None


_ROUTINE = ("Connecting to", "Disconnecting", "Initiated logon request", "Created session")


def last_event(state_dir: Path) -> str:
    """The engine's last telling event for error messages: a cause ("MsgSeqNum too low, expecting 40
    but received 1", "Connection failed") before anything else, never the routine connect lines."""
    lines: list[str] = []
    for path in sorted(Path(state_dir, "log").glob("FIX*.event.current.log")):
        lines += [ln.partition(" : ")[2] or ln for ln in path.read_text(errors="replace").splitlines() if ln]
    telling = [ln for ln in lines if not ln.startswith(_ROUTINE)]
    causes = [ln for ln in telling if "MsgSeqNum" in ln or "failed" in ln or "refused" in ln]
    return (causes or telling or lines or ["no engine events logged"])[-1]
