"""The program's filter as BPF from the Plan cache (engine.cache.compile_cached_with_filter):
what libseccomp generates for the Plan, loaded by the program with one seccomp(2) call.
A Plan .json has none, and the program builds the filter itself; both must enforce the
same thing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sandboxctl.cli.cmd_apply import load_plan_and_filter
from sandboxctl.engine.filter import export_bpf
from sandboxctl.sentry.seccomp_child import load_bpf

PROBE = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    r = libc.syscall(nr, *args)
    return errno.errorcode.get(ctypes.get_errno(), "?") if r < 0 else "ok"
out = []
out.append("unshare=" + call(272, 0x10000000))               # CLONE_NEWUSER
out.append("mount=" + call(165, b"none", b"/tmp", b"tmpfs", 0, None))
out.append("io_uring_setup=" + call(425, 1, None))
out.append("keyctl=" + call(250, 0))
out.append("getpid=" + ("ok" if os.getpid() > 0 else "?"))
status = open("/proc/self/status").read()
out.append("seccomp=" + [l.split()[1] for l in status.splitlines() if l.startswith("Seccomp:")][0])
out.append("fds=" + ",".join(sorted(os.listdir("/proc/self/fd"))))
print(" ".join(out))
"""


def _env(tmp_path):
    return dict(os.environ, SANDBOXCTL_CACHE_DIR=str(tmp_path / "cache"),
                SANDBOXCTL_STATE_DIR=str(tmp_path / "state"))


def test_cached_filter_is_what_libseccomp_generates(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOXCTL_CACHE_DIR", str(tmp_path / "cache"))
    plan, first = load_plan_and_filter("default")  # compiled now: a cache miss
    assert first and len(first) % 8 == 0
    assert first == export_bpf(plan, "seccomp-notify")
    again, second = load_plan_and_filter("default")  # from the cache
    assert again == plan and second == first
    # a Plan .json carries no filter: the program builds it
    pj = tmp_path / "plan.json"
    pj.write_text(plan.to_json())
    assert load_plan_and_filter(str(pj))[1] is None


def test_a_damaged_cached_filter_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOXCTL_CACHE_DIR", str(tmp_path / "cache"))
    plan, good = load_plan_and_filter("default")
    entries = list((tmp_path / "cache").glob("*.json"))
    assert len(entries) == 1
    for bad in ("zz", "00" * 7, 12):
        data = json.loads(entries[0].read_text())
        data["bpf_notify"] = bad
        entries[0].write_text(json.dumps(data))
        again, code = load_plan_and_filter("default")  # recompiled, entry rewritten
        assert again == plan and code == good


def test_load_bpf_refuses_what_is_not_a_program():
    for bad in (b"", b"1234567"):
        with pytest.raises(ValueError):
            load_bpf(bad, 0)


def test_the_cached_filter_and_the_built_one_enforce_the_same(tmp_path):
    """`apply default` (the filter from the cache, loaded as BPF) and `apply plan.json`
    (no BPF: the program builds the filter with libseccomp) refuse and allow the same
    calls and leave the program the same descriptors."""
    env = _env(tmp_path)
    sbx = [sys.executable.replace("python3", "sandboxctl").replace("/python", "/sandboxctl")]
    if not os.access(sbx[0], os.X_OK):
        sbx = ["sandboxctl"]
    plan_json = tmp_path / "plan.json"
    out = subprocess.run([*sbx, "compile", "default"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    plan_json.write_text(out.stdout)
    results = []
    for ref in ("default", str(plan_json)):
        r = subprocess.run([*sbx, "apply", "--tty", "never", ref, "--", "python3", "-c", PROBE],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        results.append(r.stdout.strip())
    assert results[0] == results[1], results
    fields = dict(f.split("=", 1) for f in results[0].split())
    assert fields["unshare"] == "EPERM" and fields["mount"] == "EPERM"
    assert fields["keyctl"] != "ok" and fields["io_uring_setup"] != "ok"
    assert fields["getpid"] == "ok" and fields["seccomp"] == "2"
    assert fields["fds"] == "0,1,2,3"  # stdio and the listdir's own: no listener
