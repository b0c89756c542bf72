"""The Sentry on the seccomp-notify platform, with real processes (no namespaces: the
launcher's tests cover those). Each test runs a program under a hand-built Plan."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from _helpers_sentry import build_programs, env, events, make_plan, rule

from sandboxctl.sentry.direct import run_direct


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    return build_programs(tmp_path_factory.mktemp("sentry-progs"))


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOXCTL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _run(plan, argv, tmp_path, **kw):
    out = tmp_path / "out.txt"
    err = tmp_path / "err.txt"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        res = run_direct(plan, argv, env(), stdout=fo.fileno(), stderr=fe.fileno(), **kw)
    return res, out.read_text(), err.read_text()


def test_uname_from_profile_and_exec_recorded(tmp_path):
    plan = make_plan(release="9.9.9-profile", hostname="prof-host")
    res, out, err = _run(plan, ["uname", "-a"], tmp_path)
    assert res.exit_code == 0, err
    assert "9.9.9-profile" in out and "prof-host" in out
    assert os.uname().release not in out
    evs = events(res.run.dir)
    ex = [e for e in evs if e["kind"] == "exec"]
    assert ex and ex[0]["path"] == "/usr/bin/uname" and ex[0]["argv"] == ["uname", "-a"]
    status = json.loads((res.run.dir / "status.json").read_text())
    assert status["exit_code"] == 0 and status["command"] == ["uname", "-a"]
    assert json.loads((res.run.dir / "plan.json").read_text())["profile_name"] == "sentry-test"


def test_denied_unshare_gets_profile_errno_and_event(tmp_path):
    res, out, err = _run(make_plan(), ["unshare", "-U", "true"], tmp_path)
    assert res.exit_code == 1
    assert "Operation not permitted" in err
    den = [e for e in events(res.run.dir) if e["kind"] == "syscall"]
    assert len(den) == 1
    ev = den[0]
    assert ev["syscall"] == "unshare" and ev["nr"] == 272 and ev["action"] == "deny"
    assert ev["errno"] == 1 and ev["errno_name"] == "EPERM"
    assert ev["decoded"] == "unshare(CLONE_NEWUSER)"
    assert ev["rule"] == {"file": "sentry-test.yaml", "line": 13, "col": 5, "text": "- unshare"}
    assert ev["comm"] == "unshare" and ev["pid"] > 0


def test_denied_mount_other_errno(tmp_path, progs):
    res, out, err = _run(make_plan(), [progs["mount"]], tmp_path)
    assert "mount=-1 errno=13" in out  # EACCES, as the rule says (not EPERM)
    ev = [e for e in events(res.run.dir) if e["kind"] == "syscall"][0]
    assert ev["decoded"] == 'mount("none", "/mnt", "tmpfs", MS_NOSUID, 0x0)'
    assert ev["rule"]["line"] == 14 and ev["errno_name"] == "EACCES"


def test_kill_rule_kills_and_run_says_which_call(tmp_path, progs):
    res, out, err = _run(make_plan(), [progs["ptrace"]], tmp_path)
    assert res.signal == signal.SIGKILL and res.status == 128 + 9
    assert "before" in out and "survived" not in out
    status = json.loads((res.run.dir / "status.json").read_text())
    kb = status["killed_by"]
    assert kb["syscall"] == "ptrace" and kb["action"] == "kill"
    assert kb["rule"]["line"] == 15
    assert kb["decoded"].startswith("ptrace(PTRACE_TRACEME")


def test_fork_threads_and_exec_are_covered(tmp_path, progs):
    res, out, err = _run(make_plan(release="5.5.5-fam"), [progs["family"]], tmp_path)
    assert res.exit_code == 0, err
    lines = out.splitlines()
    assert "main release=5.5.5-fam node=sbx-test" in lines
    assert "child release=5.5.5-fam" in lines
    assert "thread release=5.5.5-fam unshare=-1 errno=1" in lines
    assert lines[-1] == "5.5.5-fam"  # /bin/uname -r after exec
    evs = events(res.run.dir)
    paths = [e["path"] for e in evs if e["kind"] == "exec"]
    assert paths == [progs["family"], "/bin/uname"]
    assert [e["syscall"] for e in evs if e["kind"] == "syscall"] == ["unshare"]


def test_many_threads_concurrent_trapped_calls(tmp_path, progs):
    res, out, err = _run(make_plan(release="7.7.7-mt"), [progs["threads"], "7.7.7-mt"], tmp_path)
    assert out.strip() == "bad=0" and res.exit_code == 0, err


def test_argument_rules_decided_per_call(tmp_path):
    # socket(AF_INET, ...) denied with EAFNOSUPPORT; socket(AF_UNIX, ...) allowed (trapped, observed).
    from sandboxctl.engine.plan import ArgCond

    extra = (rule("socket", 41, "deny", errno=97, args=(ArgCond(0, "eq", 2),)),
             rule("socket", 41, "log", args=(ArgCond(0, "eq", 1),)))
    code = ("import socket\n"
            "socket.socket(socket.AF_UNIX).close(); print('unix ok')\n"
            "try:\n socket.socket(socket.AF_INET)\nexcept OSError as e: print('inet', e.errno)\n")
    res, out, err = _run(make_plan(extra=extra), [sys.executable, "-S", "-c", code], tmp_path)
    assert out.split("\n")[:2] == ["unix ok", "inet 97"], err
    socks = [e for e in events(res.run.dir) if e["syscall"] == "socket"]
    assert [(e["action"], e["decoded"].split(",")[0]) for e in socks] == [
        ("log", "socket(AF_UNIX"), ("deny", "socket(AF_INET")]


def test_command_not_found_is_127(tmp_path):
    res, out, err = _run(make_plan(), ["no-such-command-xyz"], tmp_path)
    assert res.exit_code == 127
    assert "no-such-command-xyz: command not found in the sandbox" in err


def test_emulate_without_handler_is_enosys(tmp_path):
    extra = (rule("getppid", 110, "emulate", handler="no_such_handler"),)
    code = "import os\ntry: print(os.getppid())\nexcept OSError as e: print('errno', e.errno)"
    res, out, err = _run(make_plan(extra=extra), [sys.executable, "-S", "-c", code], tmp_path)
    # glibc's getppid cannot fail, so the raw return value is -ENOSYS
    assert out.strip() in ("-38", "errno 38"), (out, err)
    ev = [e for e in events(res.run.dir) if e["syscall"] == "getppid"][0]
    assert ev["errno_name"] == "ENOSYS" and "no Sentry handler" in ev["note"]


def test_handler_continue_after_read_is_refused(tmp_path, monkeypatch):
    from _helpers_sentry import with_test_handlers

    with_test_handlers(monkeypatch)
    extra = (rule("getppid", 110, "emulate", handler="peek"),)
    code = "import os\nprint(os.getppid())"
    res, out, err = _run(make_plan(extra=extra), [sys.executable, "-S", "-c", code], tmp_path)
    assert out.strip() == "-1", (out, err)  # -EPERM as the raw value (getppid cannot fail)
    ev = [e for e in events(res.run.dir) if e["syscall"] == "getppid"][0]
    assert ev["errno_name"] == "EPERM" and "time-of-use" in ev["note"]


def test_blocking_handler_does_not_stall_other_calls(tmp_path, progs, monkeypatch):
    from _helpers_sentry import with_test_handlers

    with_test_handlers(monkeypatch)
    extra = (rule("getppid", 110, "emulate", handler="slow"),)
    res, out, err = _run(make_plan(extra=extra), [progs["slow"]], tmp_path)
    assert res.exit_code == 0, err
    vals = dict(l.split("=") for l in out.split())
    assert vals["getppid"] == "42"
    # 200 trapped unames served while the slow call (1.5 s) was still pending
    assert int(vals["unames_ms"]) < 1000, out


def test_not_executable_is_126_and_missing_path_127(tmp_path):
    f = tmp_path / "script.sh"
    f.write_text("#!/bin/sh\necho hi\n")
    f.chmod(0o644)
    res, out, err = _run(make_plan(), [str(f)], tmp_path)
    assert res.exit_code == 126 and "cannot run: Permission denied" in err
    res, out, err = _run(make_plan(), [str(tmp_path / "nope")], tmp_path)
    assert res.exit_code == 127 and "nope: cannot run: No such file or directory" in err


def test_inject_fd_installs_a_sentry_descriptor(tmp_path, progs, monkeypatch):
    from _helpers_sentry import with_inject_handler

    secret = tmp_path / "served.txt"
    secret.write_text("from-the-sentry")
    with_inject_handler(monkeypatch, str(secret))
    extra = (rule("getppid", 110, "emulate", handler="inject"),)
    res, out, err = _run(make_plan(extra=extra), [progs["inject"]], tmp_path)
    assert res.exit_code == 0, err
    # the lowest free descriptor (0-2 are stdio), close-on-exec as asked, readable
    assert out.strip() == "fd=3 cloexec=1 data=from-the-sentry"


def test_program_gets_only_stdio(tmp_path):
    leaked = os.open(os.devnull, os.O_RDONLY)  # inheritable, as a careless caller would leave it
    os.set_inheritable(leaked, True)
    try:
        res, out, err = _run(make_plan(), ["sh", "-c", "ls /proc/$$/fd"], tmp_path)
    finally:
        os.close(leaked)
    assert out.split() == ["0", "1", "2"], err  # no listener, no report pipe, no leak


def test_foreign_abi_is_killed_with_the_optimized_filter(tmp_path, progs):
    # the child loads the filter as a binary tree (CTL_OPTIMIZE=2): i386 calls still die
    res, out, err = _run(make_plan(), [progs["i386"]], tmp_path)
    assert out.split() == ["before"]
    assert res.signal == signal.SIGSYS


def test_worker_pool_grows_while_every_worker_blocks(tmp_path, progs, monkeypatch):
    from _helpers_sentry import with_test_handlers

    with_test_handlers(monkeypatch)
    extra = (rule("getppid", 110, "emulate", handler="slow"),)
    res, out, err = _run(make_plan(extra=extra), [progs["slowmany"]], tmp_path)
    vals = dict(kv.split("=") for kv in out.split())
    assert vals["sum"] == str(8 * 42), (out, err)
    # 8 calls of 1.5 s each, 1 worker to start with: the pool grows and serves them together
    assert int(vals["ms"]) < 2800, out
