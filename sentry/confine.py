"""The Sentry's own confinement, declared as data next to the code (gVisor's way):
the system calls the serving loop needs, everything else refused, the dangerous ones
fatal. Applied after set-up, before the first notification is served.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from .seccomp_child import SECCOMP_FILTER_FLAG_TSYNC, load_bpf

# What the loop, its worker threads, the handlers and the event writer use.
SENTRY_ALLOWED: tuple[str, ...] = (
    # memory and the interpreter
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "futex", "set_robust_list",
    "rseq", "getrandom", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "sched_yield", "sched_getaffinity", "clock_gettime", "clock_nanosleep", "nanosleep",
    "gettimeofday", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
    "exit", "exit_group", "restart_syscall",
    # threads of the worker pool (clone3's flags live in memory, so it cannot be narrowed)
    "clone", "clone3",
    # descriptors: the listener, events.jsonl, sentry.log, /proc/<pid>/comm, the Gofer
    "read", "write", "pread64", "pwrite64", "readv", "writev", "close", "fstat", "newfstatat",
    "statx", "lseek", "fcntl", "dup", "dup3", "openat", "getdents64", "poll", "ppoll",
    "pipe2", "sendmsg", "recvmsg", "fsync", "fdatasync", "ioctl", "readlink", "readlinkat",
    "getcwd",
    # acting on the sandbox
    "process_vm_readv", "process_vm_writev", "kill", "tgkill", "pidfd_send_signal",
    # statfs, getxattr/listxattr, inotify_add_watch served on Gofer-opened O_PATH fds
    "fstatfs", "getxattr", "listxattr", "pidfd_open", "pidfd_getfd", "inotify_add_watch",
)

# Refusing these is not enough: a Sentry that tries them is compromised.
SENTRY_FATAL: tuple[str, ...] = (
    "execve", "execveat", "ptrace", "mount", "umount2", "pivot_root", "chroot", "unshare",
    "setns", "bpf", "init_module", "finit_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "io_uring_setup", "userfaultfd", "perf_event_open", "keyctl",
    "setuid", "setgid", "setresuid", "setresgid", "setreuid", "setregid", "capset",
)

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
NR_CAPSET = 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _prctl(option: int, a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> int:
    return _libc.prctl(option, a, b, c, d)


def drop_capabilities() -> None:
    """Empty every capability set: bounding (while CAP_SETPCAP allows), ambient,
    inheritable, permitted, effective."""
    for cap in range(64):
        if _prctl(PR_CAPBSET_DROP, cap) != 0:
            if ctypes.get_errno() == _errno.EINVAL:
                break  # past the last capability
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.syscall(NR_CAPSET, ctypes.byref(hdr), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capset: {os.strerror(e)}")


def no_new_privs() -> None:
    if _prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(e)}")


def build_sentry_filter(listener_ioctls: tuple[int, ...]):
    """The Sentry's filter, built (not loaded): SENTRY_ALLOWED (ioctl only for the
    listener's requests and TCGETS), SENTRY_FATAL kill, anything else EPERM; TSYNC. The
    launcher builds it before the Sentry's fork (the Sentry only loads it)."""
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ERRNO(_errno.EPERM))
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    flt.set_attr(sc.Attr.CTL_TSYNC, 1)
    for name in SENTRY_ALLOWED:
        if name == "ioctl":
            continue
        flt.add_rule(sc.ALLOW, name)
    for req in (*listener_ioctls, 0x5401):  # 0x5401: TCGETS (isatty)
        flt.add_rule(sc.ALLOW, "ioctl", sc.Arg(1, sc.EQ, req))
    for name in SENTRY_FATAL:
        flt.add_rule(sc.KILL_PROCESS, name)
    return flt


def sentry_filter_bpf(listener_ioctls: tuple[int, ...]) -> bytes:
    """build_sentry_filter's program as classic BPF, from the cache when nothing it
    depends on changed (engine/cache.py, own_filter_bpf): the launcher then imports no
    pyseccomp before the Sentry's fork."""
    from ..engine.cache import own_filter_bpf, source_stamp

    def build() -> bytes:
        from ..engine.filter import bpf_of

        return bpf_of(build_sentry_filter(listener_ioctls))

    return own_filter_bpf("sentry", (tuple(listener_ioctls), SENTRY_ALLOWED, SENTRY_FATAL,
                                     source_stamp(__file__)), build)


def confine(bpf: bytes) -> None:
    """No capability, no_new_privs, then the Sentry's filter (`bpf`: sentry_filter_bpf's,
    made before the Sentry's fork). Threads started before this get the filter too
    (TSYNC)."""
    drop_capabilities()
    no_new_privs()
    if load_bpf(bpf, SECCOMP_FILTER_FLAG_TSYNC) != 0:  # (a thread id: that one is not in sync)
        raise OSError(_errno.EBUSY, "seccomp: a thread of the Sentry could not take its filter")


__all__ = ["SENTRY_ALLOWED", "SENTRY_FATAL", "confine", "build_sentry_filter", "sentry_filter_bpf", "drop_capabilities",
           "no_new_privs"]
