"""Escape attempts against a real Gofer process, joined to a sandbox-like namespace
(read-only /usr /etc /ro, writable /rw bound from the host, tmpfs /tmp, own /proc):
each trick is refused with the errno Linux gives, and the reply names the rule."""

from __future__ import annotations

import errno as E
import os
import shutil
import threading
import time

import pytest

from _helpers_gofer import SandboxNS, make_plan
from sandboxctl.gofer import sys as gsys
from sandboxctl.gofer.client import GoferClient
from sandboxctl.gofer.policy import RULE_DENY, RULE_MAGICLINK, RULE_READONLY, RULE_SYNTHETIC
from sandboxctl.gofer.process import start_gofer
from sandboxctl.gofer.protocol import Op, Request


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gofer-escape")
    ns = SandboxNS(tmp)
    host = ns.hostdir
    (tmp / "host-only-marker").write_text("HOST")
    (host / "ro" / "secret").mkdir()
    (host / "ro" / "secret" / "k").write_text("SECRET")
    (host / "ro" / "pub").write_text("public")
    rw = host / "rw"
    (rw / "locked").mkdir()
    (rw / "f").write_text("f")
    os.symlink("/etc/shadow", rw / "abs-denied")
    os.symlink(str(tmp / "host-only-marker"), rw / "abs-host")
    os.symlink("../" * 12 + str(tmp / "host-only-marker").lstrip("/"), rw / "rel-host")
    os.symlink("/ro/secret/k", rw / "to-secret")
    os.symlink("loop2", rw / "loop1")
    os.symlink("loop1", rw / "loop2")
    os.symlink("/proc/1/root", rw / "to-magic")
    os.mkfifo(rw / "fifo")
    os.chmod(rw, 0o777)
    plan = make_plan(deny=("/ro/secret/**", "/etc/shadow"), readonly=("/rw/locked/**",),
                     synthetic=(("/etc/hostname", "sandbox-host\n"),))
    handle, sock = start_gofer(plan, ns.pid)
    client = GoferClient(sock)
    yield tmp, host, client, handle
    client.close()
    handle.close()
    ns.close()


def call(client, op, name=b"", **kw):
    return client.call(Request(op, name, pid=1, tid=1, **kw))


def read_open(client, name, flags=os.O_RDONLY):
    rep = call(client, Op.OPEN, name, flags=flags)
    if rep.fd < 0:
        return rep, None
    try:
        return rep, os.read(rep.fd, 100)
    finally:
        os.close(rep.fd)


def test_dotdot_stays_in_the_root(env):
    _, _, client, _ = env
    rep, data = read_open(client, b"/../../../../etc/../../etc/passwd")
    assert rep.errno == 0 and rep.path == b"/etc/passwd" and data.startswith(b"root:")
    rep, data = read_open(client, b"/rw/" + b"../" * 20 + b"ro/pub")
    assert (rep.errno, data) == (0, b"public")


@pytest.mark.parametrize("name", [b"/rw/abs-host", b"/rw/rel-host"])
def test_symlinks_out_of_the_root_resolve_inside_it(env, name):
    _, _, client, _ = env
    rep, data = read_open(client, name)
    assert rep.errno == E.ENOENT and data is None


def test_symlink_into_a_denied_path_is_refused_with_its_rule(env):
    _, _, client, _ = env
    for name in (b"/rw/to-secret", b"/rw/abs-denied", b"/ro/secret/k", b"/ro/./secret//k"):
        rep, data = read_open(client, name)
        assert (rep.errno, rep.rule_kind, data) == (E.ENOENT, RULE_DENY, None), name
    rep = call(client, Op.STAT, b"/rw/to-secret")
    assert rep.errno == E.ENOENT and rep.rule_kind == RULE_DENY and not rep.data
    rep = call(client, Op.STAT, b"/rw/to-secret", at_flags=0x100)  # lstat: the link itself
    assert rep.errno == 0 and len(rep.data) == 144


def test_looping_symlinks(env):
    _, _, client, _ = env
    assert call(client, Op.OPEN, b"/rw/loop1").errno == E.ELOOP
    assert call(client, Op.STAT, b"/rw/loop1/x").errno == E.ELOOP


