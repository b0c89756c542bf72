"""Lifecycle of a sandbox: signals, pty, cgroups, rootless, and nothing left on the host
afterwards (processes, mounts, cgroups) — also after Ctrl-C, SIGKILL of the program and
SIGKILL of the supervisor."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
import uuid
from pathlib import Path

import pytest
from _helpers_launch import (apply, apply_cmd, cgroup_dirs_of, env_for, host_mounts_mentioning,
                             procs_with, wait_for, write_profile)


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return d


def _marker() -> tuple[str, str]:
    """(a sleep duration nobody else uses, the shell arithmetic that yields it): the
    sandbox's processes carry the number, the supervisor's command line does not."""
    n = 900000 + uuid.uuid4().int % 99999
    return str(n), f"$(({n - 7}+7))"


def _start(prof, script: str, state, **kw) -> subprocess.Popen:
    return subprocess.Popen(apply_cmd(prof, "sh", "-c", script), env=env_for(state),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, **kw)


def _assert_clean(sup_pid: int, marker: str) -> None:
    assert wait_for(lambda: not procs_with(marker), timeout=5), procs_with(marker)
    assert wait_for(lambda: not cgroup_dirs_of(sup_pid), timeout=5), cgroup_dirs_of(sup_pid)
    assert not host_mounts_mentioning("/newroot", "/oldroot", "/ovl/")


def test_background_processes_die_and_nothing_is_left(tmp_path, state):
    prof = write_profile(tmp_path)
    m, expr = _marker()
    p = _start(prof, f"sleep {expr} & sleep {expr} & echo started; exit 5", state)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 5, err
    assert "started" in out
    _assert_clean(p.pid, m)


def test_program_killed_with_sigkill_from_the_host(tmp_path, state):
    prof = write_profile(tmp_path)
    m, expr = _marker()
    p = _start(prof, f"sleep {expr} & exec sleep {expr}1", state)
    prog = wait_for(lambda: procs_with(f"{m}1"))
    assert prog
    os.kill(prog[0], signal.SIGKILL)
    p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGKILL
    _assert_clean(p.pid, m)


def test_signals_are_forwarded(tmp_path, state):
    prof = write_profile(tmp_path)
    p = _start(prof, "trap 'echo got-term; exit 3' TERM; echo ready; "
                     "while :; do sleep 0.05; done", state)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert "got-term" in out
    assert p.returncode == 3


def test_ctrl_c_on_the_terminal_process_group(tmp_path, state):
    """Ctrl-C without a pty: the terminal signals sandboxctl's process group; the program
    gets SIGINT once (it is in a session of its own) and the run ends with 130."""
    prof = write_profile(tmp_path)
    m, expr = _marker()
    p = _start(prof, f"echo ready; sleep {expr} & wait", state, start_new_session=True)
    assert p.stdout.readline().strip() == "ready"
    assert wait_for(lambda: procs_with(m))
    os.killpg(p.pid, signal.SIGINT)
    p.communicate(timeout=30)
    assert p.returncode == 130
    _assert_clean(p.pid, m)


def test_supervisor_sigkill_takes_the_sandbox_with_it(tmp_path, state):
    prof = write_profile(tmp_path)
    m, expr = _marker()
    p = _start(prof, f"sleep {expr}", state)
    assert wait_for(lambda: procs_with(m))
    if os.geteuid() == 0:
        assert cgroup_dirs_of(p.pid)  # the default profile's memory and pids limits
    p.kill()
    p.communicate(timeout=10)
    assert wait_for(lambda: not procs_with(m), timeout=5), procs_with(m)
    # the sandbox's keeper removed the cgroups
    assert wait_for(lambda: not cgroup_dirs_of(p.pid), timeout=12), cgroup_dirs_of(p.pid)
    assert not host_mounts_mentioning("/newroot", "/oldroot", "/ovl/")


def test_cgroup_limits_on_the_host_and_removed_after(tmp_path, state):
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    prof = write_profile(tmp_path, "resources: {memory: 64Mi, pids: 32, cpu: 0.5}\n")
    m, expr = _marker()
    p = _start(prof, f"sleep {expr}", state)
    pid = wait_for(lambda: procs_with(m))
    assert pid
    dirs = cgroup_dirs_of(p.pid)
    values = {}
    for d in dirs:
        for name in ("memory.limit_in_bytes", "memory.max", "pids.max", "cpu.cfs_quota_us",
                     "cpu.max"):
            if os.path.exists(os.path.join(d, name)):
                values[name] = open(os.path.join(d, name)).read().strip()
        with open(os.path.join(d, "cgroup.procs")) as fh:
            assert str(pid[0]) in fh.read().split()
    p.kill()  # supervisor gone: the next run sweeps, but first check a clean exit too
    p.communicate(timeout=10)
    assert values.get("pids.max") == "32"
    assert values.get("cpu.cfs_quota_us", values.get("cpu.max", "").split(" ")[0]) == "50000"
    assert values.get("memory.limit_in_bytes", values.get("memory.max")) == str(64 << 20)
    r = apply(prof, "sh", "-c", "exit 0", state=state)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert not cgroup_dirs_of(p.pid)


def test_pty_interactive_shell_ctrl_c_and_window_size(tmp_path, state):
    prof = write_profile(tmp_path)
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.clear()
        os.environ.update(env_for(state))
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        argv = apply_cmd(prof, "bash", "--norc", "--noprofile", "-i")
        os.execv(argv[0], argv)

    def read_until(token: bytes, timeout: float = 15) -> bytes:
        buf = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end and token not in buf:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
        return buf

    try:
        os.write(fd, b"[ -t 0 ] && echo TTY$((40+2)); tty; stty size\n")
        out = read_until(b"33 101")
        assert b"TTY42" in out and b"33 101" in out, out
        assert b"/dev/pts/0" in out  # the pty comes from the sandbox's own devpts
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 120, 0, 0))
        os.kill(pid, signal.SIGWINCH)
        time.sleep(0.2)
        os.write(fd, b"stty size\n")
        assert b"44 120" in read_until(b"44 120")
        os.write(fd, b"sleep 30\n")
        time.sleep(0.5)
        os.write(fd, b"\x03")  # Ctrl-C through the pty: bash's child gets SIGINT
        os.write(fd, b"echo rc=$?\n")
        assert b"rc=130" in read_until(b"rc=130")
        os.write(fd, b"exit 7\n")
        read_until(b"\0", timeout=5)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 7
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


@pytest.fixture
def open_dir():
    """A directory the unprivileged user can use (pytest's tmp_path is root-only)."""
    d = tempfile.mkdtemp(prefix="h2a-rootless-", dir="/tmp")
    os.chmod(d, 0o777)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.rootless
def test_rootless_same_guarantees(open_dir):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to become nobody with setpriv)")
    tmp_path = open_dir
    state = open_dir / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    share = tmp_path / "ro"
    share.mkdir()
    os.chmod(share, 0o777)
    prof = write_profile(tmp_path, f"""\
        uname: {{hostname: rootless-box}}
        filesystem:
          mediation: direct
          mounts:
            - {{source: {share}, target: /ro, readonly: true}}
        """)
    m, expr = _marker()
    r = apply(prof, "sh", "-c",
              f"id -u; hostname; cat /proc/self/uid_map; echo $$; touch /ro/x || echo ro-ok; "
              f"grep CapEff /proc/self/status; sleep {expr} & echo bg",
              state=state, user=65534)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0" and lines[1] == "rootless-box"
    assert lines[2].split() == ["0", "65534", "1"]
    assert lines[3] == "2"
    assert "ro-ok" in r.stdout
    assert "CapEff:\t0000000000000000" in r.stdout
    # a limit the host will not let this user set is one warning line, not a failure
    assert r.stderr.count("warning") <= 1
    assert wait_for(lambda: not procs_with(m), timeout=5)
    assert not (share / "x").exists()
    # the built-in default profile (Gofer mediation) as the same unprivileged user
    r = apply("default", "sh", "-c", "id -u; uname -r; ls /proc | grep -c '^[0-9]'",
              state=state, user=65534)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["0", "4.4.0"]


