"""Death notice, on the real program in a veth lab: a consumer process that dies (kill -9, a core-dumping
signal, exit without close) hands its queue's feed to the kernel at once; a new consumer process takes
the queue back; a thread exiting is no death; a consumer in its own pid namespace is recognised too.

Consumers run as forked worker processes under one shared XdpProgram (the multi-queue layout), so the
test process can read the program's counters and death flags after the consumer is gone.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import (
    ROOT,
    drain_socket,
    feed_frames,
    kernel_udp_socket,
    require,
    run_xdpgw,
    send_frames,
    wait_for,
)
from xdpgw.tools.lab import in_netns

pytestmark = pytest.mark.xdp


def _consumer(rx_if: str, prog, conn) -> None:
    """A forked worker: opens queue 0 under the shared program and serves commands from ``conn``."""
    import faulthandler
    import resource

    from xdpgw.transport.xdp.rx import XdpReceiver

    faulthandler.disable()  # a fatal signal takes its default action (no Python handler first)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    rx = XdpReceiver(rx_if, 0, program=prog)
    conn.send("ready")
    got: list[bytes] = []
    while True:
        got += rx.recv_batch(256, timeout=0.01).payloads()
        if not conn.poll():
            continue
        cmd = conn.recv()
        if cmd == "report":
            conn.send(got)
        elif cmd == "exit":
            os._exit(3)  # exit_group() with the socket still open and registered
        elif cmd == "close":
            rx.close()
            conn.send("closed")
            return


def start_consumer(lab, prog) -> tuple[mp.Process, object]:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    with in_netns(lab.rx_ns):  # the child inherits this thread's network namespace
        p = ctx.Process(target=_consumer, args=(lab.rx_if, prog, child), daemon=True)
        p.start()
    if not parent.poll(20):
        p.kill()
        pytest.fail("consumer process did not come up")
    assert parent.recv() == "ready"
    child.close()  # the parent's copy: should the consumer die, reads see EOF instead of waiting
    return p, parent


def answer(conn, timeout: float = 10.0) -> object:
    """The consumer's next message; fails (never blocks forever) if it died or hangs."""
    if not conn.poll(timeout):
        pytest.fail(f"the consumer process did not answer within {timeout} s")
    return conn.recv()