@pytest.mark.parametrize("name", [b"/proc/self/root/etc/passwd", b"/proc/1/root/etc/passwd",
                                  b"/proc/self/cwd/etc/passwd", b"/proc/self/fd/0",
                                  b"/rw/to-magic/etc/passwd"])
def test_magic_links_are_refused(env, name):
    _, _, client, _ = env
    rep, data = read_open(client, name)
    assert data is None
    assert rep.errno in (E.ELOOP, E.EACCES), rep
    if rep.errno == E.ELOOP:
        assert rep.rule_kind == RULE_MAGICLINK


def test_proc_self_is_the_caller_and_host_pids_are_invisible(env):
    _, _, client, _ = env
    rep, data = read_open(client, b"/proc/self/comm")
    assert rep.errno == 0 and data == b"sleep\n" and rep.path == b"/proc/1/comm"
    rep, data = read_open(client, f"/proc/{os.getpid()}/status".encode())
    assert rep.errno == E.ENOENT and data is None


def test_hard_links_and_renames_out_of_a_mount(env):
    _, host, client, _ = env
    assert call(client, Op.LINK, b"/etc/passwd", name2=b"/rw/pw").errno == E.EXDEV
    assert call(client, Op.LINK, b"/rw/f", name2=b"/tmp/f").errno == E.EXDEV
    assert call(client, Op.LINK, b"/ro/secret/k", name2=b"/ro/k2").errno == E.ENOENT
    assert call(client, Op.RENAME, b"/rw/f", name2=b"/tmp/f").errno == E.EXDEV
    assert call(client, Op.RENAME, b"/rw/f", name2=b"/ro/f").errno in (E.EXDEV, E.EROFS)
    assert (host / "rw" / "f").read_text() == "f"


def test_writing_through_a_read_only_bind(env):
    _, host, client, _ = env
    assert call(client, Op.OPEN, b"/ro/pub", flags=os.O_WRONLY).errno == E.EROFS
    assert call(client, Op.OPEN, b"/ro/new", flags=os.O_WRONLY | os.O_CREAT, mode=0o644).errno == E.EROFS
    assert call(client, Op.MKDIR, b"/ro/d", mode=0o755).errno == E.EROFS
    assert call(client, Op.UNLINK, b"/ro/pub").errno == E.EROFS
    assert call(client, Op.CHMOD, b"/ro/pub", mode=0o777).errno == E.EROFS
    assert call(client, Op.TRUNCATE, b"/ro/pub").errno == E.EROFS
    assert call(client, Op.SYMLINK, b"/x", name2=b"/ro/l").errno == E.EROFS
    assert (host / "ro" / "pub").read_text() == "public"


def test_readonly_glob(env):
    _, host, client, _ = env
    rep = call(client, Op.OPEN, b"/rw/locked/new", flags=os.O_WRONLY | os.O_CREAT, mode=0o644)
    assert (rep.errno, rep.rule_kind, rep.rule_index) == (E.EROFS, RULE_READONLY, 0)
    assert call(client, Op.RENAME, b"/rw/f", name2=b"/rw/locked/f").errno == E.EROFS
    assert call(client, Op.MKDIR, b"/rw/locked/d").rule_kind == RULE_READONLY
    assert list((host / "rw" / "locked").iterdir()) == []
    # reading is fine, and so is writing next to it
    rep = call(client, Op.OPEN, b"/rw/new", flags=os.O_WRONLY | os.O_CREAT, mode=0o600)
    assert rep.errno == 0
    os.write(rep.fd, b"hello")
    os.close(rep.fd)
    assert (host / "rw" / "new").read_text() == "hello"


def test_synthetic_file(env):
    _, host, client, _ = env
    rep, data = read_open(client, b"/etc/hostname")
    assert data == b"sandbox-host\n"
    rep = call(client, Op.OPEN, b"/etc/hostname", flags=os.O_RDWR)
    assert (rep.errno, rep.rule_kind) == (E.EROFS, RULE_SYNTHETIC)
    os.symlink("/etc/hostname", host / "rw" / "to-hostname")  # a symlink reaches it too
    rep, data = read_open(client, b"/rw/to-hostname")
    assert data == b"sandbox-host\n"


