"""The Sentry <-> Gofer wire protocol, version 2 (docs/gofer.md describes it).

Transport: a SOCK_SEQPACKET Unix socketpair; one message per packet, descriptors as
SCM_RIGHTS. Every message starts with a 12-byte header

    magic "GF" | version u8 | op u8 | request id u32 | body length u32      (little endian)

A request body is a fixed 64-byte part followed by two names:

    handle i32 | handle2 i32 | flags u32 | mode u32 | at_flags u32 | pid i32 | tid i32 |
    a0..a3 i64 | len(name) u16 | len(name2) u16 | name | name2

`handle` says what `name` is relative to: HANDLE_ROOT (-1) the sandbox root (a relative
name is then relative to the root too), or the index of a descriptor attached to this
message (a directory the Sentry took from the program with pidfd_getfd). A reply body is

    errno i32 | rule_kind u8 | flags u8 | rule_index i16 | len(data) u32 | len(path) u16 |
    0 u16 | data | path

with the descriptor it returns (if any) attached. `path` is the canonical sandbox path the
Gofer resolved (for events). `flags` bit 0 (REPLY_CACHEABLE, on STAT/STATX replies): the
answer depends only on the sandbox's own files (the root or a tmpfs mount, reached
without a symlink, `.` or `..`, outside every bind, proc and dev mount), so a Sentry whose
root is `cache: exclusive` may keep it until the sandbox changes a name or a file
(version 1 had a 0 byte there). Anything that does not parse is answered with EPROTO (if a
request id can be read) or dropped; it never stops the Gofer.
"""

from __future__ import annotations

import array
import os
import socket
import struct
import time
from enum import IntEnum

from ..engine.record import record

MAGIC = b"GF"
VERSION = 2
HEADER = struct.Struct("<2sBBII")
REQ_FIXED = struct.Struct("<iiIIIii4qHH")
REP_FIXED = struct.Struct("<iBBhIHxx")
MAX_MESSAGE = 16 * 1024  # > header + fixed part + two names of MAX_NAME
MAX_NAME = 4096
MAX_FDS = 2
HANDLE_ROOT = -1
# OPEN, a0 bit: do not wait. An open that could block (a FIFO or a character device,
# without O_NONBLOCK) is then not started: the reply's errno is WOULD_BLOCK (not a Linux
# errno) and the Sentry sends the same request again, without the bit, from a worker.
OPEN_NO_WAIT = 1
WOULD_BLOCK = -1
# Reply.flags bit: a stat answer the Sentry may cache (root `cache: exclusive`)
REPLY_CACHEABLE = 1


class Op(IntEnum):
    PING = 0
    OPEN = 1  # flags, mode, a0 = OPEN_NO_WAIT or 0 -> fd
    STAT = 2  # at_flags (AT_SYMLINK_NOFOLLOW) -> data: struct stat
    STATX = 3  # at_flags, a0 = mask -> data: struct statx
    ACCESS = 4  # mode, at_flags (AT_EACCESS, AT_SYMLINK_NOFOLLOW)
    READLINK = 5  # -> data: target
    MKDIR = 6  # mode
    UNLINK = 7  # at_flags (AT_REMOVEDIR)
    RENAME = 8  # name -> (handle2, name2); flags = renameat2 flags
    LINK = 9  # name -> (handle2, name2); at_flags (AT_SYMLINK_FOLLOW)
    SYMLINK = 10  # name = target text, (handle2, name2) = the new link
    CHMOD = 11  # mode, at_flags
    CHOWN = 12  # a0 = uid, a1 = gid (-1 keeps), at_flags
    TRUNCATE = 13  # a0 = length
    UTIMENS = 14  # a0..a3 = atime s/ns, mtime s/ns; flags bit 1: times NULL; at_flags
    CHDIR = 15  # -> fd (O_PATH directory), path: canonical
    GETPATH = 16  # handle -> path: canonical path of the attached directory
    MKNOD = 17  # mode (type | permissions), a0 = device


_OPS = frozenset(int(o) for o in Op)


class ProtocolError(ValueError):
    """A message that does not follow this protocol."""


