"""The launcher-facing interface: load_and_exec in the child, start_sentry in the parent.
Checks the Sentry's own confinement and that the program never outlives its Sentry."""

from __future__ import annotations

import os
import signal
import time

import pytest

from _helpers_sentry import build_programs, env, make_plan

from sandboxctl.sentry.confine import drop_capabilities
from sandboxctl.sentry.runs import new_run
from sandboxctl.sentry.seccomp_child import load_and_exec
from sandboxctl.sentry.supervisor import start_sentry


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    return build_programs(tmp_path_factory.mktemp("sentry-progs2"))


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOXCTL_STATE_DIR", str(tmp_path / "state"))


def _spawn(plan, argv, stdin_fd, stdout_fd):
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(stdin_fd, 0)
            os.dup2(stdout_fd, 1)
            drop_capabilities()
            import ctypes
            ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)
            load_and_exec(plan, argv, env(), w)
        finally:
            os._exit(126)
    os.close(w)
    fdnum = int(os.read(r, 32))
    os.close(r)
    return pid, fdnum


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _readline(fd: int, timeout: float = 5.0) -> str:
    import select

    buf = b""
    while not buf.endswith(b"\n"):
        if not select.select([fd], [], [], timeout)[0]:
            raise TimeoutError(buf)
        chunk = os.read(fd, 100)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def test_sentry_is_confined_and_listener_not_in_program(progs):
    plan = make_plan(release="3.3.3-conf")
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    pid, fdnum = _spawn(plan, [progs["wait"]], in_r, out_w)
    run = new_run(plan, [progs["wait"]])
    h = start_sentry(plan, pid, fdnum, run)
    os.close(in_r)
    os.close(out_w)
    try:
        assert _readline(out_r) == "3.3.3-conf\n"
        st = _status(h.pid)
        assert st["CapEff"] == "0000000000000000" and st["CapPrm"] == "0000000000000000"
        assert st["CapBnd"] == "0000000000000000"
        assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1"
        # the listener did not survive the exec (fds the test runner leaks are the
        # launcher's to close; here only the Sentry's own are checked)
        fds = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
        assert fdnum not in fds
        assert not any("seccomp" in t for t in fds.values())
        # the Sentry holds the listener
        sfds = [os.readlink(f"/proc/{h.pid}/fd/{n}") for n in os.listdir(f"/proc/{h.pid}/fd")]
        assert "anon_inode:seccomp notify" in sfds
    finally:
        os.close(in_w)
    assert _readline(out_r) == "3.3.3-conf\n"
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert h.wait(timeout=5) is not None
    assert h.failed() is None
    os.close(out_r)


def test_program_dies_with_its_sentry(progs):
    plan = make_plan()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    pid, fdnum = _spawn(plan, [progs["wait"]], in_r, out_w)
    run = new_run(plan, [progs["wait"]])
    h = start_sentry(plan, pid, fdnum, run)
    os.close(in_r)
    os.close(out_w)
    assert _readline(out_r).strip() == "4.4.0-sentry-test"
    os.kill(h.pid, signal.SIGKILL)
    t0 = time.monotonic()
    _, status = os.waitpid(pid, 0)  # must not hang: the watcher kills the program
    assert time.monotonic() - t0 < 5
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    h.wait(timeout=5)
    assert "SIGKILL" in (h.failed() or "")
    os.close(in_w)
    os.close(out_r)


def test_sentry_failure_kills_sandbox_and_says_why(progs, monkeypatch):
    # A handler that raises: the Sentry must kill the program and record the reason.
    from sandboxctl.sentry import handlers_uname

    def broken(ctx, call, mem):
        raise RuntimeError("handler exploded")

    monkeypatch.setattr(handlers_uname, "handle_uname", broken)
    plan = make_plan()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    pid, fdnum = _spawn(plan, [progs["wait"]], in_r, out_w)
    run = new_run(plan, [progs["wait"]])
    h = start_sentry(plan, pid, fdnum, run)
    os.close(in_r)
    os.close(out_w)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    h.wait(timeout=5)
    assert "handler exploded" in (h.failed() or "")
    os.close(in_w)
    os.close(out_r)


def test_sentry_filter_is_enforced(tmp_path, monkeypatch):
    import sys

    from _helpers_sentry import rule, with_escape_handlers

    from sandboxctl.sentry.direct import run_direct

    monkeypatch.setenv("SANDBOXCTL_STATE_DIR", str(tmp_path / "s"))
    with_escape_handlers(monkeypatch)
    # after the Sentry died, trapped calls fail (ENOSYS) and the watcher kills the program
    code = ("import os, time\nprint(os.getppid(), flush=True)\nos.getpgrp()\ntime.sleep(10)\n"
            "print('not reached')")
    plan = make_plan(extra=(rule("getppid", 110, "emulate", handler="try_socket"),
                            rule("getpgrp", 111, "emulate", handler="try_exec")))
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        res = run_direct(plan, [sys.executable, "-S", "-c", code], env(), stdout=fh.fileno())
    # socket() inside the Sentry: refused with EPERM (101 = 100 + EPERM)
    # execve inside the Sentry: the Sentry is killed (SIGSYS), and the program with it
    assert out.read_text().split() == ["101"]
    assert res.signal == signal.SIGKILL
    assert "SIGSYS" in (res.sentry_failed or ""), res.sentry_failed


def test_no_descriptor_leak_in_the_supervisor(tmp_path, monkeypatch):
    from sandboxctl.sentry.direct import run_direct

    monkeypatch.setenv("SANDBOXCTL_STATE_DIR", str(tmp_path / "s"))

    def count() -> int:
        return len(os.listdir("/proc/self/fd"))

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        run_direct(make_plan(), ["true"], env(), stdout=devnull)
        before = count()
        for _ in range(3):
            res = run_direct(make_plan(), ["true"], env(), stdout=devnull)
            assert res.exit_code == 0
        assert count() == before
    finally:
        os.close(devnull)


def test_forked_runtime_processes_never_collect_the_parents_garbage():
    """fork_flushed (the Sentry's, the Gofer's and the keeper's fork): in the child the
    inherited heap is frozen, so a finalizer of the parent's (here one that would make a
    call a confined child may not) never runs there, even on a full collection."""
    import gc

    from sandboxctl.sentry.forking import fork_flushed

    class Bomb:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            os.write(w, b"FINALIZED-IN-CHILD" if os.getpid() != parent else b"")

    parent = os.getpid()
    r, w = os.pipe()
    gc.disable()
    try:
        Bomb()  # garbage now, in the parent's heap
        pid = fork_flushed()
        if pid == 0:
            gc.enable()
            gc.collect()
            os._exit(0)
        os.waitpid(pid, 0)
    finally:
        gc.enable()
        gc.collect()  # the parent's own copy goes here (writes nothing)
    os.close(w)
    assert os.read(r, 100) == b""
    os.close(r)