def received(conn, want: int, timeout: float = 5.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        conn.send("report")
        got = answer(conn)
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def shared_program(lab):
    from xdpgw.kernel.program import XdpProgram

    with in_netns(lab.rx_ns):
        prog = XdpProgram(lab.rx_if, [9001], mode="drv").attach()
    assert prog.death_notice, f"no death notice hook could be attached: {prog.notes}"
    return prog


KILLS = {
    "kill -9": lambda p, conn: os.kill(p.pid, signal.SIGKILL),
    "SIGABRT (core dump signal)": lambda p, conn: os.kill(p.pid, signal.SIGABRT),
    "exit without close": lambda p, conn: conn.send("exit"),
}


@pytest.mark.parametrize("how", list(KILLS))
def test_dead_consumer_hands_its_feed_to_the_kernel_and_a_new_one_takes_it_back(lab, how):
    ksock = kernel_udp_socket(lab, 9001)
    prog = shared_program(lab)
    workers = []
    try:
        p, conn = start_consumer(lab, prog)
        workers.append(p)
        send_frames(lab, feed_frames(lab, [b"before"]))
        assert received(conn, 1) == [b"before"]
        KILLS[how](p, conn)
        p.join(10)
        assert p.exitcode is not None, "consumer did not die"
        assert prog.dead_queues() == [0]

        after = [b"after-%d" % i for i in range(50)]
        send_frames(lab, feed_frames(lab, after))
        assert drain_socket(ksock, len(after)) == after, "feed black-holed after the consumer died"
        c = prog.counters()[0]
        assert (c["redirected"], c["consumer_gone"]) == (1, len(after)), c

        # A new worker process takes the queue back: registered, alive, redirected again.
        p2, conn2 = start_consumer(lab, prog)
        workers.append(p2)
        assert prog.dead_queues() == []
        again = [b"again-%d" % i for i in range(20)]
        send_frames(lab, feed_frames(lab, again))
        assert received(conn2, len(again)) == again
        conn2.send("close")  # a normal close is no death
        assert answer(conn2) == "closed"
        p2.join(10)
        assert p2.exitcode == 0 and prog.dead_queues() == []
        c = prog.counters()[0]
        assert (c["redirected"], c["consumer_gone"]) == (1 + len(again), len(after)), c
        assert drain_socket(ksock, 1, timeout=0.3) == [], "the new consumer's packets went to the kernel too"
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
            w.join(5)
        prog.close()
        ksock.close()


def test_kill_9_is_noticed_in_the_killer(lab, monkeypatch):
    """With only the sender-side hook (signal_generate), kill -9 is noticed without the victim's help."""
    import xdpgw.kernel.liveness as liveness

    monkeypatch.setattr(liveness, "DEATH_HOOKS", tuple(h for h in liveness.DEATH_HOOKS if h[1] == "signal_generate"))
    prog = shared_program(lab)
    p = None
    try:
        assert prog.death_notice == ("raw_tracepoint:signal_generate",)
        p, conn = start_consumer(lab, prog)
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert prog.dead_queues() == [0]
        send_frames(lab, feed_frames(lab, [b"x"] * 5))
        wait_for(lambda: prog.counters()[0]["consumer_gone"] >= 5, 5, "5 packets counted consumer_gone")
        assert prog.counters()[0]["consumer_gone"] == 5
    finally:
        if p is not None and p.is_alive():
            p.kill()
        prog.close()


def test_btf_member_offsets():
    """The sender-side hook reads task_struct.tgid at the offset the running kernel's BTF gives."""
    from xdpgw._native._bpfobj import lib

    tgid, pid = lib.xgw_btf_member_offset(b"task_struct", b"tgid"), lib.xgw_btf_member_offset(b"task_struct", b"pid")
    require(tgid != -errno.ENOENT or os.path.exists("/sys/kernel/btf/vmlinux"),
            "no kernel BTF here: the victim-side hooks carry the death notice alone")
    assert tgid == pid + 4 > 4  # pid_t pid; pid_t tgid;
    assert lib.xgw_btf_member_offset(b"task_struct", b"no_such_member") == -errno.ENOENT
    assert lib.xgw_btf_member_offset(b"no_such_struct", b"tgid") == -errno.ENOENT


def test_a_thread_exiting_is_no_death(lab):
    from xdpgw.transport.xdp.rx import XdpReceiver

    with kernel_udp_socket(lab, 9001) as ksock:
        with in_netns(lab.rx_ns):
            rx = XdpReceiver(lab.rx_if, 0, [9001], mode="drv")
        with rx:
            assert rx.program.death_notice
            t = threading.Thread(target=lambda: None)
            t.start()
            t.join()
            sent = [b"still-%d" % i for i in range(30)]
            send_frames(lab, feed_frames(lab, sent))
            got: list[bytes] = []
            deadline = time.monotonic() + 5
            while len(got) < len(sent) and time.monotonic() < deadline:
                got += rx.recv_batch(256, timeout=0.05).payloads()
            c = rx.program.counters()[0]
            assert got == sent
            assert rx.program.dead_queues() == [] and c["consumer_gone"] == 0 and c["redirected"] == len(sent), c
        assert drain_socket(ksock, 1, timeout=0.3) == []


CONSUMER_IN_PIDNS = """
import json, sys, time
from xdpgw.transport.xdp.rx import XdpReceiver
rx = XdpReceiver(sys.argv[1], 0, [9001], mode="drv")
status = open("/proc/self/status").read()
nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
print(json.dumps({"host_pid": int(nspid[0]), "pids": nspid, "hooks": rx.program.death_notice}), flush=True)
while True:
    rx.recv_batch(256, timeout=0.05)
"""


def test_consumer_in_its_own_pid_namespace(lab):
    """getpid() there is 1, not the root-namespace tgid: the probes translate pids into its namespace."""
    proc = subprocess.Popen(["ip", "netns", "exec", lab.rx_ns, "unshare", "--pid", "--fork", "--kill-child",
                             sys.executable, "-c", CONSUMER_IN_PIDNS, lab.rx_if],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    ksock = kernel_udp_socket(lab, 9001)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)  # a line, or EOF if it died; never forever
        line = proc.stdout.readline() if ready else ""
        assert line, "the consumer in its pid namespace did not start"
        info = json.loads(line)
        assert info["pids"][-1] == "1" and len(info["pids"]) == 2 and info["hooks"], info
        os.kill(info["host_pid"], signal.SIGKILL)
        proc.wait(10)
        sent = [b"pidns-%d" % i for i in range(20)]
        send_frames(lab, feed_frames(lab, sent))
        assert drain_socket(ksock, len(sent)) == sent
        st = json.loads(run_xdpgw(lab.rx_ns, "status", lab.rx_if, "--json").stdout)
        assert st["bpf_counters"]["consumer_gone"] == len(sent), st["bpf_counters"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        ksock.close()


def test_death_notice_off_leaves_a_dead_consumer_to_the_kernel_socket_close(lab, monkeypatch):
    """XDPGW_DEATH_NOTICE=0: no hook, a note that says what that costs; after kill -9 the program is never
    told (no dead queue, nothing counted consumer_gone), and the feed reaches the kernel again once the
    kernel has closed the dead process's socket."""
    monkeypatch.setenv("XDPGW_DEATH_NOTICE", "0")
    ksock = kernel_udp_socket(lab, 9001)
    from xdpgw.kernel.program import XdpProgram

    with in_netns(lab.rx_ns):
        prog = XdpProgram(lab.rx_if, [9001], mode="drv").attach()
    p = None
    try:
        assert not prog.death_notice
        assert any("death notice off (XDPGW_DEATH_NOTICE=0)" in n for n in prog.notes), prog.notes
        p, conn = start_consumer(lab, prog)
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert p.exitcode is not None and prog.dead_queues() == []

        def reaches_the_kernel() -> bool:
            send_frames(lab, feed_frames(lab, [b"after"]))
            return drain_socket(ksock, 1, timeout=0.1) == [b"after"]

        wait_for(reaches_the_kernel, 10, "the feed to reach the kernel after the dead socket closed")
        c = prog.counters()[0]
        assert c["consumer_gone"] == 0 and c["no_socket"] >= 1, c
    finally:
        if p is not None and p.is_alive():
            p.kill()
        prog.close()
        ksock.close()
