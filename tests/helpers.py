"""What the tests share: the XDP gate, frames into a lab, kernel sockets, receivers, and `xdpgw` processes.

Fixtures live in conftest.py; packet builders for the sans-IO tests in builders.py. Every wait here is for
a condition, with a deadline: nothing sleeps a fixed time and nothing blocks forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from xdpgw.tools.lab import Lab, in_netns

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --- can the XDP path run here? ---------------------------------------------------------------------
def xdp_unavailable() -> str:
    """Why the XDP path cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "not root"
    if not Path(f"/lib/modules/{os.uname().release}/build").exists():
        return "no kernel headers for BCC (run scripts/setup.sh)"
    try:
        import bcc  # noqa: F401
        import xdpgw._native._xsk  # noqa: F401
    except ImportError as exc:
        return f"cannot import bcc / xdpgw._native._xsk ({exc}); run scripts/setup.sh"
    try:
        s = socket.socket(44, socket.SOCK_RAW)  # AF_XDP
        s.close()
    except OSError as exc:
        return f"AF_XDP sockets unavailable ({exc})"
    return ""


def require(ok: bool, why: str) -> None:
    """Skip with ``why`` when ``ok`` is false (in CI the conftest hook turns that skip into a failure)."""
    if not ok:
        pytest.skip(why)


def require_xdp() -> None:
    why = xdp_unavailable()
    require(not why, f"XDP test cannot run: {why}")


def as_nobody(cmd: list[str]) -> list[str]:
    """``cmd`` run as user nobody, unprivileged except for CAP_DAC_READ_SEARCH, so it can still read
    the checkout wherever it lives (a fresh clone may sit in a 0700 directory)."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search", *cmd]


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str | Callable[[], str] = "condition",
              interval: float = 0.02) -> object:
    """``cond()``'s first truthy value; fails the test if none comes within ``timeout`` seconds (``what``
    names the condition; a callable is asked then, to say what was seen last)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


# --- frames into a lab --------------------------------------------------------------------------------
def rx_mac(lab: Lab) -> str:
    return lab.macs()[1]


def feed_frames(lab: Lab, payloads: list[bytes], dport: int = 9001, sport: int = 40000, v6: bool = False,
                vlan: int | None = None) -> list[bytes]:
    """Ethernet frames built by scapy, from the lab's tx side to its rx side."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    eth = Ether(dst=rx_mac(lab))
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    ip = IPv6(src=lab.tx_ip6, dst=lab.rx_ip6) if v6 else IP(src=lab.tx_ip, dst=lab.rx_ip)
    return [bytes(eth / ip / UDP(sport=sport, dport=dport) / Raw(p)) for p in payloads]


def send_frames(lab: Lab, frames: list[bytes]) -> int:
    """Inject frames on the tx veth through a packet socket (inside the tx namespace); returns how many
    the tx kernel accepted (it refuses frames shorter than an Ethernet header)."""
    with in_netns(lab.tx_ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sent = 0
    try:
        s.bind((lab.tx_if, 0))
        for f in frames:
            try:
                s.send(f)
                sent += 1
            except OSError:
                pass
    finally:
        s.close()
    return sent


def kernel_udp_socket(lab: Lab, port: int) -> socket.socket:
    """A plain kernel UDP socket bound in the rx namespace."""
    with in_netns(lab.rx_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.5)
    return s


def drain_socket(s: socket.socket, want: int, timeout: float = 3.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            got.append(s.recv(65536))
        except TimeoutError:
            continue
    return got


def attached(lab: Lab) -> object:
    from xdpgw.kernel.netdev import interface

    with in_netns(lab.rx_ns):
        return interface(lab.rx_if).xdp


def send_to_queues(lab: Lab, counts: dict[int, int], tag: bytes = b"") -> dict[int, list[bytes]]:
    """``counts[q]`` unique feed packets onto RX queue ``q`` of the rx veth; returns them by queue.

    An AF_XDP sender bound to TX queue ``q`` of the tx veth: veth hands a frame to the peer's RX queue with
    its TX queue's index (the receiving program must run in native mode, --mode drv)."""
    sent = {q: [b"%s-q%d-%04d" % (tag, q, i) for i in range(n)] for q, n in counts.items()}
    for q, payloads in sent.items():
        send_to_queue(lab, q, payloads)
    return sent


