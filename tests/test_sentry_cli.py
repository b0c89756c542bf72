"""`sandboxctl ps`, `sandboxctl logs`, the handler table, and the documented bench command,
over runs made by real sandboxed programs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers_sentry import build_programs, env, make_plan

from sandboxctl.sentry.direct import run_direct

REPO = Path(__file__).resolve().parents[1]
SANDBOXCTL = str(Path(sys.executable).parent / "sandboxctl")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs: a refusal, a kill, and a --debug run."""
    state = tmp_path_factory.mktemp("state")
    progs = build_programs(tmp_path_factory.mktemp("progs"))
    old = os.environ.get("SANDBOXCTL_STATE_DIR")
    os.environ["SANDBOXCTL_STATE_DIR"] = str(state)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        kw = dict(stdout=devnull, stderr=devnull)
        r1 = run_direct(make_plan(), ["unshare", "-U", "true"], env(), **kw)
        r2 = run_direct(make_plan(), [progs["ptrace"]], env(), **kw)
        r3 = run_direct(make_plan(), ["uname", "-r"], env(), debug=True, **kw)
        os.close(devnull)
    finally:
        if old is None:
            os.environ.pop("SANDBOXCTL_STATE_DIR", None)
        else:
            os.environ["SANDBOXCTL_STATE_DIR"] = old
    return state, (r1, r2, r3)


def sbx(state, *args: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, SANDBOXCTL_STATE_DIR=str(state))
    return subprocess.run([SANDBOXCTL, *args], capture_output=True, text=True, env=e, timeout=60)


def test_ps_table_and_json(runs):
    state, (r1, r2, r3) = runs
    p = sbx(state, "ps")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split("\t") == ["RUN", "STARTED", "PROFILE", "COMMAND", "EXIT", "DENIALS"]
    rows = [l.split("\t") for l in lines[1:]]
    assert [r[0] for r in rows] == [r1.run.id, r2.run.id, r3.run.id]
    assert rows[0][3:] == ["unshare -U true", "1", "1"]
    assert rows[1][4:] == ["killed (ptrace)", "1"]
    assert rows[2][4:] == ["0", "0"]
    data = json.loads(sbx(state, "ps", "--json").stdout)
    assert [d["id"] for d in data] == [r1.run.id, r2.run.id, r3.run.id]
    assert data[1]["killed_by"] == "ptrace" and data[1]["signal"] == 9
    last = json.loads(sbx(state, "ps", "--json", "-n", "1").stdout)
    assert [d["id"] for d in last] == [r3.run.id]


def test_logs_pretty_denials_json(runs):
    state, (r1, r2, r3) = runs
    p = sbx(state, "logs", r1.run.id)
    assert p.returncode == 0, p.stderr
    assert 'execve("/usr/bin/unshare", ["unshare", "-U", "true"]) [allow]' in p.stdout
    assert ("unshare(CLONE_NEWUSER) = -EPERM  rule sentry-test.yaml:13:5 (- unshare)"
            in p.stdout)
    assert p.stdout.rstrip().endswith(f"# run {r1.run.id}: exit 1")
    d = sbx(state, "logs", "--denials", r2.run.id[-4:])  # a unique part of the id
    assert d.returncode == 0, d.stderr
    body = [l for l in d.stdout.splitlines() if not l.startswith("#")]
    assert len(body) == 1 and "ptrace(PTRACE_TRACEME" in body[0] and "= KILLED" in body[0]
    assert "killed by the Sentry at ptrace(PTRACE_TRACEME" in d.stdout
    j = sbx(state, "logs", "--json", r1.run.id)
    evs = [json.loads(l) for l in j.stdout.splitlines()]
    recorded = [json.loads(l) for l in (r1.run.dir / "events.jsonl").read_text().splitlines()]
    assert evs == recorded and evs[-1]["errno_name"] == "EPERM"
    latest = sbx(state, "logs")
    assert f"# run {r3.run.id}: exit 0" in latest.stdout


def test_logs_sentry_log_and_errors(runs, tmp_path):
    state, (r1, r2, r3) = runs
    p = sbx(state, "logs", "--sentry-log", r3.run.id)
    assert p.returncode == 0 and "confined; serving" in p.stdout and "uname" in p.stdout
    p = sbx(state, "logs", "--sentry-log", r1.run.id)
    assert p.returncode == 1 and "has no Sentry log" in p.stderr and "--debug" in p.stderr
    p = sbx(state, "logs", "no-such-run")
    assert p.returncode == 1 and "no run 'no-such-run'" in p.stderr and "sandboxctl ps" in p.stderr
    empty = tmp_path / "empty"
    p = sbx(empty, "logs")
    assert p.returncode == 1 and "no runs recorded" in p.stderr
    p = sbx(empty, "ps")
    assert p.returncode == 0 and p.stdout.splitlines() == ["RUN\tSTARTED\tPROFILE\tCOMMAND\tEXIT\tDENIALS"]


def test_handler_table_is_data():
    from sandboxctl.sentry.table import handler_table, load_table

    rows = {r[0]: r for r in handler_table()}
    assert rows["uname"][1] == "supported" and rows["uname"][2].endswith(":handle_uname")
    assert rows["execve"][1] == rows["execveat"][1] == "supported"
    assert rows["io_uring_setup"][1] == "unimplemented" and "seccomp" in rows["io_uring_setup"][3]
    assert "observe" not in rows  # internal handler, not a syscall
    assert "observe" in load_table()


def test_documented_bench_command():
    # docs/sentry.md: python3 bench/syscall_loop.py --count 100000 --no-runsc
    p = subprocess.run([sys.executable, str(REPO / "bench" / "syscall_loop.py"), "--count", "100000",
                        "--no-runsc"], capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr
    ratio = [l for l in p.stdout.splitlines() if l.startswith("allowed-call ratio sandboxctl/native")]
    assert ratio and float(ratio[0].split(":")[1].split()[0]) < 3  # loose: CI machines are noisy
    assert "trapped call: sandboxctl" in p.stdout
    # the seccomp floor (an allow-all filter) measured in the same run
    floor = [l for l in p.stdout.splitlines() if l.startswith("seccomp floor/native")]
    assert floor and 0.9 < float(floor[0].split(":")[1].split()[0]) < 3
    # the ptrace platform side by side (issue 7)
    pt = [l for l in p.stdout.splitlines() if l.startswith("allowed-call ratio sandboxctl ptrace/")]
    assert pt and float(pt[0].split(":")[1].split()[0]) < 3
    assert any(l.startswith("sandboxctl ptrace ") for l in p.stdout.splitlines()), p.stdout


def test_ps_on_a_terminal_never_cuts_the_run_id(runs):
    if shutil.which("script") is None:
        pytest.skip("script (util-linux) is not installed")
    state, (r1, r2, r3) = runs
    e = dict(os.environ, SANDBOXCTL_STATE_DIR=str(state), COLUMNS="80", TERM="xterm")
    p = subprocess.run(["script", "-qc", f"{SANDBOXCTL} ps", "/dev/null"], capture_output=True,
                       text=True, env=e, timeout=60)
    text = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout)
    for r in (r1, r2, r3):
        assert r.run.id in text
    assert "killed (ptrace)" in text and all(len(l) <= 80 for l in text.splitlines())
