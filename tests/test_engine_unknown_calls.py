"""Syscall numbers newer than the engine's table are refused (ENOSYS) in default-allow
profiles, in the kernel filter and as events, and explain says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sandboxctl.engine import syscalls
from sandboxctl.engine.compile import compile_builtin

SANDBOXCTL = [sys.executable, "-m", "sandboxctl.cli"]
PROBE = ("import ctypes; l = ctypes.CDLL(None, use_errno=True); "
         "r = l.syscall(467, 0, 0, 0, 0); print(r, ctypes.get_errno()); "
         "print('getpid', l.syscall(39) > 0)")


def test_default_profile_refuses_every_unknown_number():
    plan = compile_builtin("default")
    unknown = {r.nr: r for r in plan.seccomp.rules if r.name.startswith("syscall_")}
    assert set(unknown) == set(range(syscalls.max_known() + 1, syscalls.NATIVE_LIMIT))
    assert all(r.action == "deny" and r.errno == 38 and r.trap for r in unknown.values())
    assert syscalls.max_known() >= 450  # the table really comes from libseccomp


def test_unknown_call_fails_with_enosys_in_a_sandbox_and_is_explained(tmp_path):
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run(SANDBOXCTL + ["apply", "--no-cache", "default", "--", "python3", "-c", PROBE],
                         capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "-1 38"  # ENOSYS, not run
    assert lines[1] == "getpid True"  # known calls still allowed
    ex = subprocess.run(SANDBOXCTL + ["explain", "--json"], capture_output=True, text=True,
                        env=env, timeout=60)
    assert ex.returncode == 0, ex.stderr
    data = json.loads(ex.stdout)
    text = json.dumps(data)
    assert "syscall_467" in text and "newer than the syscall table" in text
