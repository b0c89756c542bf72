"""The Gofer's file server: one request in, one reply (and maybe one descriptor) out.

Resolution (docs/gofer.md, "How a path is resolved"):

1. The request path is made absolute (against `/` or the canonical path of the attached
   directory), `/proc/self` is rewritten to the caller's pid, and the lexically normalized
   path is checked against the synthetic files and the deny/readonly globs.
2. The kernel resolves it in one openat2(root_fd, path, O_PATH, RESOLVE_IN_ROOT |
   RESOLVE_NO_MAGICLINKS): `..` and absolute symlinks stay inside the sandbox root, magic
   links (/proc/<pid>/root, /proc/<pid>/fd/N) are refused with ELOOP, and a directory
   swapped for a symlink mid-walk cannot lead out (the kernel checks the walk atomically).
3. The canonical path of what was found (readlink of the Gofer's own /proc fd entry) is
   checked against the globs again: symlinks cannot smuggle a denied path in.
4. The operation is done on that O_PATH descriptor (AT_EMPTY_PATH calls, or a reopen
   through the Gofer's /proc fd directory), or on (parent descriptor, last name) for calls
   that create or remove names. Nothing is ever looked up again by a full path.

Opens of FIFOs and character devices may block: they run on a thread of their own, so the
server keeps answering other requests.
"""

from __future__ import annotations

import errno as E
import os
import posixpath
import select
import socket
import stat
import threading

from ..engine.record import record
from . import sys as gsys
from .policy import (RULE_DENY, RULE_MAGICLINK, RULE_NONE, RULE_READONLY, RULE_SYNTHETIC,
                     Policy)
from .protocol import (HANDLE_ROOT, MAX_FDS, MAX_MESSAGE, OPEN_NO_WAIT, REPLY_CACHEABLE,
                       WOULD_BLOCK, Op, ProtocolError, Reply, Request,
                       close_all, decode_header, decode_request, encode_reply, recv_message,
                       send_message, Spinner)

_RESOLVE = gsys.RESOLVE_IN_ROOT | gsys.RESOLVE_NO_MAGICLINKS
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC
_O_TMPFILE = 0o20200000
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)  # a plain int, not an enum flag
_MAX_BLOCKING = 64  # concurrent blocking opens (FIFOs, ttys)
# After a request, the Gofer polls for the next one this long before sleeping: file calls
# come in bursts (an import, a directory walk), and a sleeping Gofer on another CPU costs a
# cross-CPU wake-up per request (tens of microseconds on a virtual machine).
REQUEST_SPIN = 0.0002  # seconds


class Refused(Exception):
    """A request the server answers with an errno (and maybe the rule that refused it)."""

    def __init__(self, errno: int, kind: int = RULE_NONE, index: int = -1, path: str = "") -> None:
        super().__init__(errno)
        self.errno = errno
        self.kind = kind
        self.index = index
        self.path = path


@record
class _Target:
    """What a probe found: an O_PATH descriptor and the canonical path."""

    fd: int  # O_PATH descriptor of the object (owned)
    path: str  # canonical sandbox path
    plain: bool = False  # found without following a symlink (the walk is the path's names)