def test_directory_swapped_for_a_symlink_never_leads_out(env):
    """A host thread flips /rw/sw between a directory and symlinks to a denied directory
    and to a host path, while the Gofer opens /rw/sw/k: it only ever gets the public file
    or an error."""
    tmp, host, client, _ = env
    sw = host / "rw" / "sw"
    stop = threading.Event()
    (tmp / "k").write_text("HOST")  # /<tmp>/k exists on the host only

    def flip() -> None:
        i = 0
        while not stop.is_set():
            new = host / "rw" / ".sw-new"
            if i % 3 == 0:
                new.mkdir()
                (new / "k").write_text("public")
            elif i % 3 == 1:
                os.symlink("/ro/secret", new)  # a denied directory
            else:
                os.symlink(str(tmp), new)  # a host directory
            if os.path.lexists(sw):
                gsys.renameat2(gsys.AT_FDCWD, bytes(new), gsys.AT_FDCWD, bytes(sw), 2)  # EXCHANGE
                shutil.rmtree(new) if new.is_dir() and not new.is_symlink() else os.unlink(new)
            else:
                os.rename(new, sw)
            i += 1

    t = threading.Thread(target=flip, daemon=True)
    t.start()
    seen = set()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            rep, data = read_open(client, b"/rw/sw/k")
            seen.add(data)
            assert data in (None, b"public"), data
    finally:
        stop.set()
        t.join()
    assert b"public" in seen


def test_blocking_fifo_open_does_not_stall_other_requests(env):
    _, host, client, _ = env
    got = {}

    def opener() -> None:
        got["rep"] = call(client, Op.OPEN, b"/rw/fifo", flags=os.O_RDONLY)

    t = threading.Thread(target=opener, daemon=True)
    t.start()
    time.sleep(0.2)
    assert "rep" not in got  # the reader waits for a writer, as on Linux
    t0 = time.monotonic()
    for _ in range(20):
        assert call(client, Op.STAT, b"/etc/passwd").errno == 0
    assert time.monotonic() - t0 < 1.0
    w = os.open(host / "rw" / "fifo", os.O_WRONLY)  # the writer arrives: the open completes
    t.join(5)
    os.write(w, b"through the fifo")
    os.close(w)
    rep = got["rep"]
    assert rep.errno == 0 and os.read(rep.fd, 100) == b"through the fifo"
    os.close(rep.fd)


def test_renaming_a_directory_cannot_move_protected_files_out(env):
    _, host, client, _ = env
    rw = host / "rw"
    (rw / "locked" / "sub").mkdir()
    (rw / "locked" / "sub" / "x").write_text("keep")
    (rw / "free").mkdir()
    (rw / "free" / "y").write_text("y")
    # the readonly directory's parent cannot be renamed away from the rule...
    rep = call(client, Op.RENAME, b"/rw/locked", name2=b"/rw/unlocked")
    assert rep.errno == E.EXDEV and rep.rule_kind == RULE_READONLY
    assert rep.path == b"/rw/locked/f" or rep.path.startswith(b"/rw/locked/")
    # ...nor can a subdirectory be moved out of it (that is a write under the rule)
    rep = call(client, Op.RENAME, b"/rw/locked/sub", name2=b"/rw/sub")
    assert rep.errno == E.EROFS and rep.rule_kind == RULE_READONLY
    # a directory with nothing protected inside renames as usual
    assert call(client, Op.RENAME, b"/rw/free", name2=b"/rw/free2").errno == 0
    assert (rw / "free2" / "y").read_text() == "y"
    assert (rw / "locked" / "sub" / "x").read_text() == "keep"


@pytest.mark.parametrize("name", [b"//ro/secret/k", b"///ro//secret/./k", b"/ro/secret/../secret/k",
                                  b"//rw/to-secret"])
def test_spellings_of_a_denied_path(env, name):
    _, _, client, _ = env
    rep, data = read_open(client, name)
    assert (rep.errno, rep.rule_kind, data) == (E.ENOENT, RULE_DENY, None)
