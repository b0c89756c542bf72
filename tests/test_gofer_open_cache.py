"""The Sentry's open cache (docs/gofer.md, "The open cache").

With the root's `cache: exclusive` (the default), a plain file opened to read a second
time by the same name is opened again by the Gofer ahead of the program's next open, and
that open is answered with the descriptor. These tests check, on real sandboxes, that it
is used; that every change the sandbox makes to a name (rename, unlink, a new file, a
symlink swapped, a directory moved, a write through the overlay's copy-up) is seen by the
next open exactly as natively; that each open still gets its own open file description;
that `cache: shared` never opens ahead; and, on a real Gofer, which opens are marked and
that the client's forgotten replies leave no descriptor behind."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandboxctl.gofer.protocol import OPEN_NO_WAIT, REPLY_CACHEABLE, Op, Request
from test_gofer_attr_cache import _apply, gofer, run_changes  # noqa: F401  (gofer: the fixture)

HEAD = "apiVersion: sandboxctl/v1\nkind: SandboxProfile\nmetadata: {name: open-cache-test}\nextends: default\n"


def _served_ahead(log: str) -> int:
    m = re.search(r"(\d+) opens served ahead", log)
    assert m, f"no open cache count in the Sentry's log:\n{log[-2000:]}"
    return int(m.group(1))


# Every step opens a name a few times first (so a descriptor is opened ahead), changes
# the name, and checks what the next open reads. The same script passes natively.
OPENS = textwrap.dedent(r"""
    import os, sys

    def rd(p):
        try:
            with open(p, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def warm(*paths):
        for p in paths:
            for _ in range(4):
                rd(p)

    def put(p, data):
        with open(p, "wb") as f:
            f.write(data)

    D = sys.argv[1]
    os.mkdir(D)
    a, b, c, l = D + "/a", D + "/b", D + "/c", D + "/l"
    put(a, b"one")
    warm(a)
    assert rd(a) == b"one"
    f1 = open(a, "rb")                           # each open: its own offset
    assert f1.read(2) == b"on"
    f2 = open(a, "rb")
    assert f2.read() == b"one" and f1.read() == b"e"
    f1.close(); f2.close()
    fd = os.open(a, os.O_WRONLY | os.O_APPEND)   # written through an older descriptor
    warm(a)
    os.write(fd, b"+")
    assert rd(a) == b"one+", rd(a)
    os.close(fd)
    put(b, b"two")
    warm(a, b)
    os.rename(b, a)                              # replaced by a rename
    assert rd(a) == b"two" and rd(b) is None, (rd(a), rd(b))
    warm(a)
    os.unlink(a)                                 # gone
    assert rd(a) is None
    put(a, b"three")                             # and made again
    assert rd(a) == b"three"
    put(c, b"cee")
    os.symlink(a, l)
    warm(l)
    assert rd(l) == b"three"
    os.unlink(l)                                 # the link swapped
    os.symlink(c, l)
    assert rd(l) == b"cee", rd(l)
    sub = D + "/sub"
    os.mkdir(sub)
    put(sub + "/x", b"x1")
    warm(sub + "/x")
    os.rename(sub, D + "/old")                   # its directory moved away
    assert rd(sub + "/x") is None
    os.mkdir(sub)
    put(sub + "/x", b"x2")
    warm(sub + "/x")
    assert rd(sub + "/x") == b"x2"
    warm(a)
    os.truncate(a, 1)
    assert rd(a) == b"t"
    warm(c)
    os.link(a, D + "/h")
    os.rename(D + "/h", c)                       # a hard link renamed over it
    assert rd(c) == b"t", rd(c)
    print("opens see every change")
""")


@pytest.mark.parametrize("platform,where", [("seccomp-notify", "/tmp"), ("seccomp-notify", "/etc"),
                                            ("ptrace", "/tmp")])
def test_every_change_the_sandbox_makes_is_seen_by_the_next_open(tmp_path, platform, where):
    """In a tmpfs mount and in the root's overlay, both cached."""
    log = run_changes(tmp_path, OPENS, "opens see every change", where + "/sbx-open-cache-test",
                      platform)
    assert _served_ahead(log) > 10, log[-1000:]


# Readers open one name over and over while a writer renames new versions over it. The
# writer publishes the number of each rename once it returned; a reader that saw number
# d published before it opened must read version d or newer (an open that starts after a
# rename completed sees it). An open served ahead across a rename would read an older one.
RACE = textwrap.dedent(r"""
    import os, sys, threading, time
    D = sys.argv[1]
    os.mkdir(D)
    p = D + "/v"
    with open(p, "w") as f:
        f.write("0")
    N = 1500
    done = [0]
    stop = False
    bad = []

    def reader():
        while not stop:
            d = done[0]
            with open(p) as f:
                v = int(f.read())
            if v < d:
                bad.append((d, v))

    ts = [threading.Thread(target=reader) for _ in range(2)]
    for t in ts:
        t.start()
    for i in range(1, N + 1):
        with open(D + "/new", "w") as f:
            f.write(str(i))
        os.rename(D + "/new", p)
        done[0] = i
        if i % 20 == 0:
            time.sleep(0.002)  # the readers open a few times in a row: opened ahead
    stop = True
    for t in ts:
        t.join()
    assert not bad, bad[:5]
    print("no stale read")
""")


def test_an_open_after_a_rename_completed_reads_the_new_file(tmp_path):
    cp, log = _apply(tmp_path, ["python3", "-c", RACE, "/tmp/sbx-open-race"])
    assert cp.returncode == 0, cp.stderr.decode()[-3000:]
    assert b"no stale read" in cp.stdout
    assert _served_ahead(log) > 20
    native = subprocess.run([sys.executable, "-c", RACE, str(tmp_path / "native")],
                            capture_output=True)
    assert native.returncode == 0 and b"no stale read" in native.stdout, native.stderr.decode()


def test_the_opens_script_passes_natively(tmp_path):
    cp = subprocess.run([sys.executable, "-c", OPENS, str(tmp_path / "native")],
                        capture_output=True)
    assert cp.returncode == 0, cp.stderr.decode()
    assert b"opens see every change" in cp.stdout


def test_a_copy_up_in_the_overlay_is_seen_and_the_host_file_is_untouched(tmp_path):
    """A host file in the root's tree, opened ahead from the lower layer; then written in
    the sandbox (the overlay copies it up): the next open reads the copy."""
    host = Path("/var/tmp") / f"sbx-open-cache-{os.getpid()}"
    host.write_bytes(b"host")
    prog = textwrap.dedent(f"""
        p = {str(host)!r}
        for _ in range(5):
            assert open(p, "rb").read() == b"host"
        with open(p, "ab") as f:
            f.write(b"+sandbox")
        print(open(p, "rb").read().decode())
    """)
    try:
        cp, log = _apply(tmp_path, ["python3", "-c", prog])
        assert cp.returncode == 0, cp.stderr.decode()[-3000:]
        assert cp.stdout.split()[-1] == b"host+sandbox"
        assert _served_ahead(log) >= 2
        assert host.read_bytes() == b"host"
    finally:
        host.unlink()


REPEAT = textwrap.dedent("""
    import os
    for _ in range(200):
        os.close(os.open("/usr/lib/os-release", os.O_RDONLY))
    print("done")
""")


def test_a_repeated_open_is_served_ahead(tmp_path):
    cp, log = _apply(tmp_path, ["python3", "-c", REPEAT])
    assert cp.returncode == 0, cp.stderr.decode()[-2000:]
    assert _served_ahead(log) >= 197  # the first two go to the Gofer


@pytest.mark.parametrize("mode", ["exclusive", "shared"])
def test_shared_never_opens_ahead_and_sees_a_host_rename(tmp_path, mode):
    """`cache: shared`: every open goes to the Gofer, so a name the host points at
    another file between two opens reads the new file. `exclusive` assumes nothing
    outside changes the root: the open served ahead reads the file it opened before."""
    host = Path("/var/tmp") / f"sbx-open-shared-{os.getpid()}"
    other = host.with_name(host.name + ".new")
    host.write_bytes(b"old")
    prog = textwrap.dedent(f"""
        import sys
        p = {str(host)!r}
        for _ in range(5):
            open(p, "rb").read()
        print(open(p, "rb").read().decode(), flush=True)
        sys.stdin.readline()                    # the host renames meanwhile
        print(open(p, "rb").read().decode(), flush=True)
    """)
    # (overlay: none: an overlay itself does not promise to show changes made to its lower
    # layer while mounted)
    body = f"filesystem:\n  root: {{source: /, readonly: true, overlay: none, cache: {mode}}}\n"
    try:
        (tmp_path / "p.yaml").write_text(HEAD + body)
        env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp_path / "state"))
        exe = str(Path(sys.executable).with_name("sandboxctl"))
        p = subprocess.Popen([exe, "apply", "--debug", "--tty", "never", str(tmp_path / "p.yaml"),
                              "--", "python3", "-c", prog], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        first = p.stdout.readline()  # type: ignore[union-attr]
        other.write_bytes(b"new")
        os.rename(other, host)
        out, err = p.communicate(b"\n", timeout=60)
        assert p.returncode == 0, err.decode()[-2000:]
        log = next((tmp_path / "state" / "runs").iterdir()) / "sentry.log"
        if mode == "shared":
            assert (first.strip(), out.strip()) == (b"old", b"new")
            assert _served_ahead(log.read_text()) == 0
        else:
            assert (first.strip(), out.strip()) == (b"old", b"old")
            assert _served_ahead(log.read_text()) == 5
    finally:
        host.unlink(missing_ok=True)
        other.unlink(missing_ok=True)


# -- which opens the Gofer marks, and the client's forgotten replies ----------------------


def _open_flags(client, name: bytes, flags: int = os.O_RDONLY) -> tuple[int, int]:
    rep = client.call(Request(Op.OPEN, name, flags=flags | os.O_CLOEXEC, mode=0o644, pid=1, tid=1))
    if rep.fd >= 0:
        os.close(rep.fd)
    return rep.errno, rep.flags & REPLY_CACHEABLE


def test_the_gofer_marks_only_plain_files_of_the_roots_tree_opened_to_read(gofer):  # noqa: F811
    client = gofer()
    ok = (0, REPLY_CACHEABLE)
    assert _open_flags(client, b"/usr/bin/env") == ok
    assert _open_flags(client, b"/usr/bin/env", os.O_RDONLY | os.O_NONBLOCK) == ok
    assert _open_flags(client, b"/usr", os.O_RDONLY | os.O_DIRECTORY) == (0, 0)  # a directory
    assert _open_flags(client, b"/usr/bin/env", os.O_PATH) == (0, 0)
    assert _open_flags(client, b"/rw/f") == (0, 0)  # another mount (a bind)
    assert _open_flags(client, b"/rw/f", os.O_RDWR) == (0, 0)
    assert _open_flags(client, b"/bin/env") == (0, 0)  # through a symlink
    assert _open_flags(client, b"/usr//bin/env") == (0, 0)  # not canonical
    assert _open_flags(client, b"/etc/hostname") == (0, 0)  # synthetic
    assert _open_flags(client, b"/proc/self/status") == (0, 0)
    assert _open_flags(client, b"/tmp/f", os.O_WRONLY | os.O_CREAT) == (0, 0)  # to write
    assert _open_flags(client, b"/tmp/f") == ok  # a tmpfs is the sandbox's alone
    rep = client.call(Request(Op.MKNOD, b"/tmp/fifo", mode=0o10600, pid=1, tid=1))
    assert rep.errno == 0
    assert _open_flags(client, b"/tmp/fifo", os.O_RDONLY | os.O_NONBLOCK) == (0, 0)  # a FIFO
    assert _open_flags(client, b"/usr/no-such-file") == (errno.ENOENT, 0)


def test_a_shared_root_marks_no_open(gofer):  # noqa: F811
    assert _open_flags(gofer("shared"), b"/usr/bin/env") == (0, 0)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_forgotten_replies_close_their_descriptors(gofer):  # noqa: F811
    client = gofer()
    req = Request(Op.OPEN, b"/usr/bin/env", flags=os.O_RDONLY | os.O_CLOEXEC, pid=1, tid=1,
                  a=(OPEN_NO_WAIT, 0, 0, 0))
    client.call(Request(Op.PING))
    before = _fds()
    # forgotten before its reply came: thrown away when read
    client.forget(client.submit(req))
    # forgotten after its reply came (filed while another reply was awaited)
    early = client.submit(req)
    assert client.call(Request(Op.PING)).data == b"pong"
    client.forget(early)
    # taken: the caller owns the descriptor
    rep = client.take(client.submit(req))
    assert rep.errno == 0 and rep.fd >= 0 and rep.flags & REPLY_CACHEABLE
    os.close(rep.fd)
    assert client.call(Request(Op.PING)).data == b"pong"
    assert _fds() == before
    assert not client._done and not client._forgotten


def test_a_drop_forgets_what_was_asked_ahead_and_a_late_answer_is_not_used(gofer):  # noqa: F811
    """The two guards of FsState, each alone: a drop forgets the opens in flight (their
    descriptors are closed when they come), and an answer to an open asked before a drop
    that raced past it (a generation behind) is closed, not used."""
    from sandboxctl.sentry.handlers_fs import FsState

    client = gofer()
    st = FsState(client, cache_on=True)
    key = (b"/usr/bin/env", os.O_RDONLY)
    client.call(Request(Op.PING))
    before = _fds()
    st.open_ahead(key)
    st.open_ahead(key)  # one at a time per name
    assert len(st.ahead) == 1
    st.drop_cache()
    assert not st.ahead and st.take_ahead(key) == -1
    st.open_ahead(key)
    st.gen += 1  # a drop that ran between the request and its entry
    assert st.take_ahead(key) == -1
    assert client.call(Request(Op.PING)).data == b"pong"
    assert _fds() == before and not client._done and not client._forgotten
    st.open_ahead(key)  # and the good case: the Gofer's descriptor, to read
    fd = st.take_ahead(key)
    try:
        assert fd >= 0 and os.read(fd, 4) == b"\x7fELF"
    finally:
        os.close(fd)


def test_opens_asked_ahead_are_bounded(gofer):  # noqa: F811
    from sandboxctl.sentry import handlers_fs as hf

    client = gofer()
    st = hf.FsState(client, cache_on=True)
    client.call(Request(Op.PING))
    before = _fds()
    names = [b"/usr/bin/" + n.encode() for n in sorted(os.listdir("/usr/bin"))
             if os.path.isfile("/usr/bin/" + n) and not os.path.islink("/usr/bin/" + n)]
    assert len(names) > hf._AHEAD_MAX + 10
    for name in names[:hf._AHEAD_MAX + 10]:
        st.open_ahead((name, os.O_RDONLY))
    assert len(st.ahead) == hf._AHEAD_MAX
    assert (names[0], os.O_RDONLY) not in st.ahead  # the oldest made room
    st.drop_cache()
    assert client.call(Request(Op.PING)).data == b"pong"
    assert _fds() == before


def test_a_cache_switched_off_forgets_what_was_asked_ahead(gofer):  # noqa: F811
    """Past _VOLATILE_MAX files never cached, the cache is off for the run: no drop will
    come any more, so nothing asked for ahead may stay."""
    from sandboxctl.sentry import handlers_fs as hf

    client = gofer()
    st = hf.FsState(client, cache_on=True)
    key = (b"/usr/bin/env", os.O_RDONLY)
    st.open_ahead(key)
    st.volatile.update((0, i) for i in range(hf._VOLATILE_MAX))
    st.mark_volatile(1, 1)
    assert not st.cache_on and not st.ahead and st.take_ahead(key) == -1
    st.open_ahead(key)
    assert not st.ahead


@pytest.mark.rootless
def test_rootless_the_open_cache_serves_and_sees_every_change(tmp_path):
    """sandboxctl started by an unprivileged user (a user namespace of its own): the same
    changes script, with opens served ahead."""
    import shutil
    import tempfile

    from _helpers_launch import apply as apply_as

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to become nobody with setpriv)")
    d = Path(tempfile.mkdtemp(prefix="open-cache-rootless-", dir="/tmp"))
    try:
        os.chmod(d, 0o777)
        r = apply_as("default", "python3", "-c", OPENS, "/tmp/sbx-open-cache-rootless",
                     state=d / "state", user=65534, opts=("--debug",), timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "opens see every change" in r.stdout
        log = next((d / "state" / "runs").iterdir()) / "sentry.log"
        assert _served_ahead(log.read_text()) > 10
    finally:
        shutil.rmtree(d, ignore_errors=True)
