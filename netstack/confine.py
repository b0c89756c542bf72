"""Confine the netstack process once its TAP fd and listeners are set up: no privileges
(uid/gid 65534, no capabilities, no_new_privs) and a seccomp allow-list of the calls the
loop makes. Anything else fails with EPERM: no exec, no file opens, no new TAP devices,
no namespaces, and sockets only of the Internet families."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
FIONBIO = 0x5421
NOBODY = 65534

# The loop: epoll, TAP readv/writev, host sockets; plus what CPython itself needs.
ALLOWED = (
    "read", "readv", "write", "writev", "close", "epoll_wait", "epoll_pwait", "epoll_ctl",
    "connect", "accept4", "accept", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown",
    "setsockopt", "getsockopt", "getsockname", "getpeername", "fcntl", "poll", "select",
    "pselect6", "ppoll", "getrandom", "clock_gettime", "clock_nanosleep", "nanosleep",
    "gettimeofday", "mmap", "munmap", "mremap", "madvise", "mprotect", "brk", "futex",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "getpid", "gettid",
    "getppid", "tgkill", "exit", "exit_group", "fstat", "newfstatat", "lseek",
    "sched_yield", "restart_syscall",
)


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def drop_privileges() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)  # from root: every capability goes too
    # a change of credentials clears the parent-death signal: set it again
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def load_filter() -> None:
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in ALLOWED:
        try:
            flt.add_rule(sc.ALLOW, name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a call on this architecture
    for family in (socket.AF_INET, socket.AF_INET6):
        flt.add_rule(sc.ALLOW, "socket", sc.Arg(0, sc.EQ, family))
    flt.add_rule(sc.ALLOW, "ioctl", sc.Arg(1, sc.EQ, FIONBIO))  # socket.setblocking
    flt.load()


def confine() -> None:
    drop_privileges()
    load_filter()
