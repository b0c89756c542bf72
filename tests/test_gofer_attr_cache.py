"""The Sentry's attribute cache (docs/gofer.md, "The attribute cache").

With the root's `cache: exclusive` (the default) a stat the Gofer marks cacheable is
answered again from the Sentry's memory. These tests check, on real sandboxes, that it is
used, that every change the sandbox makes (by path through the Gofer, through a writable
descriptor, through fchmod on a read-only one, through a hard link) is seen by the next
stat exactly as natively, that `cache: shared` always asks the Gofer, and, on a real
Gofer, which answers are marked cacheable."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _helpers_gofer import SandboxNS, apply, make_plan
from sandboxctl.engine.compile import compile_profile
from sandboxctl.engine.plan import GoferConfig, Mount, RootConfig
from sandboxctl.gofer.client import GoferClient
from sandboxctl.gofer.process import start_gofer
from sandboxctl.gofer.protocol import REPLY_CACHEABLE, Op, Request

EXE = str(Path(sys.executable).with_name("sandboxctl"))
HEAD = "apiVersion: sandboxctl/v1\nkind: SandboxProfile\nmetadata: {name: cache-test}\nextends: default\n"


def _apply(tmp: Path, argv: list[str], platform: str | None = None
           ) -> tuple[subprocess.CompletedProcess, str]:
    """Run under the default profile with --debug; (result, the Sentry's log)."""
    prof = tmp / "p.yaml"
    prof.write_text(HEAD)
    opts = ("--debug", "--platform", platform) if platform else ("--debug",)
    cp, run = apply(prof, argv, tmp / "state", timeout=120, opts=opts)
    return cp, (run / "sentry.log").read_text()


def _cache_line(log: str) -> tuple[str, int, int]:
    m = re.search(r"attribute cache \((on|off)\): (\d+) hits, (\d+) misses", log)
    assert m, f"no attribute cache line in the Sentry's log:\n{log[-2000:]}"
    return m.group(1), int(m.group(2)), int(m.group(3))


# Every step stats a name a few times first (so an answer is cached), changes it, and
# checks the next stat: the same script passes natively, which the last test checks.
CHANGES = textwrap.dedent(r"""
    import os, sys

    def st(p):
        try:
            s = os.stat(p)
        except FileNotFoundError:
            return None
        return (s.st_size, s.st_mode & 0o7777, s.st_nlink, s.st_mtime_ns)

    def warm(*paths):
        for p in paths:
            for _ in range(3):
                st(p)

    D = sys.argv[1]
    os.mkdir(D)
    a, b, c = D + "/a", D + "/b", D + "/c"
    warm(a)
    assert st(a) is None
    with open(a, "w") as f:                     # created through the Gofer
        f.write("12345")
    warm(a)
    assert st(a)[0] == 5, st(a)
    fd = os.open(a, os.O_WRONLY | os.O_APPEND)
    warm(a)
    os.write(fd, b"678")                         # the kernel alone: no trapped call
    assert st(a)[0] == 8, st(a)
    os.close(fd)
    e = D + "/e"
    os.mkdir(e, 0o755)                           # never opened for writing
    fd = os.open(e, os.O_RDONLY | os.O_DIRECTORY)
    warm(e)
    os.fchmod(fd, 0o700)                         # through a read-only descriptor
    assert st(e)[1] == 0o700, oct(st(e)[1])
    os.close(fd)
    os.chmod(a, 0o640)
    assert st(a)[1] == 0o640
    os.utime(a, ns=(10**18, 10**18))
    assert st(a)[3] == 10**18
    os.truncate(a, 2)
    assert st(a)[0] == 2
    warm(b)
    os.rename(a, b)
    assert st(a) is None and st(b)[0] == 2
    os.link(b, c)
    warm(b, c)
    assert st(b)[2] == 2
    with open(c, "a") as f:                      # written through the other name
        f.write("xyz")
    assert st(b)[0] == 5 and st(c)[0] == 5, (st(b), st(c))
    os.unlink(c)
    assert st(c) is None and st(b)[2] == 1
    warm(D)
    n = st(D)[2]
    os.mkdir(D + "/sub")
    assert st(D)[2] == n + 1
    os.rmdir(D + "/sub")
    assert st(D)[2] == n
    os.rmdir(e)
    print("changes seen")
""")


@pytest.mark.parametrize("platform,where", [("seccomp-notify", "/etc"), ("ptrace", "/etc"),
                                            ("seccomp-notify", "/tmp")])
def test_every_change_the_sandbox_makes_is_seen_by_the_next_stat(tmp_path, platform, where):
    """In the root's overlay and in a tmpfs mount, both cached."""
    log = run_changes(tmp_path, CHANGES, "changes seen", where + "/sbx-cache-test", platform)
    state, hits, misses = _cache_line(log)
    assert state == "on" and hits > 0, log[-1000:]


def run_changes(tmp: Path, script: str, done: str, where: str, platform: str) -> str:
    """Run a script of changes (it prints `done` at its end) on directory `where` in the
    sandbox; the Sentry's log. Nothing may have reached the host's `where`."""
    cp, log = _apply(tmp, ["python3", "-c", script, where], platform=platform)
    assert cp.returncode == 0, cp.stderr.decode()[-3000:]
    assert done.encode() in cp.stdout
    assert not os.path.exists(where)  # the overlay and the tmpfs kept it
    return log


def test_the_changes_script_passes_natively(tmp_path):
    d = tmp_path / "native"
    cp = subprocess.run([sys.executable, "-c", CHANGES, str(d)], capture_output=True)
    assert cp.returncode == 0, cp.stderr.decode()
    assert b"changes seen" in cp.stdout


REPEAT = "import os\nfor _ in range(200): os.stat('/usr/lib/os-release')\nprint('done')\n"


def test_a_repeated_stat_is_answered_from_the_cache(tmp_path):
    cp, log = _apply(tmp_path, ["python3", "-c", REPEAT])
    assert cp.returncode == 0, cp.stderr.decode()[-2000:]
    state, hits, _ = _cache_line(log)
    assert state == "on" and hits >= 199


def test_shared_asks_the_gofer_every_time_and_sees_host_changes(tmp_path):
    """`cache: shared` is for a root something outside the sandbox changes during the run:
    a file the host grows between two stats shows its new size; with `exclusive` the
    sandbox keeps the size it saw (the cache answered)."""
    host = Path("/var/tmp") / f"sbx-cache-{os.getpid()}"
    host.write_bytes(b"x")
    prog = textwrap.dedent(f"""
        import os, sys
        p = {str(host)!r}
        print(os.stat(p).st_size, flush=True)
        sys.stdin.readline()                    # the host appends meanwhile
        print(os.stat(p).st_size, flush=True)
    """)
    try:
        sizes = {}
        for mode in ("exclusive", "shared"):
            host.write_bytes(b"x")
            body = ("filesystem:\n  root: {source: /, readonly: true, overlay: memory, "
                    f"cache: {mode}}}\n")
            (tmp_path / mode).mkdir()
            prof = tmp_path / mode / "p.yaml"
            prof.write_text(HEAD + body)
            env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp_path / mode / "state"))
            p = subprocess.Popen([EXE, "apply", "--debug", "--tty", "never", str(prof), "--",
                                  "python3", "-c", prog], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            first = p.stdout.readline()  # type: ignore[union-attr]
            with open(host, "ab") as fh:
                fh.write(b"yy")
            out, err = p.communicate(b"\n", timeout=60)
            assert p.returncode == 0, err.decode()[-2000:]
            sizes[mode] = (int(first), int(out.split()[0]))
            log = next((tmp_path / mode / "state" / "runs").iterdir()) / "sentry.log"
            if mode == "shared":
                assert _cache_line(log.read_text())[:2] == ("off", 0)
        assert sizes == {"exclusive": (1, 1), "shared": (1, 3)}, sizes
    finally:
        host.unlink()


def test_the_plan_traps_fd_attribute_calls_only_when_the_cache_needs_them(tmp_path):
    def rules(body: str) -> dict[str, str | None]:
        prof = tmp_path / "p.yaml"
        prof.write_text(HEAD + body)
        plan = compile_profile(prof)
        return {r.name: r.handler for r in plan.seccomp.rules
                if r.name in ("fchmod", "fchown", "fsetxattr", "fremovexattr")}

    assert rules("") == dict.fromkeys(("fchmod", "fchown", "fsetxattr", "fremovexattr"), "fd_meta")
    assert rules("filesystem:\n  root: {cache: shared}\n") == {}
    assert rules("filesystem:\n  mediation: direct\n") == {}
    # a profile denying one keeps its denial
    denied = rules("syscalls:\n  deny: [fchmod]\n")
    assert denied["fchmod"] is None and denied["fchown"] == "fd_meta"


# -- which answers the Gofer marks cacheable --------------------------------------------


@pytest.fixture
def gofer(tmp_path):
    ns = SandboxNS(tmp_path)
    rw = ns.hostdir / "rw"
    (rw / "f").write_text("data")

    def start(cache: str = "exclusive"):
        base = make_plan(synthetic=(("/etc/hostname", "sandbox\n"),))
        gcfg = GoferConfig("gofer", RootConfig(cache=cache),  # type: ignore[arg-type]
                           mounts=(Mount("bind", "/rw", "/x"), Mount("tmpfs", "/tmp"),
                                   Mount("proc", "/proc")),
                           synthetic_files=base.gofer.synthetic_files)
        handle, sock = start_gofer(base._replace(gofer=gcfg), ns.pid)
        started.append((handle, GoferClient(sock)))
        return started[-1][1]

    started: list = []
    yield start
    for handle, client in started:
        client.close()
        handle.close()
    ns.close()


def _flags(client, name: bytes, op=Op.STAT, at_flags: int = 0) -> tuple[int, int]:
    rep = client.call(Request(op, name, at_flags=at_flags, pid=1, tid=1, a=(0xFFF, 0, 0, 0)))
    return rep.errno, rep.flags & REPLY_CACHEABLE


def test_the_gofer_marks_only_answers_from_the_roots_own_tree(gofer):
    client = gofer()
    ok = (0, REPLY_CACHEABLE)
    assert _flags(client, b"/usr/bin/env") == ok
    assert _flags(client, b"/usr/bin/env", Op.STATX) == ok
    assert _flags(client, b"/usr") == ok
    assert _flags(client, b"/bin/env") == (0, 0)  # through a symlink (/bin -> usr/bin)
    assert _flags(client, b"/bin", at_flags=0x100) == ok  # lstat of the link itself
    assert _flags(client, b"/usr/../usr/bin/env") == (0, 0)  # not canonical
    assert _flags(client, b"/usr//bin/env") == (0, 0)
    assert _flags(client, b"/usr/bin/") == (0, 0)
    assert _flags(client, b"/rw/f") == (0, 0)  # another mount
    assert _flags(client, b"/rw") == (0, 0)
    assert _flags(client, b"/tmp") == ok  # a tmpfs is the sandbox's alone
    assert _flags(client, b"/proc/self/status") == (0, 0)
    assert _flags(client, b"/etc/hostname") == (0, 0)  # synthetic
    assert _flags(client, b"/usr/no-such-file") == (errno.ENOENT, 0)  # misses are not kept
    rep = client.call(Request(Op.STAT, b"bin/env", pid=1, tid=1))  # relative to the root
    assert rep.errno == 0 and not rep.flags & REPLY_CACHEABLE


def test_a_shared_root_marks_nothing(gofer):
    client = gofer("shared")
    assert _flags(client, b"/usr/bin/env") == (0, 0)


# -- the Sentry's map of thread ids (FsState.task) ---------------------------------------


def test_thread_ids_are_read_again_where_they_matter_and_the_map_is_bounded():
    """A thread id is reused once its task is gone, and the Sentry does not see exits: a
    remembered entry may name a dead task. /proc/self paths and pidfds of the caller
    read the ids again; the map does not grow without end."""
    import threading
    from sandboxctl.sentry import handlers_fs as hf

    st = hf.FsState(client=None)  # type: ignore[arg-type]
    me = threading.get_native_id()
    st.tasks[me] = hf._Task(tgid=1, nspid=999999, nstid=999999)  # a stale entry
    assert st.task(me).nspid == 999999  # remembered: the hot path reads no /proc
    fresh = st.task(me, fresh=True)
    assert (fresh.tgid, fresh.nspid) == (os.getpid(), os.getpid())  # no pid namespace here
    assert st.tasks[me] == fresh
    for tid in range(1, hf._TASKS_MAX + 10):
        st.tasks.setdefault(10_000_000 + tid, fresh)
    st.task(me, fresh=True)
    assert len(st.tasks) <= hf._TASKS_MAX


def test_only_names_the_gofer_maps_to_the_caller_read_the_ids_again():
    """The fresh read costs a /proc file read on the trap path: only for names that may
    reach /proc/self, /proc/thread-self, /proc/mounts or /proc/net."""
    from sandboxctl.sentry.handlers_fs import _names_caller

    for name in (b"/proc/self/status", b"//proc/thread-self/comm", b"/proc/mounts",
                 b"/proc/net/tcp", b"self/fd", b"net/unix", b"/x/../proc/self/maps"):
        assert _names_caller(name), name
    for name in (b"/usr/lib/python3.11/netrc.py", b"/home/u/myself.txt", b"/etc/passwd",
                 b"lib/x.so", b"/proc/1/status"):
        assert not _names_caller(name), name
