"""The events log's strace-style decoding, reading strings and sockaddrs from a real
process's memory (this one) through the Sentry's ProcessMemory (process_vm_readv)."""

from __future__ import annotations

import ctypes
import os
import socket
import struct

import pytest

from sandboxctl.sentry.decode import decode, errno_name, open_flags, syscall_name
from sandboxctl.sentry.platform_notify import ProcessMemory


def buf(data: bytes):
    b = ctypes.create_string_buffer(data, len(data))
    return b, ctypes.addressof(b)


def test_paths_and_flags_from_memory():
    mem = ProcessMemory(os.getpid())
    b, a = buf(b"/etc/passwd\0")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    assert decode("openat", (0xFFFFFF9C, a, flags, 0o644, 0, 0), mem) == \
        'openat(AT_FDCWD, "/etc/passwd", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0o644)'
    assert mem.touched
    src, sa = buf(b"/srv\0")
    dst, da = buf(b"/mnt\0")
    assert decode("mount", (sa, da, 0, 4096 | 16384 | 1, 0, 0), mem) == \
        'mount("/srv", "/mnt", NULL, MS_RDONLY|MS_BIND|MS_REC, 0x0)'


def test_namespaces_sockets_ptrace():
    assert decode("unshare", (0x10000000 | 0x20000, 0, 0, 0, 0, 0)) == "unshare(CLONE_NEWNS|CLONE_NEWUSER)"
    assert decode("clone", (0x01200011, 0, 0, 0, 0, 0)).startswith(
        "clone(CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIG17")
    assert decode("socket", (10, 2 | 0o4000, 17, 0, 0, 0)) == "socket(AF_INET6, SOCK_DGRAM|SOCK_NONBLOCK, 17)"
    assert decode("ptrace", (16, 1234, 0, 0, 0, 0)).startswith("ptrace(PTRACE_ATTACH, 1234")


def test_sockaddrs():
    mem = ProcessMemory(os.getpid())
    sa = struct.pack("<H", 2) + struct.pack(">H", 443) + socket.inet_aton("10.1.2.3") + bytes(8)
    b, a = buf(sa)
    assert decode("connect", (3, a, 16, 0, 0, 0), mem) == "connect(3, {AF_INET, 10.1.2.3:443}, 16)"
    su = struct.pack("<H", 1) + b"\0abstract\0"
    b2, a2 = buf(su)
    assert decode("bind", (4, a2, len(su), 0, 0, 0), mem) == f'bind(4, {{AF_UNIX, "@abstract"}}, {len(su)})'


def test_bad_pointer_and_unknown_calls_never_raise():
    mem = ProcessMemory(os.getpid())
    assert decode("openat", (3, 8, 0, 0, 0, 0), mem) == "openat(3, 0x8, O_RDONLY, 0o0)"
    assert decode("frobnicate", (1, 2, 3, 4, 5, 6)) == "frobnicate(0x1, 0x2, 0x3, ...)"
    assert open_flags(os.O_RDWR | os.O_DIRECTORY) == "O_RDWR|O_DIRECTORY"


def test_names():
    assert syscall_name(63) == "uname" and syscall_name(272) == "unshare"
    assert syscall_name(9999) == "syscall_9999"
    assert errno_name(1) == "EPERM" and errno_name(13) == "EACCES"


def test_memory_checks_the_notification_before_acting():
    """With the notification's ID_VALID check: every read is followed by it and every
    write preceded by it (process_vm_* resolve the pid anew each time, and a pid is
    reused once its task is gone); a caller that is gone makes the read fail (ESRCH) and
    the write never happen, also when it was still there at an earlier read."""
    import ctypes
    import errno

    asked: list[int] = []
    valid = [True]

    def id_valid(nid: int) -> bool:
        asked.append(nid)
        return valid[0]

    buf = ctypes.create_string_buffer(b"/etc/passwd\0" + b"\0" * 20)
    addr = ctypes.addressof(buf)
    mem = ProcessMemory(os.getpid(), nid=7, id_valid=id_valid)
    assert mem.read_cstr(addr) == b"/etc/passwd" and asked == [7] and mem.checked
    mem.read(addr, 4)
    mem.write(addr + 12, b"ok")
    assert asked == [7, 7, 7] and buf.raw[12:14] == b"ok"

    # gone after the first read (a second path of rename, say): the next access fails
    two = ProcessMemory(os.getpid(), nid=6, id_valid=id_valid)
    two.read_cstr(addr)
    valid[0] = False
    with pytest.raises(OSError) as e:
        two.read_cstr(addr)
    assert e.value.errno == errno.ESRCH
    with pytest.raises(OSError):
        two.write(addr, b"XX")
    asked.clear()

    gone = ProcessMemory(os.getpid(), nid=8, id_valid=id_valid)
    with pytest.raises(OSError) as e:
        gone.read_cstr(addr)
    assert e.value.errno == errno.ESRCH
    gone = ProcessMemory(os.getpid(), nid=9, id_valid=id_valid)
    with pytest.raises(OSError):
        gone.write(addr, b"XX")
    assert buf.raw[:2] == b"/e" and asked == [8, 9]  # nothing written


def test_syscall_name_per_number_matches_the_engine_s_table():
    """The Sentry names a call by looking up its number alone (decode.syscall_name), not
    by building the whole table first; it gives the engine's names."""
    from sandboxctl.engine import syscalls
    from sandboxctl.sentry.decode import syscall_name

    for nr in range(512):
        assert syscall_name(nr) == (syscalls.name_of(nr) or f"syscall_{nr}"), nr
    assert syscall_name(9999) == "syscall_9999" and syscall_name(-1) == "syscall_-1"


def test_dispatcher_names_trapped_calls_from_the_plan():
    from _helpers_sentry import make_plan
    from sandboxctl.sentry.call import SentryContext
    from sandboxctl.sentry.dispatch import Dispatcher

    plan = make_plan()
    d = Dispatcher(SentryContext(plan, lambda ev: None))
    for r in plan.seccomp.rules:
        assert d.names[r.nr] == r.name
    free = next(nr for nr in range(512) if d.names[nr] is None)
    assert d.call_name(free) == syscall_name(free)
    assert d.names[free] == syscall_name(free)  # kept
