"""File calls served through the Gofer (filesystem.mediation: gofer).

Each handler reads the path from the caller's memory once, names the caller's directory
descriptor as the base (the Sentry opens /proc/<tid>/fd/<dirfd>, or /proc/<tid>/cwd for
AT_FDCWD, as O_PATH and attaches it to the request), asks the Gofer, and answers: an
injected descriptor for opens, a stat buffer written into the caller's memory, or an
errno. It never lets the kernel re-run a call it decided.

The working directory is the kernel's: chdir, fchdir and getcwd are not trapped. The
kernel resolves them in the sandbox's mount tree, where the launcher has hidden the
`deny` paths in both mediation modes (sentry/launch/mnt.py), so a relative path means
the same thing to the Sentry, the Gofer and the kernel (`cd d && ./prog` works).

Path calls the Gofer has no operation for (the write side of xattrs, mount, chroot,
acct, swapon, name_to_handle_at, fanotify_mark, ...) are refused with an event when a
profile allows them: untrapped, they would bypass the path rules.

Every refusal the Gofer attributes to a rule (deny / readonly globs), and every EACCES,
EPERM, EROFS, EXDEV or magic-link ELOOP the kernel gave the Gofer, is a `file` event.

The attribute cache (root `cache: exclusive`, docs/gofer.md): a successful stat the Gofer
marks REPLY_CACHEABLE is kept under the bytes the Sentry read (absolute names only) and
answers the same call again without a Gofer round trip. Everything the sandbox can do to
change such an answer reaches the Sentry first, which then drops the whole cache: a call
the Gofer makes that changes a name or a file (before it is sent and again after the
reply, so a stat answered in between cannot survive), and fchmod/fchown/f*xattr, trapped
for it (@gofer-observed). A file opened for writing, or changed through a descriptor, is
never cached again (its contents and times change without a call the Sentry sees): its
(device, inode) goes into a set every insertion is checked against. An insertion made
while the cache was dropped takes itself back (a generation count), so no lock is taken.

The open cache rides on the same rules. When a name the Gofer marks cacheable (a plain
file in the root's own tree, opened only to read) is opened a second time with the same
flags, the Sentry asks the Gofer, without waiting, to open it once more, and the next
such open is answered with that descriptor: no Gofer round trip on the program's time.
Each descriptor so used asks for the next. What the cache drops, it drops too: its
descriptors are closed and the requests in flight forgotten, and a descriptor asked for
before a drop is never used after it. A descriptor opened ahead is the same file (the
same inode, a fresh open file description, offset 0) that an open made at the moment of
use would give, as nothing that can change the name happened in between.
"""

from __future__ import annotations

import errno as E
import os
import socket
import stat
import struct
import threading

from ..gofer import sys as gsys
from ..gofer.client import GoferClient, GoferGone
from ..gofer.policy import RULE_DENY, RULE_MAGICLINK, RULE_NONE, RULE_READONLY, RULE_SYNTHETIC
from ..gofer.protocol import (HANDLE_ROOT, OPEN_NO_WAIT, REPLY_CACHEABLE, WOULD_BLOCK, Op,
                              Reply, Request)
from .call import Call, Continue, Decision, Errno, InjectFd, Kill, Memory, Return, SentryContext
from .dispatch_util import Deferred, defers, read_comm
from .table import Entry
from ..engine.record import record

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any, Callable

AT_FDCWD = -100
O_CLOEXEC = os.O_CLOEXEC
_REFUSALS = frozenset((E.EACCES, E.EPERM, E.EROFS, E.EXDEV))
_OPS = {int(o): o.name.lower() for o in Op}
_RULE_NAMES = {RULE_DENY: "deny", RULE_READONLY: "readonly", RULE_MAGICLINK: "magic link",
               RULE_SYNTHETIC: "synthetic file"}


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


@record
class _Task:
    """A thread's ids: host thread group, and pid/tid in the sandbox's pid namespace."""

    tgid: int  # host view
    nspid: int  # sandbox pid namespace view, for /proc/self
    nstid: int


# Gofer operations that change nothing (an OPEN changes something only with these flags)
_READ_OPS = frozenset((Op.PING, Op.STAT, Op.STATX, Op.ACCESS, Op.READLINK, Op.CHDIR,
                       Op.GETPATH))
_WRITE_OPEN = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | 0o20000000  # | __O_TMPFILE
_CACHE_MAX = 16384  # entries; a full cache starts again empty
_VOLATILE_MAX = 65536  # inodes; past this the cache is switched off for the run
_AT_STATX_FORCE_SYNC = 0x2000
_TASKS_MAX = 4096  # remembered thread ids; past this the map starts again empty
_AHEAD_MAX = 64  # opens asked for ahead (each holds a descriptor once answered)
_SEEN_MAX = 4096  # names opened once; past this the set starts again empty
# opens never served ahead: writing, creating, truncating, O_TMPFILE, O_PATH
_NOT_AHEAD = _WRITE_OPEN | os.O_PATH