@record
class Request:
    """A request (a NamedTuple: immutable, and cheap to build on the trap path)."""

    op: int
    name: bytes = b""
    handle: int = HANDLE_ROOT
    name2: bytes = b""
    handle2: int = HANDLE_ROOT
    flags: int = 0
    mode: int = 0
    at_flags: int = 0
    pid: int = 0  # caller's pid / tid in the sandbox's pid namespace (for /proc/self)
    tid: int = 0
    a: tuple[int, int, int, int] = (0, 0, 0, 0)


@record
class Reply:
    errno: int = 0
    rule_kind: int = 0
    rule_index: int = -1
    data: bytes = b""
    path: bytes = b""
    fd: int = -1  # the descriptor received, owned by the receiver
    flags: int = 0  # REPLY_CACHEABLE

    @property
    def ok(self) -> bool:
        return self.errno == 0


def encode_request(req_id: int, req: Request) -> bytes:
    if len(req.name) > MAX_NAME or len(req.name2) > MAX_NAME:
        raise ProtocolError("name too long")
    body = REQ_FIXED.pack(req.handle, req.handle2, req.flags & 0xFFFFFFFF, req.mode & 0xFFFFFFFF,
                          req.at_flags & 0xFFFFFFFF, req.pid, req.tid, *req.a,
                          len(req.name), len(req.name2)) + req.name + req.name2
    return HEADER.pack(MAGIC, VERSION, req.op, req_id & 0xFFFFFFFF, len(body)) + body


def decode_header(msg: bytes) -> tuple[int, int, memoryview]:
    """(op, request id, body) of a message; ProtocolError if the header is wrong."""
    if len(msg) < HEADER.size:
        raise ProtocolError("short header")
    magic, version, op, req_id, length = HEADER.unpack_from(msg)
    if magic != MAGIC:
        raise ProtocolError("bad magic")
    if version != VERSION:
        raise ProtocolError(f"unsupported version {version}")
    body = memoryview(msg)[HEADER.size:]
    if len(body) != length:
        raise ProtocolError("length mismatch")
    return op, req_id, body


def decode_request(op: int, body: memoryview) -> Request:
    if op not in _OPS:
        raise ProtocolError(f"unknown op {op}")
    if len(body) < REQ_FIXED.size:
        raise ProtocolError("short request")
    (handle, handle2, flags, mode, at_flags, pid, tid, a0, a1, a2, a3, n1,
     n2) = REQ_FIXED.unpack_from(body)
    if REQ_FIXED.size + n1 + n2 != len(body) or n1 > MAX_NAME or n2 > MAX_NAME:
        raise ProtocolError("name lengths do not match the body")
    off = REQ_FIXED.size
    name = bytes(body[off:off + n1])
    name2 = bytes(body[off + n1:off + n1 + n2])
    if b"\0" in name or b"\0" in name2:
        raise ProtocolError("NUL in a name")
    return Request(op, name, handle, name2, handle2, flags, mode, at_flags, pid, tid,
                   (a0, a1, a2, a3))


def encode_reply(op: int, req_id: int, rep: Reply) -> bytes:
    body = REP_FIXED.pack(rep.errno, rep.rule_kind, rep.flags & 0xFF, rep.rule_index,
                          len(rep.data), len(rep.path)) + rep.data + rep.path
    return HEADER.pack(MAGIC, VERSION, op, req_id & 0xFFFFFFFF, len(body)) + body


def decode_reply(body: memoryview, fd: int = -1) -> Reply:
    if len(body) < REP_FIXED.size:
        raise ProtocolError("short reply")
    errno, kind, flags, index, n_data, n_path = REP_FIXED.unpack_from(body)
    if REP_FIXED.size + n_data + n_path != len(body):
        raise ProtocolError("reply lengths do not match the body")
    off = REP_FIXED.size
    return Reply(errno, kind, index, bytes(body[off:off + n_data]),
                 bytes(body[off + n_data:off + n_data + n_path]), fd, flags)


_FD_SPACE = socket.CMSG_SPACE(4 * 4)
_SOL_SOCKET = int(socket.SOL_SOCKET)  # plain ints, not enum members (cheaper to compare)
_SCM_RIGHTS = int(socket.SCM_RIGHTS)


_DONTWAIT = int(socket.MSG_DONTWAIT)  # a plain int: enum flags cost ~1 us an operation
_monotonic = time.monotonic


