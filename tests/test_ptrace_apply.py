"""`sandboxctl apply --platform ptrace` and `--strace`, end to end (namespaces, Gofer,
the built-in default profile). These are the commands docs/platforms.md shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from _helpers_platform import PLATFORMS

SANDBOXCTL = [sys.executable, "-m", "sandboxctl.cli"]


def apply(*args: str, state) -> subprocess.CompletedProcess:
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(state))
    return subprocess.run([*SANDBOXCTL, "apply", *args], capture_output=True, text=True,
                          env=env, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def _last_run(state):
    runs = sorted((state / "runs").iterdir())
    return runs[-1]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_apply_uname_and_exit_code(platform, state):
    r = apply("--platform", platform, "default", "--", "sh", "-c", "uname -n; exit 3",
              state=state)
    assert r.returncode == 3, r.stderr
    assert r.stdout.strip() == "sandbox"
    status = json.loads((_last_run(state) / "status.json").read_text())
    assert status["platform"] == platform


def test_apply_strace_cat_etc_hostname_on_ptrace(state):
    # docs/platforms.md: the acceptance example
    r = apply("--platform", "ptrace", "--strace=-", "default", "--", "cat", "/etc/hostname",
              state=state)
    assert r.returncode == 0, r.stderr
    size = len(r.stdout.encode())
    m = re.search(r"^\[pid \d+\] openat\(AT_FDCWD, '/etc/hostname', O_RDONLY\) = (\d+) "
                  r"<[\d.]+>", r.stderr, re.M)
    assert m, r.stderr
    fd = m.group(1)
    assert re.search(rf"^\[pid \d+\] (read|copy_file_range)\({fd}, .*\) = {size} <", r.stderr,
                     re.M), r.stderr


def test_apply_strace_log_and_narrowing_on_notify(state):
    r = apply("--strace", "--strace-syscalls", "openat,uname", "default", "--", "sh", "-c",
              "cat /etc/hostname; uname -n", state=state)
    assert r.returncode == 0, r.stderr
    log = (_last_run(state) / "strace.log").read_text()
    assert "openat(AT_FDCWD, '/etc/hostname', O_RDONLY)" in log
    assert re.search(r"uname\(0x[0-9a-f]+\) = 0 <[\d.]+> \[sentry\]", log)
    assert all(re.search(r"\] (openat|uname)\(", ln) for ln in log.splitlines())


def test_apply_help_explains_strace_per_platform(state):
    r = subprocess.run([*SANDBOXCTL, "apply", "--help"], capture_output=True, text=True)
    assert "--platform" in r.stdout and "--strace-syscalls" in r.stdout
    assert "only the calls that reach the Sentry" in " ".join(r.stdout.split())


def test_platform_from_the_profile(state, tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    prof = d / "pt.yaml"
    prof.write_text("apiVersion: sandboxctl/v1\nkind: SandboxProfile\nmetadata: {name: pt}\n"
                    "extends: default\nplatform: ptrace\n")
    r = apply(str(prof), "--", "uname", "-n", state=state)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "sandbox"
    assert json.loads((_last_run(state) / "status.json").read_text())["platform"] == "ptrace"