class FsState:
    """Per-Sentry state of the file handlers: the Gofer client, thread ids, the attribute cache."""

    def __init__(self, client: GoferClient, cache_on: bool = False) -> None:
        self.client = client
        self.tasks: dict[int, _Task] = {}  # host tid -> ids
        self.lock = threading.Lock()
        # the attribute cache (module docstring)
        self.cache_on = cache_on
        self.attrs: dict[tuple[int, bytes, int, int], bytes] = {}
        self.gen = 0
        self.volatile: set[tuple[int, int]] = set()
        self.hits = 0
        self.misses = 0
        self.drops = 0
        # the open cache (module docstring): opens asked of the Gofer ahead, by (name,
        # flags), as (request id, the generation they were asked in); names opened once
        # (a second open starts opening ahead)
        self.ahead: dict[tuple[bytes, int], tuple[int, int]] = {}
        self.seen: set[tuple[bytes, int]] = set()
        self.ahead_hits = 0

    def drop_cache(self) -> None:
        self.gen += 1  # first: an insertion racing with this sees the change
        self.attrs.clear()
        self.drops += 1
        ahead = self.ahead
        while ahead:  # popitem is atomic: a thread taking one meanwhile gets it or not
            try:
                self.client.forget(ahead.popitem()[1][0])
            except KeyError:
                break

    def take_ahead(self, key: tuple[bytes, int]) -> int:
        """The descriptor the Gofer opened ahead for `key`, or -1 (none asked for, or the
        cache was dropped since). Waits for it if need be: it is the answer a request
        sent now would get, sooner."""
        p = self.ahead.pop(key, None)
        if p is None:
            return -1
        rep = self.client.take(p[0])
        if rep.errno or not rep.flags & REPLY_CACHEABLE or p[1] != self.gen:
            if rep.fd >= 0:
                os.close(rep.fd)
            return -1
        return rep.fd

    def opened(self, key: tuple[bytes, int]) -> None:
        """The Gofer answered an open of `key` it marked cacheable: the second such open
        starts opening it ahead."""
        seen = self.seen
        if key in seen:
            self.open_ahead(key)
            return
        if len(seen) >= _SEEN_MAX:
            seen.clear()
        seen.add(key)

    def open_ahead(self, key: tuple[bytes, int]) -> None:
        """Ask the Gofer, without waiting, to open `key` again for the program's next open
        of it. (No caller ids: a name it marks cacheable is outside /proc, the only place
        where the caller matters.)"""
        ahead = self.ahead
        if key in ahead or not self.cache_on:
            return
        if len(ahead) >= _AHEAD_MAX:
            try:  # the oldest makes room
                self.client.forget(ahead.pop(next(iter(ahead)))[0])
            except (KeyError, StopIteration, RuntimeError):
                return
        req = Request(Op.OPEN, key[0], HANDLE_ROOT, flags=key[1] | O_CLOEXEC,
                      a=(OPEN_NO_WAIT, 0, 0, 0))
        gen = self.gen
        try:
            entry = (self.client.submit(req), gen)
        except GoferGone:
            return  # the caller's next file call finds out
        if ahead.setdefault(key, entry) is not entry:  # another thread asked first
            self.client.forget(entry[0])

    def mark_volatile(self, dev: int, ino: int) -> None:
        if len(self.volatile) >= _VOLATILE_MAX:
            self.cache_on = False  # and what it holds goes (no more drops will come)
            self.drop_cache()
        self.volatile.add((dev, ino))

    def remember(self, key: tuple[int, bytes, int, int], data: bytes, gen: int) -> None:
        """Keep a cacheable stat answer got while the generation was `gen`."""
        ident = _inode(key[0], data)
        if ident is None or ident in self.volatile or not self.cache_on:
            return
        attrs = self.attrs
        if len(attrs) >= _CACHE_MAX:
            attrs.clear()
        attrs[key] = data
        if self.gen != gen:  # dropped meanwhile: the answer may predate the change
            attrs.pop(key, None)

    def task(self, tid: int, fresh: bool = False) -> _Task:
        """The ids of host thread `tid`, remembered. Thread ids are reused once a task is
        gone (the Sentry does not see exits), so `fresh` reads them again: for what
        depends on them being right (a /proc/self path, a pidfd of the caller)."""
        t = None if fresh else self.tasks.get(tid)
        if t is not None:
            return t
        tgid, nspid, nstid = tid, 0, 0
        try:
            with open(f"/proc/{tid}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Tgid:"):
                        tgid = int(line.split()[1])
                    elif line.startswith(b"NSpid:"):
                        nspid = int(line.split()[-1])
        except (OSError, ValueError, IndexError):
            pass
        nstid = nspid
        if tgid != tid:
            try:
                with open(f"/proc/{tgid}/status", "rb") as fh:
                    for line in fh:
                        if line.startswith(b"NSpid:"):
                            nspid = int(line.split()[-1])
            except (OSError, ValueError, IndexError):
                pass
        t = _Task(tgid, nspid, nstid)
        with self.lock:
            if len(self.tasks) >= _TASKS_MAX:  # bounded: a build may start 100,000s
                self.tasks.clear()
            self.tasks[tid] = t
        return t