def _norm(path: str) -> str:
    """posixpath.normpath, but a leading "//" is "/" (as the kernel reads it)."""
    if path[:1] == "/" and "//" not in path and "/." not in path and path[-1] != "/":
        return path  # already normal (the common case, without normpath's cost)
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def _split(path: str) -> tuple[str, str]:
    """("/a", "b/") for "/a/b/": the last name keeps its trailing slashes (the kernel
    then gives ENOTDIR exactly as it would natively)."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/", ""
    k = stripped.rfind("/")
    parent = stripped[:k] or "/"
    return parent, path[k + 1:]


def _hung_up(sock: socket.socket) -> bool:
    p = select.poll()
    p.register(sock.fileno(), select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in p.poll(0))


class _MayBlock(Exception):
    """An open that may wait (a FIFO without a peer): finished off the serving thread."""

    def __init__(self, fd: int, path: str, flags: int) -> None:
        super().__init__(path)
        self.fd, self.path, self.flags = fd, path, flags

    def finish(self, server: "FileServer") -> tuple[Reply, int]:
        try:
            fd = os.open(str(self.fd), self.flags, dir_fd=server.fd_dir_fd)
        except OSError as exc:
            return Reply(exc.errno or E.EIO, RULE_NONE, -1, b"",
                         self.path.encode("utf-8", "surrogateescape")), -1
        finally:
            os.close(self.fd)
        return Reply(0, RULE_NONE, -1, b"", self.path.encode("utf-8", "surrogateescape")), fd


class FileServer:
    """Serves requests against the tree under `root_fd`.

    root_fd:   O_PATH directory descriptor of the sandbox root.
    fd_dir_fd: O_PATH descriptor of this process's /proc/<pid>/fd directory (opened before
               any chroot): readlink gives canonical paths, openat reopens O_PATH fds.
    """

    def __init__(self, root_fd: int, fd_dir_fd: int, policy: Policy,
                 cache_root: bool = False, mounts: tuple[str, ...] = ()) -> None:
        self.root_fd = root_fd
        self.fd_dir_fd = fd_dir_fd
        self.policy = policy
        self.root_prefix = self._fd_path_raw(root_fd).rstrip("/")
        self._blocking = threading.BoundedSemaphore(_MAX_BLOCKING)
        # stat answers the Sentry may cache (docs/gofer.md, "The attribute cache"): the
        # root is `cache: exclusive`, and these are the targets of the mounts whose trees
        # are never cached (binds, proc, dev: changed from outside the sandbox's calls)
        self.cache_root = cache_root
        self.mount_prefixes = tuple(m.rstrip("/") + "/" for m in self._mount_points(mounts)
                                    if m.rstrip("/"))

    def _mount_points(self, targets: tuple[str, ...]) -> set[str]:
        """The profile's mount targets as written and as the kernel resolved them (a
        target under a symlink, /var/run for /run, is mounted where the link leads)."""
        out = set(targets)
        for t in targets:
            try:
                tgt = self.probe(t, True, False)
            except Refused:
                continue
            os.close(tgt.fd)
            out.add(tgt.path)
        return out

    def cacheable(self, req: Request, path: str, tgt: _Target) -> bool:
        """May the Sentry keep this stat answer, or open this name ahead of the program?
        Only for a name given from the root as it was sent (no /proc/self mapping),
        spelled canonically (no `.`, `..`, `//` or trailing `/`: the kernel walked exactly
        the path's ancestors), found without a symlink (so its canonical path is the
        normalized name), and outside every mount whose tree changes without a call the
        Sentry sees."""
        if not (self.cache_root and tgt.plain and req.handle == HANDLE_ROOT
                and tgt.path == path and req.name == path.encode("utf-8", "surrogateescape")):
            return False
        probe = path + "/"
        return not any(probe.startswith(m) for m in self.mount_prefixes)

    # -- paths ---------------------------------------------------------------------
    def _fd_path_raw(self, fd: int) -> str:
        return os.readlink(str(fd), dir_fd=self.fd_dir_fd)

    def fd_path(self, fd: int) -> str:
        """Canonical sandbox path of a descriptor; ENOENT when it is not in the tree."""
        raw = self._fd_path_raw(fd)
        if not raw.startswith("/") or raw.endswith(" (deleted)"):
            raise Refused(E.ENOENT)
        pre = self.root_prefix
        if pre:
            if raw == pre:
                return "/"
            if not raw.startswith(pre + "/"):
                raise Refused(E.ENOENT)
            raw = raw[len(pre):]
        return raw

    def request_path(self, req: Request, handle: int, name: bytes, fds: list[int]) -> str:
        try:
            text = name.decode("utf-8", "surrogateescape")
        except Exception:  # pragma: no cover - surrogateescape does not fail
            raise Refused(E.EINVAL)
        if not text:
            raise Refused(E.ENOENT)
        if text.startswith("/"):
            path = text
        elif handle == HANDLE_ROOT:
            path = "/" + text
        else:
            if not 0 <= handle < len(fds):
                raise Refused(E.EBADF)
            if not stat.S_ISDIR(os.fstat(fds[handle]).st_mode):
                raise Refused(E.ENOTDIR)
            base = self.fd_path(fds[handle])
            path = base.rstrip("/") + "/" + text
        return self._proc_self(path, req)

    @staticmethod
    def _proc_self(path: str, req: Request) -> str:
        # The Gofer is not in the sandbox's pid namespace: /proc/self would not be the caller.
        if "proc" not in path:
            return path
        norm = _norm(path)
        if not norm.startswith("/proc/"):
            return path
        parts = norm.split("/", 3)  # "", "proc", X, rest
        if len(parts) < 3:
            return path
        head = parts[2]
        rest = "/" + parts[3] if len(parts) > 3 else ""
        if path.endswith("/") and rest:
            rest += "/"
        if head == "self" and req.pid > 0:
            return f"/proc/{req.pid}{rest}"
        if head == "thread-self" and req.pid > 0:
            return f"/proc/{req.pid}/task/{req.tid or req.pid}{rest}"
        if head in ("mounts", "net") and req.pid > 0:
            return f"/proc/{req.pid}/{head}{rest}"
        return path

    def check(self, path: str, write: bool) -> None:
        i = self.policy.deny.match(path)
        if i >= 0:
            raise Refused(self.policy.deny.rules[i].errno, RULE_DENY, i, path)
        if write:
            i = self.policy.readonly.match(path)
            if i >= 0:
                raise Refused(E.EROFS, RULE_READONLY, i, path)

    def probe(self, path: str, follow: bool, write: bool) -> _Target:
        """O_PATH descriptor + canonical path of `path`, policy checked before and after."""
        norm = _norm(path)
        self.check(norm, write)
        flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        if path.endswith("/"):
            flags |= os.O_DIRECTORY
        raw = path.encode("utf-8", "surrogateescape")
        try:
            # No symlink on the way: the canonical path is the lexical one (`..` included:
            # the kernel applies it to the same names), already checked.
            return _Target(gsys.openat2(self.root_fd, raw, flags, 0,
                                        _RESOLVE | gsys.RESOLVE_NO_SYMLINKS), norm, True)
        except OSError as exc:
            if exc.errno != E.ELOOP:
                raise Refused(exc.errno or E.EIO, RULE_NONE, -1, norm) from None
        try:
            fd = gsys.openat2(self.root_fd, raw, flags, 0, _RESOLVE)
        except OSError as exc:
            if exc.errno == E.ELOOP and norm.startswith("/proc/"):
                raise Refused(E.ELOOP, RULE_MAGICLINK, -1, norm) from None
            raise Refused(exc.errno or E.EIO, RULE_NONE, -1, norm) from None
        try:
            canon = self.fd_path(fd)
            if canon != norm:
                self.check(canon, write)
        except BaseException:
            os.close(fd)
            raise
        return _Target(fd, canon)

    def parent(self, path: str, write: bool) -> tuple[_Target, str, str]:
        """(parent directory, last name, canonical path of the name) for calls that make
        or remove a name."""
        parent_path, last = _split(path)
        if not last:
            raise Refused(E.EBUSY, RULE_NONE, -1, "/")
        tgt = self.probe(parent_path, True, False)
        full = _norm(tgt.path.rstrip("/") + "/" + last)
        try:
            self.check(full, write)
        except BaseException:
            os.close(tgt.fd)
            raise
        return tgt, last, full

    def synthetic(self, path: str) -> str | None:
        if not self.policy.synthetic:
            return None
        norm = _norm(path)
        return norm if norm in self.policy.synthetic else None

    # -- dispatch ------------------------------------------------------------------
    def handle(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        """Serve one request; returns (reply, descriptor to send or -1)."""
        try:
            fn = self._OPS[req.op]
        except KeyError:
            return Reply(E.EPROTO), -1
        try:
            return fn(self, req, fds)
        except _MayBlock:
            raise
        except Refused as r:
            return Reply(r.errno, r.kind, r.index, b"", r.path.encode("utf-8", "surrogateescape")), -1
        except OSError as exc:
            return Reply(exc.errno or E.EIO), -1
        except (ValueError, OverflowError, UnicodeError):
            return Reply(E.EINVAL), -1

    @staticmethod
    def _ok(data: bytes = b"", path: str = "", fd: int = -1, flags: int = 0) -> tuple[Reply, int]:
        return Reply(0, RULE_NONE, -1, data, path.encode("utf-8", "surrogateescape"), -1,
                     flags), fd

    @staticmethod
    def _fail(exc: OSError, path: str) -> Refused:
        return Refused(exc.errno or E.EIO, RULE_NONE, -1, path)

    # -- operations ----------------------------------------------------------------
    def op_ping(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        return self._ok(b"pong")

    def _synthetic_fd(self, spath: str) -> int:
        f = self.policy.synthetic[spath]
        return gsys.sealed_memfd(posixpath.basename(spath), f.content.encode(), f.mode)

    def op_open(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        path = self.request_path(req, req.handle, req.name, fds)
        flags = req.flags
        write = bool(flags & _WRITE_FLAGS) or flags & _O_TMPFILE == _O_TMPFILE
        spath = self.synthetic(path)
        if spath is not None:
            if write:
                raise Refused(E.EROFS, RULE_SYNTHETIC, -1, spath)
            return self._ok(path=spath, fd=self._synthetic_fd(spath))
        if flags & os.O_PATH:
            tgt = self.probe(path + ("/" if flags & os.O_DIRECTORY and not path.endswith("/")
                                     else ""), not flags & os.O_NOFOLLOW, False)
            return self._ok(path=tgt.path, fd=tgt.fd)
        creat = bool(flags & os.O_CREAT) and flags & _O_TMPFILE != _O_TMPFILE
        follow = not (flags & os.O_NOFOLLOW or (creat and flags & os.O_EXCL))
        try:
            tgt = self.probe(path, follow, write)
        except Refused as r:
            if r.errno != E.ENOENT or not creat or r.kind != RULE_NONE:
                raise
            return self._create(path, flags, req.mode)
        try:
            if creat and flags & os.O_EXCL:
                raise Refused(E.EEXIST, RULE_NONE, -1, tgt.path)
            if tgt.path in self.policy.synthetic:  # reached through a symlink
                if write:
                    raise Refused(E.EROFS, RULE_SYNTHETIC, -1, tgt.path)
                return self._ok(path=tgt.path, fd=self._synthetic_fd(tgt.path))
            st = os.fstat(tgt.fd)
            if stat.S_ISLNK(st.st_mode):
                raise Refused(E.ELOOP, RULE_NONE, -1, tgt.path)
            reopen = (flags | os.O_CLOEXEC) & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)
            if (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)) and not flags & os.O_NONBLOCK:
                # may block (no writer yet): serve() finishes it on a thread of its own
                raise _MayBlock(os.dup(tgt.fd), tgt.path, reopen)
            try:
                fd = os.open(str(tgt.fd), reopen, dir_fd=self.fd_dir_fd)
            except OSError as exc:
                raise self._fail(exc, tgt.path) from None
            # a plain file opened only to read: the Sentry may have the same name opened
            # ahead of the program's next open of it (docs/gofer.md, "The open cache")
            ahead = not write and stat.S_ISREG(st.st_mode) and self.cacheable(req, path, tgt)
            return self._ok(path=tgt.path, fd=fd, flags=REPLY_CACHEABLE if ahead else 0)
        finally:
            os.close(tgt.fd)

    def _create(self, path: str, flags: int, mode: int) -> tuple[Reply, int]:
        tgt, last, full = self.parent(path, True)
        try:
            how = gsys.RESOLVE_BENEATH | gsys.RESOLVE_NO_SYMLINKS | gsys.RESOLVE_NO_MAGICLINKS
            try:
                fd = gsys.openat2(tgt.fd, last.encode("utf-8", "surrogateescape"),
                                  flags | os.O_CLOEXEC, mode, how)
            except OSError as exc:
                raise self._fail(exc, full) from None
            return self._ok(path=full, fd=fd)
        finally:
            os.close(tgt.fd)

    def op_stat(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        path = self.request_path(req, req.handle, req.name, fds)
        spath = self.synthetic(path)
        follow = not req.at_flags & gsys.AT_SYMLINK_NOFOLLOW
        flags = 0
        if spath is not None:
            fd, tpath = self._synthetic_fd(spath), spath
        else:
            tgt = self.probe(path, follow, False)
            fd, tpath = tgt.fd, tgt.path
            if self.cacheable(req, path, tgt):
                flags = REPLY_CACHEABLE
        try:
            if req.op == Op.STATX:
                data = gsys.statx_raw(fd, b"", gsys.AT_EMPTY_PATH | (req.at_flags & gsys.AT_STATX_SYNC_TYPE),
                                      req.a[0] & 0xFFFFFFFF)
            else:
                data = gsys.fstatat_raw(fd, b"", gsys.AT_EMPTY_PATH)
        finally:
            os.close(fd)
        return self._ok(data, tpath, flags=flags)

    def op_access(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        path = self.request_path(req, req.handle, req.name, fds)
        write = bool(req.mode & os.W_OK)
        spath = self.synthetic(path)
        if spath is not None:
            if write:
                raise Refused(E.EROFS, RULE_SYNTHETIC, -1, spath)
            return self._ok(path=spath)
        tgt = self.probe(path, not req.at_flags & gsys.AT_SYMLINK_NOFOLLOW, write)
        try:
            try:
                gsys.faccessat2(tgt.fd, b"", req.mode & 7,
                                gsys.AT_EMPTY_PATH | (req.at_flags & gsys.AT_EACCESS))
            except OSError as exc:
                raise self._fail(exc, tgt.path) from None
        finally:
            os.close(tgt.fd)
        return self._ok(path=tgt.path)

    def op_readlink(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        path = self.request_path(req, req.handle, req.name, fds)
        if self.synthetic(path) is not None:
            raise Refused(E.EINVAL)
        tgt = self.probe(path, False, False)
        try:
            try:
                target = os.readlink(b"", dir_fd=tgt.fd)
            except OSError as exc:
                # an empty-path readlinkat of a non-symlink says ENOENT; readlink(2) EINVAL
                raise Refused(E.EINVAL if exc.errno == E.ENOENT else exc.errno, RULE_NONE, -1,
                              tgt.path) from None
        finally:
            os.close(tgt.fd)
        return self._ok(target, tgt.path)

    def _mutate_parent(self, req: Request, fds: list[int], handle: int,
                       name: bytes) -> tuple[_Target, bytes, str]:
        path = self.request_path(req, handle, name, fds)
        spath = self.synthetic(path)
        if spath is not None:
            raise Refused(E.EROFS, RULE_SYNTHETIC, -1, spath)
        tgt, last, full = self.parent(path, True)
        return tgt, last.encode("utf-8", "surrogateescape"), full

    def op_mkdir(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        tgt, last, full = self._mutate_parent(req, fds, req.handle, req.name)
        try:
            os.mkdir(last, req.mode & 0o7777, dir_fd=tgt.fd)
        except OSError as exc:
            raise self._fail(exc, full) from None
        finally:
            os.close(tgt.fd)
        return self._ok(path=full)

    def op_mknod(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        tgt, last, full = self._mutate_parent(req, fds, req.handle, req.name)
        try:
            os.mknod(last, req.mode, req.a[0], dir_fd=tgt.fd)
        except OSError as exc:
            raise self._fail(exc, full) from None
        finally:
            os.close(tgt.fd)
        return self._ok(path=full)

    def op_unlink(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        tgt, last, full = self._mutate_parent(req, fds, req.handle, req.name)
        try:
            if req.at_flags & gsys.AT_REMOVEDIR:
                os.rmdir(last, dir_fd=tgt.fd)
            else:
                os.unlink(last, dir_fd=tgt.fd)
        except OSError as exc:
            raise self._fail(exc, full) from None
        finally:
            os.close(tgt.fd)
        return self._ok(path=full)

    def op_rename(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        old, old_last, old_full = self._mutate_parent(req, fds, req.handle, req.name)
        try:
            new, new_last, new_full = self._mutate_parent(req, fds, req.handle2, req.name2)
            try:
                self._guard_subtree(old.fd, old_last, old_full)
                gsys.renameat2(old.fd, old_last, new.fd, new_last, req.flags)
            except OSError as exc:
                raise self._fail(exc, old_full) from None
            finally:
                os.close(new.fd)
        finally:
            os.close(old.fd)
        return self._ok(path=old_full)

    _SUBTREE_LIMIT = 20000

    def _guard_subtree(self, parent_fd: int, name: bytes, path: str) -> None:
        """Renaming a directory moves everything under it: refuse (EXDEV, so `mv` falls
        back to copying file by file, each copy checked) when something under it is
        protected by a deny or readonly rule, or when that cannot be known."""
        rulesets = [(rs, kind) for rs, kind in ((self.policy.deny, RULE_DENY),
                                                (self.policy.readonly, RULE_READONLY))
                    if rs.rules and rs.may_match_under(path)]
        if not rulesets:
            return
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError:
            return  # renameat2 gives the errno
        if not stat.S_ISDIR(st.st_mode):
            return
        try:
            top = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=parent_fd)
        except OSError:
            raise Refused(E.EXDEV, RULE_NONE, -1, path) from None
        seen = 0
        errors: list[OSError] = []
        try:
            for root, dirs, files, _fd in os.fwalk(".", dir_fd=top, onerror=errors.append):
                base = path.rstrip("/") + ("" if root == "." else "/" + root[2:])
                for entry in (*dirs, *files):
                    seen += 1
                    full = base + "/" + entry
                    for rs, kind in rulesets:
                        i = rs.match(full)
                        if i >= 0:
                            raise Refused(E.EXDEV, kind, i, full)
                if seen > self._SUBTREE_LIMIT:
                    raise Refused(E.EXDEV, RULE_NONE, -1, path)
        finally:
            os.close(top)
        if errors:
            raise Refused(E.EXDEV, RULE_NONE, -1, path)

    def op_link(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        old_path = self.request_path(req, req.handle, req.name, fds)
        follow = bool(req.at_flags & gsys.AT_SYMLINK_FOLLOW)
        src = self.probe(old_path, follow, True)
        os.close(src.fd)
        # link the canonical name, from its parent: nothing is followed by the kernel
        old, old_last, old_full = self._mutate_parent(req, fds, HANDLE_ROOT,
                                                      src.path.encode("utf-8", "surrogateescape"))
        try:
            new, new_last, new_full = self._mutate_parent(req, fds, req.handle2, req.name2)
            try:
                os.link(old_last, new_last, src_dir_fd=old.fd, dst_dir_fd=new.fd,
                        follow_symlinks=False)
            except OSError as exc:
                raise self._fail(exc, new_full) from None
            finally:
                os.close(new.fd)
        finally:
            os.close(old.fd)
        return self._ok(path=new_full)

    def op_symlink(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        new, new_last, new_full = self._mutate_parent(req, fds, req.handle2, req.name2)
        try:
            if not req.name:
                raise Refused(E.ENOENT, RULE_NONE, -1, new_full)
            os.symlink(req.name, new_last, dir_fd=new.fd)
        except OSError as exc:
            raise self._fail(exc, new_full) from None
        finally:
            os.close(new.fd)
        return self._ok(path=new_full)

    def _mutate_target(self, req: Request, fds: list[int]) -> _Target:
        if not req.name and req.at_flags & gsys.AT_EMPTY_PATH:
            # the descriptor itself (futimens, fchownat(fd, "", AT_EMPTY_PATH))
            if not 0 <= req.handle < len(fds):
                raise Refused(E.EBADF)
            path = self.fd_path(fds[req.handle])
            self.check(path, True)
            return _Target(os.dup(fds[req.handle]), path)
        path = self.request_path(req, req.handle, req.name, fds)
        spath = self.synthetic(path)
        if spath is not None:
            raise Refused(E.EROFS, RULE_SYNTHETIC, -1, spath)
        return self.probe(path, not req.at_flags & gsys.AT_SYMLINK_NOFOLLOW, True)

    def op_chmod(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        tgt = self._mutate_target(req, fds)
        try:
            gsys.fchmodat2(tgt.fd, b"", req.mode & 0o7777, gsys.AT_EMPTY_PATH)
        except OSError as exc:
            raise self._fail(exc, tgt.path) from None
        finally:
            os.close(tgt.fd)
        return self._ok(path=tgt.path)

    def op_chown(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        tgt = self._mutate_target(req, fds)
        try:
            gsys.fchownat(tgt.fd, b"", req.a[0], req.a[1], gsys.AT_EMPTY_PATH)
        except OSError as exc:
            raise self._fail(exc, tgt.path) from None
        finally:
            os.close(tgt.fd)
        return self._ok(path=tgt.path)

    def op_truncate(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        tgt = self._mutate_target(req, fds)
        try:
            if req.a[0] < 0:
                raise Refused(E.EINVAL, RULE_NONE, -1, tgt.path)
            st = os.fstat(tgt.fd)
            if stat.S_ISDIR(st.st_mode):
                raise Refused(E.EISDIR, RULE_NONE, -1, tgt.path)
            fd = os.open(str(tgt.fd), os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK,
                         dir_fd=self.fd_dir_fd)
            try:
                os.ftruncate(fd, req.a[0])
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._fail(exc, tgt.path) from None
        finally:
            os.close(tgt.fd)
        return self._ok(path=tgt.path)

    def op_utimens(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        tgt = self._mutate_target(req, fds)
        times = None if req.flags & 1 else req.a
        try:
            gsys.utimensat(tgt.fd, b"", times, gsys.AT_EMPTY_PATH)  # type: ignore[arg-type]
        except OSError as exc:
            raise self._fail(exc, tgt.path) from None
        finally:
            os.close(tgt.fd)
        return self._ok(path=tgt.path)

    def op_chdir(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        path = self.request_path(req, req.handle, req.name, fds)
        tgt = self.probe(path, True, False)
        try:
            st = os.fstat(tgt.fd)
            if not stat.S_ISDIR(st.st_mode):
                raise Refused(E.ENOTDIR, RULE_NONE, -1, tgt.path)
            try:  # chdir(2) needs search permission on the directory itself
                gsys.faccessat2(tgt.fd, b"", os.X_OK, gsys.AT_EMPTY_PATH | gsys.AT_EACCESS)
            except OSError as exc:
                raise self._fail(exc, tgt.path) from None
        except BaseException:
            os.close(tgt.fd)
            raise
        return self._ok(path=tgt.path, fd=tgt.fd)

    def op_getpath(self, req: Request, fds: list[int]) -> tuple[Reply, int]:
        if not 0 <= req.handle < len(fds):
            raise Refused(E.EBADF)
        path = self.fd_path(fds[req.handle])
        self.check(path, False)
        return self._ok(path=path)

    _OPS = {
        Op.PING: op_ping, Op.OPEN: op_open, Op.STAT: op_stat, Op.STATX: op_stat,
        Op.ACCESS: op_access, Op.READLINK: op_readlink, Op.MKDIR: op_mkdir,
        Op.UNLINK: op_unlink, Op.RENAME: op_rename, Op.LINK: op_link, Op.SYMLINK: op_symlink,
        Op.CHMOD: op_chmod, Op.CHOWN: op_chown, Op.TRUNCATE: op_truncate,
        Op.UTIMENS: op_utimens, Op.CHDIR: op_chdir, Op.GETPATH: op_getpath,
        Op.MKNOD: op_mknod,
    }

    # -- the socket loop ---------------------------------------------------------------
    def serve(self, sock: socket.socket) -> None:
        """Serve until the peer closes. Opens that may block (FIFOs, devices) go to a
        thread of their own; malformed messages get EPROTO or are dropped."""
        buf = bytearray(MAX_MESSAGE)
        spinner = Spinner(REQUEST_SPIN)
        while True:
            try:
                msg, fds, msg_flags = recv_message(sock, buf, spinner)
            except InterruptedError:
                continue
            except OSError:
                return
            if not msg and not fds and _hung_up(sock):
                return  # peer closed (an empty packet reads the same: tell them apart)
            if msg_flags & _TRUNCATED or len(fds) > MAX_FDS:
                close_all(fds)
                continue
            try:
                op, req_id, body = decode_header(msg)
            except ProtocolError:
                close_all(fds)
                continue
            try:
                req = decode_request(op, body)
            except ProtocolError:
                close_all(fds)
                self._send(sock, op, req_id, Reply(E.EPROTO), -1)
                continue
            try:
                reply, fd = self.handle(req, fds)
            except _MayBlock as mb:
                if req.a[0] & OPEN_NO_WAIT:  # the Sentry asks again from a worker
                    os.close(mb.fd)
                    close_all(fds)
                    self._send(sock, op, req_id, Reply(WOULD_BLOCK), -1)
                    continue
                if self._blocking.acquire(blocking=False):
                    threading.Thread(target=self._finish_blocking,
                                     args=(sock, op, req_id, mb, fds), daemon=True).start()
                    continue
                reply, fd = mb.finish(self)  # saturated: serve it here
            close_all(fds)
            self._send(sock, op, req_id, reply, fd)

    def _finish_blocking(self, sock: socket.socket, op: int, req_id: int, mb: "_MayBlock",
                         fds: list[int]) -> None:
        try:
            reply, fd = mb.finish(self)
            close_all(fds)
            self._send(sock, op, req_id, reply, fd)
        finally:
            self._blocking.release()

    @staticmethod
    def _send(sock: socket.socket, op: int, req_id: int, reply: Reply, fd: int) -> None:
        msg = encode_reply(op, req_id, reply)
        try:
            send_message(sock, msg, (fd,) if fd >= 0 else ())
        except OSError:
            pass  # the Sentry is gone; the loop ends at the next recv
        finally:
            if fd >= 0:
                os.close(fd)


__all__ = ["FileServer", "Refused"]
