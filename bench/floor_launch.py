#!/usr/bin/env python3
"""The floor of a CPython launcher, for bench/startup.py's table: not a sandbox.

What any sandbox launcher written in Python pays at least, with nothing of sandboxctl's:
the interpreter (run it with -S -E), new user, mount, pid, uts, ipc and net namespaces,
uid/gid maps, a fork, a read-only bind of / as the new root, pivot_root, a fresh /proc,
exec. No seccomp filter, no Sentry, no Gofer, no cgroups, no run record. Only `os` and
`ctypes` are imported.

    python3 -S -E bench/floor_launch.py [PROGRAM ARGS...]      (default: true)
"""

import ctypes
import os
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
NR_PIVOT_ROOT = 155  # x86_64

libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def child(argv: list[str]) -> None:
    mount = libc.mount
    check(mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    check(mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None), "tmpfs for the new root")
    os.mkdir("/tmp/root")
    check(mount(b"/", b"/tmp/root", None, MS_BIND | MS_REC, None), "bind /")
    check(mount(None, b"/tmp/root", None, MS_REMOUNT | MS_BIND | MS_RDONLY, None), "read-only")
    os.chdir("/tmp/root")
    check(libc.syscall(NR_PIVOT_ROOT, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "drop the old root")
    check(mount(b"proc", b"/proc", b"proc", 0, None), "proc")
    os.execvp(argv[0], argv)


def main() -> None:
    argv = sys.argv[1:] or ["true"]
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC
                       | CLONE_NEWPID | CLONE_NEWNET), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                       ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)
    pid = os.fork()
    if pid == 0:
        try:
            child(argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