def _inode(op: int, data: bytes) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a raw struct stat or struct statx (x86_64), as os.stat gives."""
    if op == Op.STATX:
        if len(data) < 144:
            return None
        ino, = struct.unpack_from("<Q", data, 32)
        major, minor = struct.unpack_from("<II", data, 136)
        return (os.makedev(major, minor), ino) if ino else None
    if len(data) < 16:
        return None
    dev, ino = struct.unpack_from("<QQ", data, 0)
    return (dev, ino) if ino else None


def _names_caller(name: bytes) -> bool:
    """May the Gofer map this name to the caller's pid (/proc/self, /proc/thread-self,
    /proc/mounts, /proc/net)? Then the caller's ids are read now, not remembered (a
    thread id is reused once its task is gone). An absolute name must go through /proc;
    a relative one may start below a /proc descriptor."""
    if b"self" not in name and b"mounts" not in name and b"net" not in name:
        return False
    return name[:1] != b"/" or b"/proc" in name


def _state(ctx: SentryContext) -> FsState:
    st = ctx.extra.get("fs")
    if st is None:
        sock = ctx.gofer_sock
        if isinstance(sock, int):
            sock = socket.socket(fileno=sock)
        st = ctx.extra.setdefault("fs", FsState(
            GoferClient(sock), cache_on=ctx.plan.gofer.root.cache == "exclusive"))
    return st


class _Fail(Exception):
    def __init__(self, errno: int) -> None:
        self.errno = errno


def _read_path(mem: Memory, addr: int) -> bytes:
    if not addr:
        raise _Fail(E.EFAULT)
    try:
        return mem.read_cstr(addr, 4096)
    except OSError as exc:
        raise _Fail(E.ENAMETOOLONG if exc.errno == E.ENAMETOOLONG else E.EFAULT) from None


def _dirfd(tid: int, dirfd: int) -> int:
    """An O_PATH descriptor (the Sentry's) for the caller's descriptor `dirfd`, or for its
    kernel working directory when `dirfd` is AT_FDCWD."""
    if dirfd == AT_FDCWD:
        try:
            return os.open(f"/proc/{tid}/cwd", os.O_PATH | os.O_CLOEXEC)
        except OSError:
            raise _Fail(E.ENOENT) from None
    if dirfd < 0:
        raise _Fail(E.EBADF)
    try:
        return os.open(f"/proc/{tid}/fd/{dirfd}", os.O_PATH | os.O_CLOEXEC)
    except OSError:
        raise _Fail(E.EBADF) from None


class _Where:
    """A path argument made ready for a request: (handle, name) plus attached fds."""

    __slots__ = ("handle", "name", "fds")

    def __init__(self) -> None:
        self.handle = HANDLE_ROOT
        self.name = b""
        self.fds: list[int] = []

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def _where(st: FsState, call: Call, dirfd: int, name: bytes, w: _Where | None = None) -> _Where:
    w = w or _Where()
    if name.startswith(b"/"):
        w.handle, w.name = HANDLE_ROOT, name
        return w
    if not name:
        w.handle, w.name = HANDLE_ROOT, b""
        return w
    w.fds.append(_dirfd(call.pid, dirfd))
    w.handle, w.name = len(w.fds) - 1, name
    return w


def _ask(ctx: SentryContext, st: FsState, call: Call, req: Request, fds: list[int]) -> Reply:
    t = st.task(call.pid, _names_caller(req.name))
    req = Request(*req[:8], t.nspid, t.nstid, req.a)
    op = req.op
    if not st.cache_on or op in _READ_OPS or (op == Op.OPEN and not req.flags & _WRITE_OPEN):
        return st.client.call(req, fds)
    # a change: drop the attribute cache before and after (module docstring)
    st.drop_cache()
    try:
        rep = st.client.call(req, fds)
        if op == Op.OPEN and rep.fd >= 0:
            s = os.fstat(rep.fd)  # opened for writing: never cached again
            st.mark_volatile(s.st_dev, s.st_ino)
    finally:
        st.drop_cache()
    return rep


def _refused(ctx: SentryContext, call: Call, req: Request, rep: Reply) -> None:
    e = rep.errno
    if rep.rule_kind == RULE_NONE and e not in _REFUSALS:
        return
    if not ctx.plan.sentry.audit.file_access:
        return
    rule = None
    path = rep.path.decode("utf-8", "replace") or req.name.decode("utf-8", "replace")
    src = None
    if rep.rule_kind in (RULE_DENY, RULE_READONLY):
        rules = ctx.plan.gofer.deny if rep.rule_kind == RULE_DENY else ctx.plan.gofer.readonly
        if 0 <= rep.rule_index < len(rules):
            src = rules[rep.rule_index].source
    elif e in (E.EROFS, E.EXDEV):
        src = _mount_source(ctx, path)  # the mount that is read-only, or that was crossed
    if src is not None:
        rule = {"file": src.file, "line": src.line, "col": src.col, "text": src.text}
    ev: dict[str, Any] = {
        "pid": call.pid, "comm": read_comm(call.pid), "kind": "file", "syscall": call.name,
        "nr": call.nr, "args": list(call.args), "path": path, "op": _OPS.get(req.op, "?"),
        "action": "deny", "errno": e, "errno_name": E.errorcode.get(e, str(e)),
        "decoded": f"{call.name}({path!r})", "rule": rule,
    }
    if rep.rule_kind != RULE_NONE:
        ev["reason"] = _RULE_NAMES.get(rep.rule_kind, "")
    ctx.event(ev)


def _mount_source(ctx: SentryContext, path: str) -> Any:
    """Where the profile made the mount holding `path` (longest target prefix), or the
    root's entry."""
    best, best_len = None, -1
    for m in ctx.plan.gofer.mounts:
        t = m.target.rstrip("/") or "/"
        if (path == t or path.startswith(t + "/") or t == "/") and len(t) > best_len:
            best, best_len = m.source_loc, len(t)
    return best if best is not None else ctx.plan.gofer.root.source_loc


def _serve(ctx: SentryContext, call: Call, body: Callable[[FsState], Decision]) -> Decision:
    try:
        st = _state(ctx)
        return body(st)
    except _Fail as f:
        return Errno(f.errno)
    except GoferGone:
        return Kill("the Gofer is gone: no file access can be served")


def _simple(ctx: SentryContext, call: Call, st: FsState, req: Request, fds: list[int]) -> Reply:
    rep = _ask(ctx, st, call, req, fds)
    if rep.errno:
        _refused(ctx, call, req, rep)
    return rep


# -- opens ---------------------------------------------------------------------------------


def _open(ctx: SentryContext, call: Call, mem: Memory, dirfd: int, path_addr: int, flags: int,
          mode: int) -> Decision:
    def attempt(st: FsState, name: bytes, key: tuple[bytes, int] | None,
                no_wait: int) -> Decision | None:
        w = _where(st, call, dirfd, name)
        try:
            req = Request(Op.OPEN, w.name, w.handle, flags=flags, mode=mode, a=(no_wait, 0, 0, 0))
            rep = _simple(ctx, call, st, req, w.fds)
        finally:
            w.close()
        if rep.errno:
            return None if rep.errno == WOULD_BLOCK else Errno(rep.errno)
        if rep.fd < 0:
            return Errno(E.EIO)
        if key is not None and rep.flags & REPLY_CACHEABLE:
            st.opened(key)
        return InjectFd(rep.fd, bool(flags & O_CLOEXEC))

    def body(st: FsState) -> Decision:
        name = _read_path(mem, path_addr)  # read once; a deferred open reuses it
        key = None
        if st.cache_on and name[:1] == b"/" and not flags & _NOT_AHEAD:
            key = (name, flags & ~O_CLOEXEC)  # (the open cache, module docstring)
            fd = st.take_ahead(key)
            if fd >= 0:
                st.ahead_hits += 1
                st.open_ahead(key)
                return InjectFd(fd, bool(flags & O_CLOEXEC))
        if getattr(mem, "may_defer", False):  # on the loop thread: never wait there
            d = attempt(st, name, key, OPEN_NO_WAIT)
            if d is not None:
                return d
            raise Deferred(lambda: _serve(ctx, call, lambda st2: attempt(st2, name, key, 0)
                                          or Errno(E.EIO)))
        return attempt(st, name, key, 0) or Errno(E.EIO)

    return _serve(ctx, call, body)


@defers
def handle_open(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _open(ctx, call, mem, AT_FDCWD, a[0], _s32(a[1]), a[2] & 0o7777)


@defers
def handle_creat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _open(ctx, call, mem, AT_FDCWD, a[0], os.O_CREAT | os.O_WRONLY | os.O_TRUNC,
                 a[1] & 0o7777)


@defers
def handle_openat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _open(ctx, call, mem, _s32(a[0]), a[1], _s32(a[2]), a[3] & 0o7777)


@defers
def handle_openat2(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    size = a[3]
    if size < 24 or size > 4096:
        return Errno(E.EINVAL)
    try:
        raw = mem.read(a[2], size)
    except OSError:
        return Errno(E.EFAULT)
    flags, mode, resolve = struct.unpack_from("<QQQ", raw)
    if any(raw[24:]) or flags >> 32:
        return Errno(E.E2BIG if any(raw[24:]) else E.EINVAL)
    if resolve:
        # RESOLVE_* scoping is the Gofer's own business; a program asking for its own
        # scoping gets the fallback answer of kernels without openat2.
        return Errno(E.ENOSYS)
    return _open(ctx, call, mem, _s32(a[0]), a[1], int(flags), int(mode) & 0o7777)


# -- the stat family -----------------------------------------------------------------------


def _fd_stat(call: Call, mem: Memory, dirfd: int, buf: int, statx: tuple[int, int] | None,
             st: FsState) -> Decision:
    """AT_EMPTY_PATH (glibc's fstat): stat the caller's descriptor itself, here."""
    fd = _dirfd(call.pid, dirfd)
    try:
        if statx is None:
            data = gsys.fstatat_raw(fd, b"", gsys.AT_EMPTY_PATH)
        else:
            data = gsys.statx_raw(fd, b"", gsys.AT_EMPTY_PATH | (statx[0] & gsys.AT_STATX_SYNC_TYPE),
                                  statx[1])
    except OSError as exc:
        return Errno(exc.errno or E.EIO)
    finally:
        os.close(fd)
    try:
        mem.write(buf, data)
    except OSError:
        return Errno(E.EFAULT)
    return Return(0)


def _stat(ctx: SentryContext, call: Call, mem: Memory, dirfd: int, path_addr: int, buf: int,
          at_flags: int, statx_mask: int | None) -> Decision:
    def body(st: FsState) -> Decision:
        name = _read_path(mem, path_addr)
        if not name:
            if not at_flags & gsys.AT_EMPTY_PATH:
                return Errno(E.ENOENT)
            if dirfd != AT_FDCWD:
                sx = None if statx_mask is None else (at_flags, statx_mask)
                return _fd_stat(call, mem, dirfd, buf, sx, st)
            name = b"."
        op = Op.STAT if statx_mask is None else Op.STATX
        flags = at_flags & ~gsys.AT_EMPTY_PATH
        key = None
        if st.cache_on and name[:1] == b"/" and not flags & _AT_STATX_FORCE_SYNC:
            key = (op, name, flags, statx_mask or 0)
            data = st.attrs.get(key)
            if data is not None:
                st.hits += 1
                try:
                    mem.write(buf, data)
                except OSError:
                    return Errno(E.EFAULT)
                return Return(0)
            st.misses += 1
        gen = st.gen
        w = _where(st, call, dirfd, name)
        try:
            req = Request(op, w.name, w.handle, at_flags=flags, a=(statx_mask or 0, 0, 0, 0))
            rep = _simple(ctx, call, st, req, w.fds)
        finally:
            w.close()
        if rep.errno:
            return Errno(rep.errno)
        if key is not None and rep.flags & REPLY_CACHEABLE:
            st.remember(key, rep.data, gen)
        try:
            mem.write(buf, rep.data)
        except OSError:
            return Errno(E.EFAULT)
        return Return(0)

    return _serve(ctx, call, body)


def handle_stat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _stat(ctx, call, mem, AT_FDCWD, call.args[0], call.args[1], 0, None)


def handle_lstat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _stat(ctx, call, mem, AT_FDCWD, call.args[0], call.args[1],
                 gsys.AT_SYMLINK_NOFOLLOW, None)


def handle_newfstatat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    flags = _s32(a[3])
    if flags & ~(gsys.AT_SYMLINK_NOFOLLOW | gsys.AT_EMPTY_PATH | 0x800):  # 0x800 AT_NO_AUTOMOUNT
        return Errno(E.EINVAL)
    return _stat(ctx, call, mem, _s32(a[0]), a[1], a[2], flags, None)


def handle_statx(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    flags = _s32(a[2])
    if flags & ~(gsys.AT_SYMLINK_NOFOLLOW | gsys.AT_EMPTY_PATH | 0x800 | gsys.AT_STATX_SYNC_TYPE):
        return Errno(E.EINVAL)
    return _stat(ctx, call, mem, _s32(a[0]), a[1], a[4], flags, a[3] & 0xFFFFFFFF)


def _access(ctx: SentryContext, call: Call, mem: Memory, dirfd: int, path_addr: int, mode: int,
            flags: int) -> Decision:
    if mode & ~7:
        return Errno(E.EINVAL)

    def body(st: FsState) -> Decision:
        name = _read_path(mem, path_addr)
        if not name and flags & gsys.AT_EMPTY_PATH and dirfd != AT_FDCWD:
            fd = _dirfd(call.pid, dirfd)
            os.close(fd)
            return Return(0)
        w = _where(st, call, dirfd, name)
        try:
            rep = _simple(ctx, call, st, Request(Op.ACCESS, w.name, w.handle, mode=mode,
                                                 at_flags=flags & ~gsys.AT_EMPTY_PATH), w.fds)
        finally:
            w.close()
        return Errno(rep.errno) if rep.errno else Return(0)

    return _serve(ctx, call, body)


def handle_access(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _access(ctx, call, mem, AT_FDCWD, call.args[0], _s32(call.args[1]), 0)


def handle_faccessat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _access(ctx, call, mem, _s32(a[0]), a[1], _s32(a[2]), 0)


def handle_faccessat2(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    flags = _s32(a[3])
    if flags & ~(gsys.AT_EACCESS | gsys.AT_SYMLINK_NOFOLLOW | gsys.AT_EMPTY_PATH):
        return Errno(E.EINVAL)
    return _access(ctx, call, mem, _s32(a[0]), a[1], _s32(a[2]), flags)


def _readlink(ctx: SentryContext, call: Call, mem: Memory, dirfd: int, path_addr: int, buf: int,
              size: int) -> Decision:
    if _s32(size) <= 0:
        return Errno(E.EINVAL)

    def body(st: FsState) -> Decision:
        name = _read_path(mem, path_addr)
        w = _where(st, call, dirfd, name)
        try:
            rep = _simple(ctx, call, st, Request(Op.READLINK, w.name, w.handle), w.fds)
        finally:
            w.close()
        if rep.errno:
            return Errno(rep.errno)
        data = rep.data[:size]
        try:
            mem.write(buf, data)
        except OSError:
            return Errno(E.EFAULT)
        return Return(len(data))

    return _serve(ctx, call, body)


def handle_readlink(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _readlink(ctx, call, mem, AT_FDCWD, a[0], a[1], a[2])


def handle_readlinkat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _readlink(ctx, call, mem, _s32(a[0]), a[1], a[2], a[3])


# -- calls that change the tree ------------------------------------------------------------


def _one(ctx: SentryContext, call: Call, mem: Memory, op: Op, dirfd: int, path_addr: int,
         **kw: Any) -> Decision:
    def body(st: FsState) -> Decision:
        name = _read_path(mem, path_addr)
        at_flags = kw.get("at_flags", 0)
        if not name and at_flags & gsys.AT_EMPTY_PATH and dirfd != AT_FDCWD:
            w = _Where()
            w.fds.append(_dirfd(call.pid, dirfd))
            w.handle = 0
        else:
            w = _where(st, call, dirfd, name)
            kw["at_flags"] = at_flags & ~gsys.AT_EMPTY_PATH
        try:
            rep = _simple(ctx, call, st, Request(op, w.name, w.handle, **kw), w.fds)
        finally:
            w.close()
        return Errno(rep.errno) if rep.errno else Return(0)

    return _serve(ctx, call, body)


def _two(ctx: SentryContext, call: Call, mem: Memory, op: Op, dirfd1: int, addr1: int,
         dirfd2: int, addr2: int, *, literal_first: bool = False, **kw: Any) -> Decision:
    def body(st: FsState) -> Decision:
        name1 = _read_path(mem, addr1)
        name2 = _read_path(mem, addr2)
        w = _Where()
        try:
            if literal_first:  # symlink's target is text, not a path to resolve
                h1, n1 = HANDLE_ROOT, name1
            else:
                _where(st, call, dirfd1, name1, w)
                h1, n1 = w.handle, w.name
            _where(st, call, dirfd2, name2, w)
            h2, n2 = w.handle, w.name
            rep = _simple(ctx, call, st, Request(op, n1, h1, n2, h2, **kw), w.fds)
        finally:
            w.close()
        return Errno(rep.errno) if rep.errno else Return(0)

    return _serve(ctx, call, body)


def handle_mkdir(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _one(ctx, call, mem, Op.MKDIR, AT_FDCWD, call.args[0], mode=call.args[1] & 0o7777)


def handle_mkdirat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _one(ctx, call, mem, Op.MKDIR, _s32(a[0]), a[1], mode=a[2] & 0o7777)


def handle_unlink(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _one(ctx, call, mem, Op.UNLINK, AT_FDCWD, call.args[0])


def handle_rmdir(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _one(ctx, call, mem, Op.UNLINK, AT_FDCWD, call.args[0], at_flags=gsys.AT_REMOVEDIR)


def handle_unlinkat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    flags = _s32(a[2])
    if flags & ~gsys.AT_REMOVEDIR:
        return Errno(E.EINVAL)
    return _one(ctx, call, mem, Op.UNLINK, _s32(a[0]), a[1], at_flags=flags)


def handle_rename(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _two(ctx, call, mem, Op.RENAME, AT_FDCWD, a[0], AT_FDCWD, a[1])


def handle_renameat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _two(ctx, call, mem, Op.RENAME, _s32(a[0]), a[1], _s32(a[2]), a[3])


def handle_renameat2(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _two(ctx, call, mem, Op.RENAME, _s32(a[0]), a[1], _s32(a[2]), a[3],
                flags=a[4] & 0xFFFFFFFF)


def handle_link(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _two(ctx, call, mem, Op.LINK, AT_FDCWD, a[0], AT_FDCWD, a[1])


def handle_linkat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    flags = _s32(a[4])
    if flags & ~(gsys.AT_SYMLINK_FOLLOW | gsys.AT_EMPTY_PATH):
        return Errno(E.EINVAL)
    if flags & gsys.AT_EMPTY_PATH:
        return Errno(E.ENOENT)  # linking an open descriptor needs CAP_DAC_READ_SEARCH
    return _two(ctx, call, mem, Op.LINK, _s32(a[0]), a[1], _s32(a[2]), a[3], at_flags=flags)


def handle_symlink(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _two(ctx, call, mem, Op.SYMLINK, AT_FDCWD, a[0], AT_FDCWD, a[1], literal_first=True)


def handle_symlinkat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _two(ctx, call, mem, Op.SYMLINK, AT_FDCWD, a[0], _s32(a[1]), a[2], literal_first=True)


def handle_chmod(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _one(ctx, call, mem, Op.CHMOD, AT_FDCWD, call.args[0], mode=call.args[1] & 0o7777)


def handle_fchmodat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _one(ctx, call, mem, Op.CHMOD, _s32(a[0]), a[1], mode=a[2] & 0o7777)


def handle_fchmodat2(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    flags = _s32(a[3])
    if flags & ~(gsys.AT_SYMLINK_NOFOLLOW | gsys.AT_EMPTY_PATH):
        return Errno(E.EINVAL)
    return _one(ctx, call, mem, Op.CHMOD, _s32(a[0]), a[1], mode=a[2] & 0o7777, at_flags=flags)


def handle_mknod(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _one(ctx, call, mem, Op.MKNOD, AT_FDCWD, a[0], mode=a[1] & 0xFFFFFFFF,
                a=(a[2] & 0xFFFFFFFF, 0, 0, 0))


def handle_mknodat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _one(ctx, call, mem, Op.MKNOD, _s32(a[0]), a[1], mode=a[2] & 0xFFFFFFFF,
                a=(a[3] & 0xFFFFFFFF, 0, 0, 0))


def _ids(uid: int, gid: int) -> tuple[int, int, int, int]:
    return (_s32(uid) & 0xFFFFFFFF, _s32(gid) & 0xFFFFFFFF, 0, 0)


def handle_chown(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _one(ctx, call, mem, Op.CHOWN, AT_FDCWD, a[0], a=_ids(a[1], a[2]))


def handle_lchown(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _one(ctx, call, mem, Op.CHOWN, AT_FDCWD, a[0], a=_ids(a[1], a[2]),
                at_flags=gsys.AT_SYMLINK_NOFOLLOW)


def handle_fchownat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    flags = _s32(a[4])
    if flags & ~(gsys.AT_SYMLINK_NOFOLLOW | gsys.AT_EMPTY_PATH):
        return Errno(E.EINVAL)
    return _one(ctx, call, mem, Op.CHOWN, _s32(a[0]), a[1], a=_ids(a[2], a[3]), at_flags=flags)


def handle_truncate(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    length = a[1] - (1 << 64) if a[1] >> 63 else a[1]
    if length < 0:
        return Errno(E.EINVAL)
    return _one(ctx, call, mem, Op.TRUNCATE, AT_FDCWD, a[0], a=(length, 0, 0, 0))


def handle_utimensat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    dirfd, path_addr, times_addr, flags = _s32(a[0]), a[1], a[2], _s32(a[3])
    if flags & ~(gsys.AT_SYMLINK_NOFOLLOW | gsys.AT_EMPTY_PATH):
        return Errno(E.EINVAL)
    if times_addr:
        try:
            t = struct.unpack("<qqqq", mem.read(times_addr, 32))
        except OSError:
            return Errno(E.EFAULT)
        times, tflag = t, 0
    else:
        times, tflag = (0, 0, 0, 0), 1
    if not path_addr:  # futimens(fd, times): the descriptor itself
        if dirfd == AT_FDCWD:
            return Errno(E.EFAULT)

        def body(st: FsState) -> Decision:
            w = _Where()
            w.fds.append(_dirfd(call.pid, dirfd))
            w.handle = 0
            try:
                rep = _simple(ctx, call, st, Request(Op.UTIMENS, b"", 0, flags=tflag, a=times,
                                                     at_flags=gsys.AT_EMPTY_PATH), w.fds)
            finally:
                w.close()
            return Errno(rep.errno) if rep.errno else Return(0)

        return _serve(ctx, call, body)
    return _one(ctx, call, mem, Op.UTIMENS, dirfd, path_addr, flags=tflag, a=times,
                at_flags=flags)


def _timevals(mem: Memory, addr: int, kind: str) -> tuple[int, int, int, int] | None:
    """utime's struct utimbuf or utimes' struct timeval[2] as utimensat times."""
    if not addr:
        return None
    try:
        if kind == "utimbuf":
            at, mt = struct.unpack("<qq", mem.read(addr, 16))
            return (at, 0, mt, 0)
        a_s, a_us, m_s, m_us = struct.unpack("<qqqq", mem.read(addr, 32))
    except OSError:
        raise _Fail(E.EFAULT) from None
    if not (0 <= a_us < 1_000_000 and 0 <= m_us < 1_000_000):
        raise _Fail(E.EINVAL)
    return (a_s, a_us * 1000, m_s, m_us * 1000)


def _old_utimes(ctx: SentryContext, call: Call, mem: Memory, dirfd: int, path_addr: int,
                times_addr: int, kind: str) -> Decision:
    try:
        times = _timevals(mem, times_addr, kind)
    except _Fail as f:
        return Errno(f.errno)
    return _one(ctx, call, mem, Op.UTIMENS, dirfd, path_addr, flags=1 if times is None else 0,
                a=times or (0, 0, 0, 0))


def handle_utime(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _old_utimes(ctx, call, mem, AT_FDCWD, call.args[0], call.args[1], "utimbuf")


def handle_utimes(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _old_utimes(ctx, call, mem, AT_FDCWD, call.args[0], call.args[1], "timeval")


def handle_futimesat(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    return _old_utimes(ctx, call, mem, _s32(a[0]), a[1], a[2], "timeval")


# -- calls the Gofer has no operation for ----------------------------------------------

def _refuse(ctx: SentryContext, call: Call, mem: Memory, path_addr: int | None, err: int,
            reason: str) -> Decision:
    """Refuse a path call (never Continue it) and record it as a `file` event."""
    path = ""
    if path_addr:
        try:
            path = mem.read_cstr(path_addr, 4096).decode("utf-8", "replace")
        except OSError:
            path = "?"
    if ctx.plan.sentry.audit.file_access:
        src = _mount_source(ctx, path) if path.startswith("/") else ctx.plan.gofer.root.source_loc
        rule = None if src is None else {"file": src.file, "line": src.line, "col": src.col,
                                         "text": src.text}
        ctx.event({
            "pid": call.pid, "comm": read_comm(call.pid), "kind": "file", "syscall": call.name,
            "nr": call.nr, "args": list(call.args), "path": path, "op": call.name,
            "action": "deny", "errno": err, "errno_name": E.errorcode.get(err, str(err)),
            "decoded": f"{call.name}({path!r})", "rule": rule, "reason": reason,
        })
    return Errno(err)


def _refuser(err: int, reason: str, path_arg: int | None = 0) -> Callable[..., Decision]:
    def handler(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
        addr = None if path_arg is None else call.args[path_arg]
        return _refuse(ctx, call, mem, addr, err, reason)
    return handler


_NOT_SERVED = "path call the Gofer does not serve"
handle_setxattr = _refuser(E.ENOTSUP, _NOT_SERVED)
handle_lsetxattr = _refuser(E.ENOTSUP, _NOT_SERVED)
handle_removexattr = _refuser(E.ENOTSUP, _NOT_SERVED)
handle_lremovexattr = _refuser(E.ENOTSUP, _NOT_SERVED)
handle_fanotify_mark = _refuser(E.EPERM, _NOT_SERVED, 4)
handle_name_to_handle_at = _refuser(E.EOPNOTSUPP, _NOT_SERVED, 1)
handle_acct = _refuser(E.EPERM, _NOT_SERVED)
handle_swapon = _refuser(E.EPERM, _NOT_SERVED)
handle_swapoff = _refuser(E.EPERM, _NOT_SERVED)
handle_chroot = _refuser(E.EPERM, _NOT_SERVED)
handle_pivot_root = _refuser(E.EPERM, _NOT_SERVED)
handle_mount = _refuser(E.EPERM, _NOT_SERVED, 1)
handle_umount2 = _refuser(E.EPERM, _NOT_SERVED)
handle_quotactl = _refuser(E.EPERM, _NOT_SERVED, 1)
handle_uselib = _refuser(E.EPERM, _NOT_SERVED)


# -- calls served on a descriptor the Gofer opened ----------------------------------------


def _opath(ctx: SentryContext, call: Call, st: FsState, mem: Memory, dirfd: int,
           path_addr: int, follow: bool) -> int:
    """An O_PATH descriptor of the caller's path, opened by the Gofer under the rules."""
    name = _read_path(mem, path_addr)
    if not name:
        raise _Fail(E.ENOENT)
    w = _where(st, call, dirfd, name)
    try:
        flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        rep = _simple(ctx, call, st, Request(Op.OPEN, w.name, w.handle, flags=flags), w.fds)
    finally:
        w.close()
    if rep.errno:
        raise _Fail(rep.errno)
    if rep.fd < 0:
        raise _Fail(E.EIO)
    return rep.fd


def handle_statfs(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    def body(st: FsState) -> Decision:
        fd = _opath(ctx, call, st, mem, AT_FDCWD, call.args[0], True)
        try:
            data = gsys.fstatfs_raw(fd)
        except OSError as exc:
            return Errno(exc.errno or E.EIO)
        finally:
            os.close(fd)
        try:
            mem.write(call.args[1], data)
        except OSError:
            return Errno(E.EFAULT)
        return Return(0)

    return _serve(ctx, call, body)


def _xattr(ctx: SentryContext, call: Call, mem: Memory, follow: bool, listing: bool) -> Decision:
    a = call.args
    buf, size = (a[1], a[2]) if listing else (a[2], a[3])

    def body(st: FsState) -> Decision:
        key = b""
        if not listing:
            try:
                key = mem.read_cstr(a[1], 256)
            except OSError:
                return Errno(E.EFAULT)
        fd = _opath(ctx, call, st, mem, AT_FDCWD, a[0], follow)
        try:
            if stat_is_link(fd):
                data = b""  # no user.* attributes on a symlink
                if not listing:
                    return Errno(E.ENODATA)
            else:
                where = f"/proc/self/fd/{fd}"  # the Gofer's descriptor, not the caller's path
                try:
                    if listing:
                        data = b"".join(n.encode("utf-8", "surrogateescape") + b"\0"
                                        for n in os.listxattr(where))
                    else:
                        data = os.getxattr(where, key)
                except OSError as exc:
                    return Errno(exc.errno or E.EIO)
        finally:
            os.close(fd)
        if size == 0:
            return Return(len(data))
        if size < len(data):
            return Errno(E.ERANGE)
        try:
            mem.write(buf, data)
        except OSError:
            return Errno(E.EFAULT)
        return Return(len(data))

    return _serve(ctx, call, body)


def stat_is_link(fd: int) -> bool:
    return stat.S_ISLNK(os.fstat(fd).st_mode)


def handle_getxattr(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _xattr(ctx, call, mem, True, False)


def handle_lgetxattr(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _xattr(ctx, call, mem, False, False)


def handle_listxattr(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _xattr(ctx, call, mem, True, True)


def handle_llistxattr(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return _xattr(ctx, call, mem, False, True)


_IN_DONT_FOLLOW = 0x02000000


def handle_inotify_add_watch(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    """The watch is added by the Sentry on a copy of the caller's inotify descriptor
    (pidfd_getfd), naming the Gofer's O_PATH descriptor instead of the caller's path."""
    a = call.args
    mask = a[2] & 0xFFFFFFFF

    def body(st: FsState) -> Decision:
        fd = _opath(ctx, call, st, mem, AT_FDCWD, a[1], not mask & _IN_DONT_FOLLOW)
        ifd = pidfd = -1
        try:
            pidfd = os.pidfd_open(st.task(call.pid, fresh=True).tgid)
            ifd = gsys.pidfd_getfd(pidfd, _s32(a[0]))
            return Return(gsys.inotify_add_watch(ifd, f"/proc/self/fd/{fd}".encode(),
                                                 mask & ~_IN_DONT_FOLLOW))
        except OSError as exc:
            return Errno(E.EBADF if exc.errno in (E.ESRCH, E.EPERM) else exc.errno or E.EIO)
        finally:
            for x in (fd, ifd, pidfd):
                if x >= 0:
                    os.close(x)

    return _serve(ctx, call, body)


# -- calls observed for the attribute cache ----------------------------------------------------


def observe_fd_meta(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    """fchmod, fchown, fsetxattr, fremovexattr (@gofer-observed): the kernel runs them as
    made (nothing is read from the caller: CONTINUE is safe); first the file is marked
    never to be cached again and the cache is dropped, so no stat answer older than the
    change can be kept."""
    st = ctx.extra.get("fs")
    if st is None or not st.cache_on:
        return Continue()
    try:
        fd = _dirfd(call.pid, _s32(call.args[0]))
        try:
            s = os.fstat(fd)
        finally:
            os.close(fd)
        st.mark_volatile(s.st_dev, s.st_ino)
    except (_Fail, OSError):
        pass  # not a descriptor of the caller's: the kernel refuses the call (EBADF)
    st.drop_cache()
    return Continue()


def cache_report(ctx: SentryContext) -> str | None:
    """One line for the debug log: what the attribute cache did in this run."""
    st = ctx.extra.get("fs")
    if st is None:
        return None
    state = "on" if st.cache_on else "off"
    return (f"attribute cache ({state}): {st.hits} hits, {st.misses} misses, {st.drops} drops, "
            f"{len(st.volatile)} files never cached; {st.ahead_hits} opens served ahead")


def _e(fn: str, note: str, *, block: bool = False, status: str = "supported") -> Entry:
    return Entry(f"sandboxctl.sentry.handlers_fs:{fn}", status, note, may_block=block)  # type: ignore[arg-type]


_OPEN = "opened by the Gofer, injected with ADDFD (O_CLOEXEC honoured)"
_STAT = "resolved by the Gofer; struct written back"
_CHANGE = "done by the Gofer under the profile's path rules"

TABLE: dict[str, Entry] = {
    "open": _e("handle_open", _OPEN, block=True),
    "openat": _e("handle_openat", _OPEN, block=True),
    "openat2": _e("handle_openat2", _OPEN + "; RESOLVE_* from the program: ENOSYS",
                  block=True, status="partial"),
    "creat": _e("handle_creat", _OPEN, block=True),
    "stat": _e("handle_stat", _STAT),
    "lstat": _e("handle_lstat", _STAT),
    "newfstatat": _e("handle_newfstatat", _STAT + "; AT_EMPTY_PATH (fstat) served in the Sentry"),
    "statx": _e("handle_statx", _STAT),
    "access": _e("handle_access", "checked by the Gofer as the program's uid"),
    "faccessat": _e("handle_faccessat", "checked by the Gofer as the program's uid"),
    "faccessat2": _e("handle_faccessat2", "checked by the Gofer as the program's uid"),
    "readlink": _e("handle_readlink", "read by the Gofer"),
    "readlinkat": _e("handle_readlinkat", "read by the Gofer"),
    "mkdir": _e("handle_mkdir", _CHANGE),
    "mkdirat": _e("handle_mkdirat", _CHANGE),
    "unlink": _e("handle_unlink", _CHANGE),
    "unlinkat": _e("handle_unlinkat", _CHANGE),
    "rmdir": _e("handle_rmdir", _CHANGE),
    "rename": _e("handle_rename", _CHANGE),
    "renameat": _e("handle_renameat", _CHANGE),
    "renameat2": _e("handle_renameat2", _CHANGE),
    "link": _e("handle_link", _CHANGE),
    "linkat": _e("handle_linkat", _CHANGE + "; AT_EMPTY_PATH refused"),
    "symlink": _e("handle_symlink", _CHANGE),
    "symlinkat": _e("handle_symlinkat", _CHANGE),
    "chmod": _e("handle_chmod", _CHANGE),
    "fchmodat": _e("handle_fchmodat", _CHANGE),
    "fchmodat2": _e("handle_fchmodat2", _CHANGE),
    "mknod": _e("handle_mknod", _CHANGE),
    "mknodat": _e("handle_mknodat", _CHANGE),
    "utime": _e("handle_utime", _CHANGE),
    "utimes": _e("handle_utimes", _CHANGE),
    "futimesat": _e("handle_futimesat", _CHANGE),
    "chown": _e("handle_chown", _CHANGE),
    "lchown": _e("handle_lchown", _CHANGE),
    "fchownat": _e("handle_fchownat", _CHANGE),
    "truncate": _e("handle_truncate", _CHANGE),
    "utimensat": _e("handle_utimensat", _CHANGE),
    "statfs": _e("handle_statfs", "fstatfs on an O_PATH descriptor the Gofer opened"),
    "getxattr": _e("handle_getxattr", "read on an O_PATH descriptor the Gofer opened"),
    "lgetxattr": _e("handle_lgetxattr", "read on an O_PATH descriptor the Gofer opened; "
                    "symlinks: ENODATA", status="partial"),
    "listxattr": _e("handle_listxattr", "read on an O_PATH descriptor the Gofer opened"),
    "llistxattr": _e("handle_llistxattr", "read on an O_PATH descriptor the Gofer opened; "
                     "symlinks: empty", status="partial"),
    "inotify_add_watch": _e("handle_inotify_add_watch",
                            "added by the Sentry on the Gofer's O_PATH descriptor"),
}
TABLE["fd_meta"] = Entry("sandboxctl.sentry.handlers_fs:observe_fd_meta", "supported",
                         "run by the kernel; first the Sentry's attribute cache forgets the file",
                         syscalls=("fchmod", "fchown", "fsetxattr", "fremovexattr"))
for _name in ("setxattr", "lsetxattr", "removexattr", "lremovexattr", "fanotify_mark",
              "name_to_handle_at", "acct", "swapon", "swapoff", "chroot", "pivot_root", "mount",
              "umount2", "quotactl", "uselib"):
    TABLE[_name] = Entry(f"sandboxctl.sentry.handlers_fs:handle_{_name}", "partial",
                         "a path call the Gofer does not serve: refused with a file event")


__all__ = ["TABLE", "FsState", "cache_report"]
