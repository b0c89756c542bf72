"""Acceptance of the Sentry half through `sandboxctl apply` (real namespaces, the
launcher's work): uname and friends from the profile, refusals with the profile's errno
and rule line, kill rules, fork/pthreads/exec, the Sentry's own confinement."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers_sentry import build_programs, sandbox_visible_dir

SANDBOXCTL = str(Path(sys.executable).parent / "sandboxctl")

PROFILE = """\
apiVersion: sandboxctl/v1
kind: SandboxProfile
metadata: {name: sentry-accept}
extends: default
uname: {release: 5.15.0-accept, hostname: accept-box}
syscalls:
  deny:
    - unshare
    - {name: mount, errno: EACCES}
    - {name: ptrace, action: kill}
"""
LINE = {name: i + 1 for i, l in enumerate(PROFILE.splitlines())
        for name in ("unshare", "mount", "ptrace") if f"- {name}" in l or f"name: {name}" in l}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with sandbox_visible_dir("sandboxctl-sentry-test-") as d:
        progs = build_programs(d)
        prof = d / "accept.yaml"
        prof.write_text(PROFILE)
        state = tmp_path_factory.mktemp("state")
        yield {"progs": progs, "profile": str(prof), "state": state}


def apply(env, *cmd: str, extra: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
    e = dict(os.environ, SANDBOXCTL_STATE_DIR=str(env["state"]))
    return subprocess.run([SANDBOXCTL, "apply", *extra, env["profile"], "--", *cmd],
                          capture_output=True, text=True, env=e, timeout=60,
                          stdin=subprocess.DEVNULL, **kw)


def latest_run(env) -> Path:
    runs = sorted((Path(env["state"]) / "runs").iterdir())
    return runs[-1]


def run_events(d: Path) -> list[dict]:
    return [json.loads(l) for l in (d / "events.jsonl").read_text().splitlines() if l]


def test_uname_proc_version_hostname(env):
    p = apply(env, "sh", "-c", "uname -a; cat /proc/version; hostname; cat /proc/sys/kernel/osrelease")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("Linux accept-box 5.15.0-accept ")
    assert "5.15.0-accept" in lines[1] and os.uname().release not in lines[1]
    assert lines[2] == "accept-box"
    assert lines[3] == "5.15.0-accept"


def test_denied_calls_errno_and_rule_line(env):
    p = apply(env, "sh", "-c", f"unshare -U true; echo rc=$?; {env['progs']['mount']}")
    assert "unshare failed: Operation not permitted" in p.stderr
    assert "rc=1" in p.stdout and "mount=-1 errno=13" in p.stdout
    d = latest_run(env)
    den = [e for e in run_events(d) if e["kind"] == "syscall"]
    assert [(e["syscall"], e["errno_name"], e["rule"]["line"]) for e in den] == [
        ("unshare", "EPERM", LINE["unshare"]), ("mount", "EACCES", LINE["mount"])]
    assert den[0]["decoded"] == "unshare(CLONE_NEWUSER)"
    assert den[0]["rule"]["file"] == env["profile"]


def test_kill_rule_and_run_says_which_call(env):
    p = apply(env, env["progs"]["ptrace"])
    assert p.returncode == 137 and "before" in p.stdout and "survived" not in p.stdout
    st = json.loads((latest_run(env) / "status.json").read_text())
    assert st["killed_by"]["syscall"] == "ptrace" and st["killed_by"]["rule"]["line"] == LINE["ptrace"]
    e = dict(os.environ, SANDBOXCTL_STATE_DIR=str(env["state"]))
    ps = subprocess.run([SANDBOXCTL, "ps", "-n", "1"], capture_output=True, text=True, env=e)
    assert "killed (ptrace)" in ps.stdout


def test_fork_pthreads_exec_in_sandbox(env):
    p = apply(env, env["progs"]["family"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "main release=5.15.0-accept node=accept-box", "child release=5.15.0-accept",
        "thread release=5.15.0-accept unshare=-1 errno=1", "5.15.0-accept"]
    evs = run_events(latest_run(env))
    assert [e["path"] for e in evs if e["kind"] == "exec"] == [env["progs"]["family"], "/bin/uname"]


def test_command_not_found(env):
    p = apply(env, "no-such-cmd-4711")
    assert p.returncode == 127
    assert "no-such-cmd-4711: command not found in the sandbox" in p.stderr


def _descendants(pid: int) -> list[int]:
    out = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for t in os.listdir(f"/proc/{p}/task"):
            try:
                kids = open(f"/proc/{p}/task/{t}/children").read().split()
            except OSError:
                continue
            for k in kids:
                out.append(int(k))
                todo.append(int(k))
    return out


def test_sentry_confined_in_real_run_and_debug_log(env):
    e = dict(os.environ, SANDBOXCTL_STATE_DIR=str(env["state"]))
    proc = subprocess.Popen([SANDBOXCTL, "apply", "--debug", env["profile"], "--",
                             env["progs"]["wait"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=e)
    try:
        assert proc.stdout.readline() == b"5.15.0-accept\n"
        sentry = None
        for pid in _descendants(proc.pid):
            try:
                fds = [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")]
            except OSError:
                continue
            if "anon_inode:seccomp notify" in fds:
                sentry = pid
        assert sentry is not None
        st = dict(l.split(":", 1) for l in open(f"/proc/{sentry}/status"))
        assert st["CapEff"].strip() == "0000000000000000"
        assert st["Seccomp"].strip() == "2" and st["NoNewPrivs"].strip() == "1"
    finally:
        proc.stdin.close()
    assert proc.stdout.readline() == b"5.15.0-accept\n"
    assert proc.wait(timeout=30) == 0
    proc.stdout.close()
    proc.stderr.close()
    log = (latest_run(env) / "sentry.log").read_text()
    assert "confined; serving" in log and "uname" in log


@pytest.mark.rootless
def test_rootless_same_behaviour(env):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    with sandbox_visible_dir("sandboxctl-rootless-state-", 0o777) as state:
        e = dict(os.environ, SANDBOXCTL_STATE_DIR=str(state / "s"), HOME=str(state))
        p = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                            "--inh-caps=-all", SANDBOXCTL, "apply", env["profile"], "--",
                            env["progs"]["family"]], capture_output=True, text=True, env=e,
                           timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        assert "thread release=5.15.0-accept unshare=-1 errno=1" in p.stdout
        run = sorted((state / "s" / "runs").iterdir())[-1]
        den = [ev for ev in run_events(run) if ev["kind"] == "syscall"]
        assert den[0]["syscall"] == "unshare" and den[0]["rule"]["line"] == LINE["unshare"]
        assert [ev["path"] for ev in run_events(run) if ev["kind"] == "exec"][0] == env["progs"]["family"]


def test_program_with_other_uid_is_still_served(env, tmp_path):
    # The Sentry holds no capability: it reads and writes the program's memory as the
    # owner of the sandbox's user namespace, whatever uid the program runs as inside.
    prof = Path(env["profile"]).with_name("nobody.yaml")
    prof.write_text(PROFILE.replace("metadata: {name: sentry-accept}",
                                    "metadata: {name: sentry-nobody}\n"
                                    "process:\n  user: {uid: 65534, gid: 65534}"))
    e = dict(os.environ, SANDBOXCTL_STATE_DIR=str(env["state"]))
    p = subprocess.run([SANDBOXCTL, "apply", str(prof), "--", "sh", "-c", "id -u; uname -r"],
                       capture_output=True, text=True, env=e, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["65534", "5.15.0-accept"]
    execs = [ev for ev in run_events(latest_run(env)) if ev["kind"] == "exec"]
    assert [ev["argv"] for ev in execs] == [["sh", "-c", "id -u; uname -r"], ["id", "-u"], ["uname", "-r"]]
