"""The few Linux system calls Python's os module lacks, through ctypes.

openat2 (struct open_how + RESOLVE_* flags), statx and newfstatat into raw buffers (the
Sentry writes those bytes into the caller's memory unchanged), fchmodat2, renameat2,
faccessat2, pidfd_getfd, setns and memfd seals. Each wrapper raises OSError(errno) like the
os module does; the buffers are allocated per call (the calls run on several threads).
"""

from __future__ import annotations

import ctypes
import fcntl
import os

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# x86_64 numbers
NR_NEWFSTATAT = 262
NR_RENAMEAT2 = 316
NR_STATX = 332
NR_PIDFD_GETFD = 438
NR_OPENAT2 = 437
NR_FACCESSAT2 = 439
NR_FCHMODAT2 = 452
NR_SETNS = 308
NR_UTIMENSAT = 280

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_EACCESS = 0x200
AT_EMPTY_PATH = 0x1000
AT_STATX_SYNC_TYPE = 0x6000

STAT_SIZE = 144  # struct stat, x86_64
STATX_SIZE = 256  # struct statx

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

PROC_SUPER_MAGIC = 0x9FA0
_O_TMPFILE = 0o20200000


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _check(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def openat2(dirfd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
    # the kernel refuses a mode without O_CREAT/O_TMPFILE (EINVAL); open(2) ignores it
    how = OpenHow(flags, mode & 0o7777 if flags & (os.O_CREAT | _O_TMPFILE) else 0, resolve)
    return _check(_syscall(NR_OPENAT2, ctypes.c_int(dirfd), ctypes.c_char_p(path),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))))


def fstatat_raw(dirfd: int, path: bytes, flags: int) -> bytes:
    """newfstatat(2) into a raw struct stat (144 bytes)."""
    buf = ctypes.create_string_buffer(STAT_SIZE)
    _check(_syscall(NR_NEWFSTATAT, ctypes.c_int(dirfd), ctypes.c_char_p(path), buf,
                    ctypes.c_int(flags)))
    return buf.raw


def statx_raw(dirfd: int, path: bytes, flags: int, mask: int) -> bytes:
    buf = ctypes.create_string_buffer(STATX_SIZE)
    _check(_syscall(NR_STATX, ctypes.c_int(dirfd), ctypes.c_char_p(path), ctypes.c_int(flags),
                    ctypes.c_uint(mask), buf))
    return buf.raw


def renameat2(olddir: int, old: bytes, newdir: int, new: bytes, flags: int) -> None:
    _check(_syscall(NR_RENAMEAT2, ctypes.c_int(olddir), ctypes.c_char_p(old),
                    ctypes.c_int(newdir), ctypes.c_char_p(new), ctypes.c_uint(flags)))


def faccessat2(dirfd: int, path: bytes, mode: int, flags: int) -> None:
    _check(_syscall(NR_FACCESSAT2, ctypes.c_int(dirfd), ctypes.c_char_p(path),
                    ctypes.c_int(mode), ctypes.c_int(flags)))


def fchmodat2(dirfd: int, path: bytes, mode: int, flags: int) -> None:
    _check(_syscall(NR_FCHMODAT2, ctypes.c_int(dirfd), ctypes.c_char_p(path),
                    ctypes.c_uint(mode), ctypes.c_uint(flags)))


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


def utimensat(dirfd: int, path: bytes | None, times: tuple[int, int, int, int] | None,
              flags: int) -> None:
    """times: (atime_sec, atime_nsec, mtime_sec, mtime_nsec), or None for now/now."""
    arr = None
    if times is not None:
        arr = (Timespec * 2)(Timespec(times[0], times[1]), Timespec(times[2], times[3]))
    _check(_syscall(NR_UTIMENSAT, ctypes.c_int(dirfd),
                    ctypes.c_char_p(path) if path is not None else None,
                    arr, ctypes.c_int(flags)))


def fchownat(dirfd: int, path: bytes, uid: int, gid: int, flags: int) -> None:
    """uid/gid -1 (0xFFFFFFFF) keep the current owner."""
    _check(_libc.fchownat(ctypes.c_int(dirfd), ctypes.c_char_p(path),
                          ctypes.c_uint(uid & 0xFFFFFFFF), ctypes.c_uint(gid & 0xFFFFFFFF),
                          ctypes.c_int(flags)))


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    return _check(_syscall(NR_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(targetfd),
                           ctypes.c_uint(0)))


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


def fstatfs_type(fd: int) -> int:
    """f_type of the filesystem holding fd."""
    buf = ctypes.create_string_buffer(120)  # struct statfs is 120 bytes on x86_64
    _check(_libc.fstatfs(ctypes.c_int(fd), buf))
    return int.from_bytes(buf.raw[:8], "little")


def fstatfs_raw(fd: int) -> bytes:
    """struct statfs (120 bytes, x86_64) of the filesystem holding fd."""
    buf = ctypes.create_string_buffer(120)
    _check(_libc.fstatfs(ctypes.c_int(fd), buf))
    return buf.raw


def inotify_add_watch(ifd: int, path: bytes, mask: int) -> int:
    return _check(_libc.inotify_add_watch(ctypes.c_int(ifd), ctypes.c_char_p(path),
                                          ctypes.c_uint32(mask & 0xFFFFFFFF)))


def sealed_memfd(name: str, content: bytes, mode: int = 0o444) -> int:
    """A memfd holding `content`, offset 0, sealed against any change."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(content)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.lseek(fd, 0, os.SEEK_SET)
        os.fchmod(fd, mode & 0o7777)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = [n for n in dir() if n.isupper() or n in (
    "openat2", "fstatat_raw", "statx_raw", "renameat2", "faccessat2", "fchmodat2",
    "utimensat", "fchownat", "pidfd_getfd", "setns", "fstatfs_type", "sealed_memfd", "OpenHow")]
