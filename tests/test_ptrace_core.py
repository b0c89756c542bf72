"""The ptrace platform: real traced processes, the host filter with SECCOMP_RET_TRACE, and
the Sentry's own dispatcher and handlers (the same code seccomp-notify runs)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from _helpers_ptrace import make_plan, run_traced

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