@pytest.mark.rootless
def test_rootless_network_modes(open_dir):
    """As an unprivileged user: `none` and `passthrough` work; `netstack` (its TAP device
    is made from the host side) is refused in one sentence with the fix, leaving nothing."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to become nobody with setpriv)")
    state = open_dir / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    def interfaces(text: str) -> list[str]:  # /proc/net/dev: two header lines, "name: ..."
        return sorted(l.split(":")[0].strip() for l in text.splitlines()[2:] if ":" in l)

    for mode in ("none", "passthrough"):
        prof = write_profile(open_dir, f"network: {{mode: {mode}}}\n")
        r = apply(prof, "cat", "/proc/net/dev", state=state, user=65534)
        assert r.returncode == 0, (mode, r.stderr)
        names = interfaces(r.stdout)
        if mode == "none":
            assert names == ["lo"], names
        else:
            with open("/proc/net/dev") as fh:
                assert names == interfaces(fh.read()) and len(names) > 1, names
    prof = write_profile(open_dir, "network: {mode: netstack}\n")
    m, expr = _marker()
    r = apply(prof, "sh", "-c", f"sleep {expr}", state=state, user=65534)
    assert r.returncode == 1, r.stderr
    err = [l for l in r.stderr.splitlines() if "warning" not in l]
    assert err[0].startswith("sandboxctl: error: cannot set up the sandbox's TAP device"), err
    assert "hint: run sandboxctl as root, or use network mode none or passthrough" in err[1]
    assert "Traceback" not in r.stderr
    assert wait_for(lambda: not procs_with(m), timeout=5)


def _children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def test_sentry_death_kills_the_sandbox_and_says_why(tmp_path, state):
    prof = write_profile(tmp_path)
    m, expr = _marker()
    p = _start(prof, f"sleep {expr}", state)
    assert wait_for(lambda: procs_with(m))
    my_userns = os.readlink("/proc/self/ns/user")
    # the supervisor's children: the sandbox's keeper (in the sandbox's user namespace)
    # and the Sentry (in ours)
    sentry = [c for c in _children(p.pid) if os.readlink(f"/proc/{c}/ns/user") == my_userns]
    assert len(sentry) == 1, sentry
    os.kill(sentry[0], signal.SIGKILL)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGKILL
    assert "Sentry" in err
    _assert_clean(p.pid, m)


def test_cgroup_limits_bind_the_program(tmp_path, state):
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    prof = write_profile(tmp_path, "resources: {memory: 48Mi, pids: 16}\n")
    r = apply(prof, "python3", "-c", "b = bytearray(200 << 20); print('allocated')", state=state)
    assert r.returncode == 128 + signal.SIGKILL  # the memory cgroup's OOM killer
    assert "allocated" not in r.stdout
    r = apply(prof, "sh", "-c", "for i in $(seq 30); do sleep 1 & done 2>&1; echo done",
              state=state)
    assert "Cannot fork" in r.stdout + r.stderr


def test_only_the_sandbox_is_in_its_cgroups(tmp_path, state):
    """The keeper joins init (through descriptors the supervisor opened); neither the
    supervisor nor the keeper is in the run's cgroups, only sandbox processes."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    prof = write_profile(tmp_path, "resources: {memory: 64Mi, pids: 32}\n")
    m, expr = _marker()
    p = _start(prof, f"sleep {expr}", state)
    try:
        pid = wait_for(lambda: procs_with(m))
        assert pid
        keeper = int(Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()[0])
        dirs = cgroup_dirs_of(p.pid)
        assert dirs
        for d in dirs:
            members = set(open(os.path.join(d, "cgroup.procs")).read().split())
            assert str(pid[0]) in members
            assert str(p.pid) not in members and str(keeper) not in members
            mine = os.readlink("/proc/self/ns/pid")
            for member in members:  # init, the program and its children: sandbox pids all
                assert os.readlink(f"/proc/{member}/ns/pid") != mine, member
    finally:
        p.kill()
        p.communicate(timeout=10)