def send_to_queue(lab: Lab, queue: int, payloads: list[bytes], port: int = 9001) -> None:
    """``payloads`` as UDP datagrams onto RX queue ``queue`` of the rx veth (see send_to_queues)."""
    from xdpgw.batch import Batch
    from xdpgw.transport.base import send_with_retries
    from xdpgw.transport.xdp.tx import XdpSender

    with in_netns(lab.tx_ns), XdpSender(lab.tx_if, lab.rx_ip, port, queue=queue) as tx:
        assert send_with_retries(tx, Batch.from_payloads(payloads)) == len(payloads)


# --- receivers in a lab -------------------------------------------------------------------------------
TRANSPORTS = ["xdp-skb", "xdp-drv", "socket"]


def open_receiver(kind: str, lab: Lab, port: int = 9001, **kw):
    """A receiver of ``kind`` (xdp-skb, xdp-drv, socket) on the lab's rx side."""
    with in_netns(lab.rx_ns):
        if kind == "socket":
            from xdpgw.transport.socket import SocketReceiver

            return SocketReceiver(port, **kw)
        from xdpgw.transport.xdp.rx import XdpReceiver

        return XdpReceiver(lab.rx_if, 0, [port], mode=kind.split("-")[1], **kw)


def collect(rx, want: int, timeout: float = 5.0) -> tuple[list[bytes], np.ndarray]:
    """Payloads (and kernel RX stamps) until ``want`` arrived or ``timeout`` passed."""
    got: list[bytes] = []
    stamps: list[np.ndarray] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        b = rx.recv_batch(256, timeout=0.05)
        got += b.payloads()
        stamps.append(b.ts_ns[: b.count].copy())
    return got, np.concatenate(stamps) if stamps else np.zeros(0, np.uint64)


# --- a MoldUDP64 re-request server ------------------------------------------------------------------
class RerequestServer:
    """A tiny MoldUDP64 re-request server on 127.0.0.1 (of namespace ``netns``, or this one): answers each
    20-byte request from its store, one at a time (``serve_one``) or from a thread (``start``)."""

    def __init__(self, store: dict[int, bytes], netns: str | None = None) -> None:
        self.store = store
        with in_netns(netns) if netns else contextlib.nullcontext():
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.addr = self.sock.getsockname()
        self.requests: list = []
        self._thread = None
        self._stop = False

    def serve_one(self, answer: bool = True):
        from xdpgw.protocol.moldudp64 import RetransmitRequest, encode_packet

        data, peer = self.sock.recvfrom(64)
        req = RetransmitRequest.decode(data)
        self.requests.append(req)
        if answer:
            seqs = range(req.first, req.first + req.count)
            self.sock.sendto(encode_packet(req.session, req.first, [self.store[s] for s in seqs]), peer)
        return req

    def start(self) -> RerequestServer:
        import threading

        def serve() -> None:
            self.sock.settimeout(0.1)
            while not self._stop:
                with contextlib.suppress(TimeoutError, OSError):
                    self.serve_one()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()


# --- /metrics as Prometheus reads it --------------------------------------------------------------------
METRICS_PORT = 9464  # inside a lab's own network namespace: always free
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """The samples at ``url``, parsed with prometheus_client's text parser: {(name, sorted labels): value}."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent, as Prometheus reads a counter never incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- `xdpgw` as users run it --------------------------------------------------------------------------
XDPGW = (sys.executable, "-m", "xdpgw")  # this checkout's xdpgw


def xdpgw_cmd(lab_ns: str | None, *args: str, program: Iterable[str] = XDPGW) -> list[str]:
    base = [*program, *args]
    return (["ip", "netns", "exec", lab_ns, *base]) if lab_ns else base


def run_xdpgw(lab_ns: str | None, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(xdpgw_cmd(lab_ns, *args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2 and exactly one `xdpgw: error:` line holding every needle, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("xdpgw: error:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def gone(pid: int) -> bool:
    """No such process, or only a zombie left for init to reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """The pids still running after ``timeout`` (empty when all are gone)."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if not gone(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def status_of(lab: Lab) -> dict:
    """`xdpgw status --json` of the lab's rx interface, read in this process (no interpreter start-up)."""
    from xdpgw.kernel.state import status_iface

    with in_netns(lab.rx_ns):
        return status_iface(lab.rx_if)


