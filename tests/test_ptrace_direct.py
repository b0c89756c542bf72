"""The ptrace Sentry as a process of its own (start_ptrace_sentry), through
sentry.direct.run_direct: confined, writing the run record, on both platforms."""

from __future__ import annotations

import errno
import json
import os

import pytest

from _helpers_platform import PLATFORMS, with_platform
from _helpers_ptrace import make_plan


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOXCTL_STATE_DIR", str(tmp_path / "state"))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_direct_run_emulates_denies_and_records(platform, tmp_path):
    from sandboxctl.sentry.direct import run_direct

    plan = with_platform(make_plan(emulate={"uname": "uname"},
                                   deny={"getppid": errno.EACCES}), platform)
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        res = run_direct(plan, ["sh", "-c", "uname -n; python3 -c 'import os; print(os.getppid())'"
                                "; exit 6"],
                         stdout=fh.fileno())
    assert res.sentry_failed is None
    assert res.exit_code == 6
    assert out.read_text().split() == ["sandbox", str(-errno.EACCES)]
    status = json.loads((res.run.dir / "status.json").read_text())
    assert status["platform"] == platform and status["exit_code"] == 6
    events = [json.loads(ln) for ln in (res.run.dir / "events.jsonl").read_text().splitlines()]
    assert any(e["syscall"] == "getppid" and e["errno"] == errno.EACCES for e in events)


def test_ptrace_sentry_writes_strace_log(tmp_path):
    from sandboxctl.sentry.platform_ptrace import run_direct_ptrace

    plan = make_plan()
    res = run_direct_ptrace(plan, ["cat", "/etc/hostname"], stdout=os.open(os.devnull, os.O_WRONLY),
                            strace="log", strace_syscalls=frozenset({"openat"}))
    assert res.exit_code == 0 and res.sentry_failed is None
    log = (res.run.dir / "strace.log").read_text()
    assert "openat(AT_FDCWD, '/etc/hostname', O_RDONLY) = 3" in log


def test_program_dies_with_the_ptrace_sentry(tmp_path):
    from sandboxctl.sentry.platform_ptrace import start_ptrace_sentry  # noqa: F401
    from sandboxctl.sentry.direct import run_direct
    import threading, time, signal as sig

    # kill the Sentry while the program sleeps: EXITKILL and the watcher end the program
    plan = with_platform(make_plan(emulate={"uname": "uname"}), "ptrace")
    killed = []
    nap = f"{30 + (os.getpid() % 997) / 1000:.3f}"  # a marker only this test's program has

    def killer():
        deadline = time.time() + 10
        while time.time() < deadline:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                    status = open(f"/proc/{pid}/status").read()
                except OSError:
                    continue
                if cmd == f"sleep\0{nap}\0".encode():
                    tracer = int(status.split("TracerPid:")[1].split()[0])
                    if tracer:
                        os.kill(tracer, sig.SIGKILL)
                        killed.append(tracer)
                        return
            time.sleep(0.02)

    t = threading.Thread(target=killer)
    t.start()
    start = time.time()
    res = run_direct(plan, ["sleep", nap])
    t.join()
    assert killed and time.time() - start < 10
    assert res.signal == sig.SIGKILL
    assert res.sentry_failed
