"""The ptrace platform: real traced processes, the host filter with SECCOMP_RET_TRACE, and
the Sentry's own dispatcher and handlers (the same code seccomp-notify runs)."""

from __future__ import annotations

import errno
import os
import signal
import sys

import pytest

from _helpers_ptrace import make_plan, nr, run_traced

PY = sys.executable


def test_exit_code_and_output(capfd):
    res, _ = run_traced(["sh", "-c", "echo hello; exit 7"], make_plan())
    assert res.exit_code == 7 and res.signal is None
    assert "hello" in capfd.readouterr().out


def test_killed_by_signal_is_reported():
    res, _ = run_traced(["sh", "-c", "kill -TERM $$"], make_plan())
    assert res.exit_code is None and res.signal == signal.SIGTERM


def test_emulated_uname_in_children_after_fork_and_exec(capfd):
    # sh forks, each child execs uname: every process of the tree is traced.
    res, tracer = run_traced(["sh", "-c", "uname -n; (uname -n); sh -c 'uname -r'"],
                             make_plan(emulate={"uname": "uname"}))
    out = capfd.readouterr().out.split()
    host = os.uname()
    assert res.exit_code == 0
    assert out == ["sandbox", "sandbox", "4.4.0"], out
    assert host.nodename != "sandbox"
    assert res.calls >= 3


def test_denied_call_returns_errno_and_is_an_event(capfd):
    events = []
    res, _ = run_traced([PY, "-c", "import os\ntry:\n os.uname()\nexcept OSError as e:\n"
                         " print('errno', e.errno)"],
                        make_plan(deny={"uname": errno.EACCES}), events=events)
    assert res.exit_code == 0
    assert f"errno {errno.EACCES}" in capfd.readouterr().out
    ev = [e for e in events if e["syscall"] == "uname"]
    assert ev and ev[0]["action"] == "deny" and ev[0]["errno"] == errno.EACCES


def test_kill_rule_kills_the_program():
    # a child is killed, its shell goes on; the program itself is killed: the run ends
    res, _ = run_traced(["sh", "-c", "uname; echo survived; exec uname"],
                        make_plan(kill=("uname",)))
    assert res.signal == signal.SIGKILL
    assert res.killed_reason and "uname" in res.killed_reason


def test_untrapped_calls_are_not_stopped():
    # Without --strace only trapped calls stop: a busy program causes no seccomp stops.
    res, _ = run_traced([PY, "-c", "import os\nfor _ in range(2000): os.getpid()"],
                        make_plan(emulate={"uname": "uname"}))
    assert res.exit_code == 0 and res.calls == 1  # its execve, which the Plan observes


@pytest.mark.parametrize("off_loop", [True, False])
def test_blocking_handler_does_not_stall_other_calls(capfd, off_loop):
    # uname's handler waits until the program's other thread has made a getppid call
    # (as a FIFO open waits for its writer). Off the loop thread it completes; on the
    # loop thread nothing else can be served and it gives up after its timeout.
    import threading

    from sandboxctl.sentry.call import Continue, Errno, Return

    seen = threading.Event()
    uname_nr, getppid_nr = nr("uname"), nr("getppid")

    def dispatch(call, mem):
        if call.nr == getppid_nr:
            seen.set()
            return Return(4242)
        if call.nr == uname_nr:
            return Return(0) if seen.wait(1.5) else Errno(errno.ETIMEDOUT)
        return Continue()

    code = ("import os, threading, time\n"
            "r = []\n"
            "def f():\n"
            "    try: os.uname(); r.append('ok')\n"
            "    except OSError as e: r.append(e.errno)\n"
            "t = threading.Thread(target=f); t.start(); time.sleep(0.2)\n"
            "print(os.getppid()); t.join(); print(r[0])\n")
    res, _ = run_traced([PY, "-c", code], make_plan(emulate={"uname": "uname",
                                                             "getppid": "getppid"}),
                        dispatch=dispatch,
                        may_block=(lambda n: n == uname_nr) if off_loop else None)
    assert res.exit_code == 0
    out = capfd.readouterr().out.split()
    assert out == (["4242", "ok"] if off_loop else ["4242", str(errno.ETIMEDOUT)])
