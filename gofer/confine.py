"""The Gofer's own confinement, declared as data next to the code that needs it.

Once the Gofer has joined the sandbox's namespaces and chrooted into its root, it keeps
the program's identity (uid, gid, capabilities: it opens files *as* the program, so the
kernel's permission checks give the program's answers), sets no_new_privs and loads this
filter: the calls below are allowed, the fatal ones kill it, everything else fails EPERM.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

# (imported here, not where the filter is loaded: by then the Gofer is chrooted)
from ..sentry.seccomp_child import load_bpf

GOFER_ALLOWED: tuple[str, ...] = (
    # the interpreter and its threads
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "futex", "set_robust_list",
    "rseq", "getrandom", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "sched_yield", "sched_getaffinity", "clock_gettime", "clock_nanosleep", "nanosleep",
    "gettimeofday", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
    "exit", "exit_group", "restart_syscall", "clone", "clone3",
    # the socket to the Sentry
    "recvmsg", "sendmsg", "sendto", "recvfrom", "poll", "ppoll",
    # descriptors
    "read", "write", "close", "fstat", "newfstatat", "statx", "lseek", "fcntl", "dup", "dup3",
    "fstatfs",
    # the file operations it serves (resolution by openat2, everything else *at on fds)
    "openat2", "openat", "readlinkat", "readlink", "faccessat2", "mkdirat", "unlinkat",
    "renameat2", "linkat", "mknodat", "symlinkat", "fchmodat2", "fchownat", "utimensat", "ftruncate",
    "memfd_create", "fchmod", "getdents64",
)

GOFER_FATAL: tuple[str, ...] = (
    "execve", "execveat", "ptrace", "mount", "umount2", "pivot_root", "chroot", "unshare",
    "setns", "bpf", "init_module", "finit_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "name_to_handle_at", "io_uring_setup", "userfaultfd",
    "perf_event_open", "keyctl", "process_vm_readv", "process_vm_writev", "socket",
    "connect", "bind", "setuid", "setgid", "setresuid", "setresgid", "setreuid", "setregid",
    "capset", "setfsuid", "setfsgid",
)

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
NR_CAPSET = 126
_CAP_V3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _err(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def prctl(option: int, a: int = 0, b: int = 0) -> None:
    if _libc.prctl(option, a, b, 0, 0) != 0:
        raise _err(f"prctl({option})")


def cap_mask(names: tuple[str, ...]) -> int:
    from ..sentry.launch.caps import cap_numbers

    mask = 0
    for n in cap_numbers(names):
        mask |= 1 << n
    return mask


def become(uid: int, gid: int, keep_caps: int) -> None:
    """Take the program's ids and keep exactly `keep_caps` (a bit mask) in every set."""
    for cap in range(64):
        if not keep_caps & (1 << cap) and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == _errno.EINVAL:
                break
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    try:
        os.setgroups([])
    except OSError:
        pass  # setgroups is "deny" in this user namespace: there are none to drop
    prctl(PR_SET_KEEPCAPS, 1)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_KEEPCAPS, 0)
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        part = (keep_caps >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = part
        data[i].inheritable = 0
    if _libc.syscall(NR_CAPSET, ctypes.byref(hdr), data) != 0:
        raise _err("capset")


def build_filter():
    """The Gofer's filter, built (not loaded): GOFER_ALLOWED, GOFER_FATAL kill, anything
    else EPERM, another ABI kills."""
    from ..engine.libseccomp import load

    sc = load()
    flt = sc.SyscallFilter(sc.ERRNO(_errno.EPERM))
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in GOFER_ALLOWED:
        flt.add_rule(sc.ALLOW, name)
    for name in GOFER_FATAL:
        flt.add_rule(sc.KILL_PROCESS, name)
    return flt


def filter_bpf() -> bytes:
    """build_filter's program as classic BPF, from the cache when nothing it depends on
    changed (engine/cache.py, own_filter_bpf)."""
    from ..engine.cache import own_filter_bpf, source_stamp

    def build() -> bytes:
        from ..engine.filter import bpf_of

        return bpf_of(build_filter())

    return own_filter_bpf("gofer", (GOFER_ALLOWED, GOFER_FATAL, source_stamp(__file__)), build)


def load_filter(bpf: bytes) -> None:
    """no_new_privs, then load `bpf` (filter_bpf's, made before the Gofer's fork)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    load_bpf(bpf, 0)


__all__ = ["GOFER_ALLOWED", "GOFER_FATAL", "become", "build_filter", "filter_bpf", "load_filter", "cap_mask", "prctl",
           "PR_SET_PDEATHSIG"]