class Xdpgw:
    """`xdpgw attach|listen ...` as a child process in the lab's rx namespace, in its own process group.

    Use it as a context manager: on the way out whatever is still running (the parent and any queue
    worker) is killed with SIGKILL and what the killed parent left attached is detached, even when the
    test failed. ``finish()`` waits for a normal end (always with a deadline).
    """

    def __init__(self, lab: Lab, *args: str, env: dict[str, str | None] | None = None,
                 program: Iterable[str] = XDPGW, cwd: Path = ROOT) -> None:
        """``env`` is added to this environment (None unsets a variable); ``program`` is the xdpgw to run."""
        self.lab, self.args = lab, args
        # SIGINT at its default, as from a terminal: a test run started in the background (`pytest &`) has
        # SIGINT ignored, which its children inherit, and Python then never turns Ctrl-C into KeyboardInterrupt
        cmd = xdpgw_cmd(lab.rx_ns, *args, program=("env", "--default-signal=INT", *program))
        environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=cwd, start_new_session=True, env=environ)
        self.out = self.err = ""

    def __enter__(self) -> Xdpgw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int, group: bool = False) -> None:
        """Send ``sig`` to the parent, or to its whole process group like a terminal's Ctrl-C."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        """Wait for the process to end by itself; (exit status, stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"xdpgw {' '.join(self.args)} did not finish within {timeout} s: {self.err[-2000:]}")
        self.out, self.err = self.out + out, self.err + err
        return self.proc.returncode, self.out, self.err

    def kill(self) -> None:
        running = self.proc.poll() is None
        # the parent and its queue workers (they hold its stdout/stderr) before reading to the end
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if running:
            self.proc.kill()
        try:
            out, err = self.proc.communicate(timeout=20)
            self.out, self.err = self.out + out, self.err + err
        except (ValueError, subprocess.TimeoutExpired):  # already read to the end / stuck in the kernel
            pass
        if running and self.args and self.args[0] == "attach" and self.lab.exists():
            run_xdpgw(self.lab.rx_ns, "detach", self.lab.rx_if)  # its state file lives outside the lab

    def read_line(self, pattern: str, timeout: float = 20) -> str:
        """The first stderr line holding ``pattern`` (the process keeps running)."""
        deadline = time.monotonic() + timeout
        stream = self.proc.stderr
        buf = ""
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and not select.select([stream], [], [], 0)[0]:
                self.err += buf
                pytest.fail(f"no stderr line with {pattern!r} from xdpgw {' '.join(self.args)}: {self.err[-2000:]}")
            if select.select([stream], [], [], min(left, 0.2))[0]:
                line = os.read(stream.fileno(), 1 << 16).decode(errors="replace")
                if not line and self.proc.poll() is not None:
                    continue
                buf += line
                for ln in buf.splitlines():
                    if pattern in ln:
                        self.err += buf
                        return ln

    def wait_attached(self, queues: int = 1, timeout: float = 30) -> dict:
        """Until the program is attached and ``queues`` sockets are in (the state file lists them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = status_of(self.lab)
            consumer = st.get("consumer") or {}
            if consumer.get("consumer_alive") and consumer.get("pid") == self.proc.pid \
                    and len(consumer.get("stats") or {}) == queues:
                return st
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"xdpgw {' '.join(self.args)} did not come up: {self.err[-2000:]}")

    def scrape(self) -> Samples:
        """Its /metrics (``--metrics-port``, served in the lab's rx namespace), parsed."""
        port = self.args[self.args.index("--metrics-port") + 1]
        with in_netns(self.lab.rx_ns):
            return scrape(f"http://127.0.0.1:{port}/metrics")

    def wait_metrics(self, cond: Callable[[Samples], bool], what: str, timeout: float = 20) -> Samples:
        """Scrape until ``cond(samples)`` holds (the gateway publishes once a second; a server not up yet
        counts as not yet, a process that ended fails the test)."""
        last: Samples = {}

        def check() -> Samples | None:
            nonlocal last
            try:
                last = self.scrape()
            except (urllib.error.URLError, ConnectionError):
                if self.proc.poll() is not None:
                    self.finish()
                    pytest.fail(f"xdpgw {' '.join(self.args)} ended ({self.proc.returncode}): {self.err[-2000:]}")
                return None
            return last if cond(last) else None

        return wait_for(check, timeout, lambda: f"{what}; last scrape: {last}", interval=0.2)

    def stop(self, timeout: float = 30) -> tuple[dict, str]:
        """Ctrl-C the parent (SIGINT); its --json summary and stderr, after a clean exit."""
        if self.proc.poll() is None:
            self.signal(signal.SIGINT)
        return summary_of(self, timeout), self.err

    def wait_stats(self, cond: Callable[[dict], bool], what: str, timeout: float = 10) -> dict:
        """Until the consumer's published per-queue stats satisfy ``cond`` (they refresh once a second)."""
        def check() -> dict | None:
            stats = (status_of(self.lab).get("consumer") or {}).get("stats") or {}
            return stats if stats and cond(stats) else None

        return wait_for(check, timeout, what)


def attach(lab: Lab, *args: str, queues: int = 1, env: dict[str, str] | None = None) -> Xdpgw:
    """`xdpgw attach <rx veth> --quiet ...`, returned once its ``queues`` consumers are up."""
    gw = Xdpgw(lab, "attach", lab.rx_if, "--quiet", *args, env=env)
    try:
        gw.wait_attached(queues)
    except BaseException:
        gw.kill()
        raise
    return gw


def summary_of(gw: Xdpgw, timeout: float = 30) -> dict:
    """The JSON summary of a gateway that ends by itself (--count/--duration), after a clean exit."""
    rc, out, err = gw.finish(timeout)
    assert rc == 0, err[-3000:]
    return json.loads(out)


def gateway_args(lab: Lab, transport: str, *args: str) -> list[str]:
    """`listen --port 9001` for the socket transport, `attach <rx veth> --mode drv|skb` for XDP; then ``args``."""
    if transport == "socket":
        return ["listen", "--port", "9001", *args]
    return ["attach", lab.rx_if, "--mode", transport, *args]


def serve(lab: Lab, transport: str, *args: str, timeout: float = 30) -> Xdpgw:
    """A quiet gateway (``transport``: socket, drv or skb) with --json and /metrics on METRICS_PORT, stopped by
    ``stop()`` (or after 120 s); returned once /metrics answers (its receivers are open by then)."""
    gw = Xdpgw(lab, *gateway_args(lab, transport, "--quiet", "--json", "--duration", "120",
                                  "--metrics-port", str(METRICS_PORT), *args))
    try:
        gw.wait_metrics(lambda m: True, "/metrics to answer", timeout)
    except BaseException:
        gw.kill()
        raise
    return gw


class ReplayReceiver:
    """The tests' in-memory receivers: a subclass sets ``buf``, ``offs``, ``lens``, ``ts`` (and ``dports``,
    and ``c_arrays``, C pointers to the five) and fills them in ``recv_raw``; the rest of the Receiver is here."""

    transport = "replay"

    def batch_of(self, n: int):
        from xdpgw.batch import Batch

        dports = getattr(self, "dports", None)
        return Batch(self.buf, self.offs[:n], self.lens[:n], self.ts[:n], n, None if dports is None else dports[:n])

    def recv_batch(self, max_packets: int = 256, timeout: float | None = 0.0):
        return self.batch_of(self.recv_raw(max_packets, timeout))

    def stats(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {"transport": "replay"}