class Spinner:
    """Busy-waiting before a blocking receive, where it pays.

    A sleeping peer on another CPU costs a cross-CPU wake-up per message (on a virtual
    machine tens of microseconds, more than the request itself); polling for a short
    window instead avoids it. It pays only while the answer comes quickly: on a busy
    machine the peer may not be running, and the poller would only burn the CPU somebody
    else needs (and lose the head start the scheduler gives a task it wakes). So a window
    that ran out without a message, or a message that came late, makes the next
    receives block at once, for a number of receives that doubles with every miss in a
    row (up to MAX_SKIP); a message caught in time halves it. Never yields the
    CPU while polling (sched_yield on a loaded CPU gives it away for a whole time slice).
    No polling at all on one CPU (the peer needs the CPU the poller holds), or with
    SANDBOXCTL_NO_SPIN=1 in the environment."""

    MAX_SKIP = 4096

    __slots__ = ("window", "late", "skip", "penalty", "caught", "missed")

    def __init__(self, window: float, late: float | None = None) -> None:
        self.window = window if _may_spin() else 0.0
        # a message after this much polling counts as a miss too (default: half the window)
        self.late = window / 2 if late is None else late
        self.skip = 0  # receives left that block at once
        self.penalty = 0  # the skip given after the next miss
        self.caught = 0  # counts (the tests read them)
        self.missed = 0

    def recv(self, sock: socket.socket, bufs: list, anc: int) -> tuple:
        if self.window <= 0.0:
            return sock.recvmsg_into(bufs, anc)
        if self.skip:
            self.skip -= 1
            return sock.recvmsg_into(bufs, anc)
        start = _monotonic()
        end = start + self.window
        while True:
            try:
                got = sock.recvmsg_into(bufs, anc, _DONTWAIT)
            except BlockingIOError:
                if _monotonic() < end:
                    continue
                self._miss()
                return sock.recvmsg_into(bufs, anc)
            if _monotonic() - start > self.late:
                # caught, but late: the peer was not running (a busy CPU), and a sleeper
                # would have been woken ahead of the CPU's other work; count it a miss
                self._miss()
            else:
                self.caught += 1
                self.penalty >>= 1
            return got

    def _miss(self) -> None:
        self.missed += 1
        self.penalty = min(self.MAX_SKIP, self.penalty * 2 or 1)
        self.skip = self.penalty


def _may_spin() -> bool:
    if os.environ.get("SANDBOXCTL_NO_SPIN"):
        return False
    try:
        return len(os.sched_getaffinity(0)) > 1
    except OSError:
        return False


def recv_message(sock: socket.socket, buf: bytearray, spinner: Spinner | None = None
                 ) -> tuple[memoryview, list[int], int]:
    """One packet into `buf` (preallocated, MAX_MESSAGE bytes): (message, descriptors,
    msg_flags). The view is valid until the next call with the same buffer. Descriptors
    beyond what fits are closed by the kernel (MSG_CTRUNC is set). With a `spinner`, it
    may poll briefly before blocking (see Spinner)."""
    if spinner is not None:
        n, anc, flags, _ = spinner.recv(sock, [buf], _FD_SPACE)
    else:
        n, anc, flags, _ = sock.recvmsg_into([buf], _FD_SPACE)
    fds: list[int] = []
    for level, kind, data in anc:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[:len(data) - len(data) % a.itemsize])
            fds.extend(a)
    return memoryview(buf)[:n], fds, flags


def send_message(sock: socket.socket, msg: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
    """One packet, with `fds` attached as SCM_RIGHTS (socket.send_fds without its
    per-call overhead: this is on every trapped file call)."""
    if fds:
        sock.sendmsg([msg], [(_SOL_SOCKET, _SCM_RIGHTS, array.array("i", fds).tobytes())])
    else:
        sock.sendmsg([msg])


def close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


__all__ = ["recv_message", "send_message", "Spinner", "close_all", "MAGIC", "VERSION", "HEADER", "MAX_MESSAGE", "MAX_FDS", "HANDLE_ROOT", "OPEN_NO_WAIT", "WOULD_BLOCK", "REPLY_CACHEABLE", "Op",
           "ProtocolError", "Request", "Reply", "encode_request", "decode_header",
           "decode_request", "encode_reply", "decode_reply"]
