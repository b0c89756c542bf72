"""Decode a trapped call's arguments strace-style for the events log:
path strings, flag names, socket domains, errno names.

Only what a refusal record needs; tables are plain dicts built once at import.
Unknown calls print their arguments in hex.
"""

from __future__ import annotations

import errno as _errno

from ..engine import syscalls
from .call import Memory

# -- syscall names --------------------------------------------------------------------

def syscall_name(nr: int) -> str:
    """The name of one x86_64 syscall number (engine.syscalls' table, which the supervisor
    loads before it forks the Sentry: supervisor.warm); `syscall_<nr>` for a number it
    does not know."""
    name = syscalls.name_of(nr) if 0 <= nr < syscalls.NATIVE_LIMIT else None
    return name or f"syscall_{nr}"


def errno_name(e: int) -> str:
    return _errno.errorcode.get(e, str(e))


# -- flag tables ----------------------------------------------------------------------

OPEN_FLAGS = {
    0o100: "O_CREAT", 0o200: "O_EXCL", 0o400: "O_NOCTTY", 0o1000: "O_TRUNC",
    0o2000: "O_APPEND", 0o4000: "O_NONBLOCK", 0o10000: "O_DSYNC", 0o20000: "O_ASYNC",
    0o40000: "O_DIRECT", 0o200000: "O_DIRECTORY", 0o400000: "O_NOFOLLOW",
    0o1000000: "O_NOATIME", 0o2000000: "O_CLOEXEC", 0o10000000: "O_PATH",
    0o20000000 | 0o200000: "O_TMPFILE", 0o4010000: "O_SYNC", 0o100000: "O_LARGEFILE",
}
CLONE_FLAGS = {
    0x100: "CLONE_VM", 0x200: "CLONE_FS", 0x400: "CLONE_FILES", 0x800: "CLONE_SIGHAND",
    0x1000: "CLONE_PIDFD", 0x2000: "CLONE_PTRACE", 0x4000: "CLONE_VFORK",
    0x8000: "CLONE_PARENT", 0x10000: "CLONE_THREAD", 0x20000: "CLONE_NEWNS",
    0x40000: "CLONE_SYSVSEM", 0x80000: "CLONE_SETTLS", 0x100000: "CLONE_PARENT_SETTID",
    0x200000: "CLONE_CHILD_CLEARTID", 0x800000: "CLONE_UNTRACED",
    0x1000000: "CLONE_CHILD_SETTID", 0x2000000: "CLONE_NEWCGROUP", 0x4000000: "CLONE_NEWUTS",
    0x8000000: "CLONE_NEWIPC", 0x10000000: "CLONE_NEWUSER", 0x20000000: "CLONE_NEWPID",
    0x40000000: "CLONE_NEWNET", 0x80000000: "CLONE_IO", 0x80: "CLONE_NEWTIME",
}
MOUNT_FLAGS = {
    1: "MS_RDONLY", 2: "MS_NOSUID", 4: "MS_NODEV", 8: "MS_NOEXEC", 16: "MS_SYNCHRONOUS",
    32: "MS_REMOUNT", 64: "MS_MANDLOCK", 128: "MS_DIRSYNC", 1024: "MS_NOATIME",
    2048: "MS_NODIRATIME", 4096: "MS_BIND", 8192: "MS_MOVE", 16384: "MS_REC",
    32768: "MS_SILENT", 1 << 17: "MS_UNBINDABLE", 1 << 18: "MS_PRIVATE", 1 << 19: "MS_SLAVE",
    1 << 20: "MS_SHARED", 1 << 21: "MS_RELATIME", 1 << 24: "MS_STRICTATIME",
}
UMOUNT_FLAGS = {1: "MNT_FORCE", 2: "MNT_DETACH", 4: "MNT_EXPIRE", 8: "UMOUNT_NOFOLLOW"}
AF = {0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK",
      17: "AF_PACKET", 38: "AF_ALG", 40: "AF_VSOCK", 44: "AF_XDP", 4: "AF_IPX", 5: "AF_APPLETALK",
      9: "AF_X25", 31: "AF_BLUETOOTH", 29: "AF_CAN", 21: "AF_RDS", 15: "AF_KEY"}
SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
              5: "SOCK_SEQPACKET", 10: "SOCK_PACKET"}
SOCK_FLAGS = {0o4000: "SOCK_NONBLOCK", 0o2000000: "SOCK_CLOEXEC"}
PTRACE_REQ = {0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA",
              4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 7: "PTRACE_CONT", 8: "PTRACE_KILL",
              9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
              16: "PTRACE_ATTACH", 17: "PTRACE_DETACH", 24: "PTRACE_SYSCALL",
              0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT"}
AT_FDCWD = -100
ACCESS_MODES = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}


def flags(value: int, table: dict[int, str], zero: str = "0") -> str:
    if value == 0:
        return zero
    names = []
    rest = value
    for bit, name in sorted(table.items(), key=lambda kv: -bin(kv[0]).count("1")):
        if bit and (rest & bit) == bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def open_flags(value: int) -> str:
    acc = ACCESS_MODES.get(value & 3, hex(value & 3))
    rest = flags(value & ~3, OPEN_FLAGS, "")
    return acc + ("|" + rest if rest else "")


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def dirfd(v: int) -> str:
    v = _s32(v)
    return "AT_FDCWD" if v == AT_FDCWD else str(v)


# -- per-call argument formats ------------------------------------------------------------
# Each format letter decodes one argument:
#   p path string   f open flags   d dirfd   m octal mode   c clone flags   M mount flags
#   u umount flags  a socket domain   t socket type   P ptrace request   i int   x hex
#   s sockaddr (length in the next argument)
_FORMATS: dict[str, str] = {
    "open": "pfm", "openat": "dpfm", "openat2": "dpx", "creat": "pm", "access": "pi",
    "faccessat": "dpi", "faccessat2": "dpii", "stat": "px", "lstat": "px", "newfstatat": "dpxi",
    "statx": "dpiix", "readlink": "pxi", "readlinkat": "dpxi", "unlink": "p",
    "unlinkat": "dpi", "mkdir": "pm", "mkdirat": "dpm", "rmdir": "p", "chdir": "p",
    "chmod": "pm", "fchmodat": "dpm", "chown": "pii", "lchown": "pii", "fchownat": "dpiii",
    "rename": "pp", "renameat": "dpdp", "renameat2": "dpdpi", "link": "pp", "linkat": "dpdpi",
    "symlink": "pp", "symlinkat": "pdp", "truncate": "pi", "execve": "pxx", "execveat": "dpxxi",
    "chroot": "p", "pivot_root": "pp", "mknod": "pmi", "mknodat": "dpmi",
    "mount": "ppp" + "Mx", "umount2": "pu", "unshare": "c", "setns": "ic", "clone": "cxxxx",
    "socket": "ati", "socketpair": "atix", "ptrace": "Pixx", "kill": "ii", "tgkill": "iii",
    "uname": "x", "sethostname": "xi", "setdomainname": "xi", "swapon": "pi", "swapoff": "p",
    "acct": "p", "utimensat": "dpxi", "inotify_add_watch": "ipx", "statfs": "px",
    "connect": "isi", "bind": "isi", "sendto": "ixiisi",
}


def sockaddr(mem: Memory, addr: int, length: int) -> str:
    """{AF_INET, 1.2.3.4:80}, {AF_INET6, [::1]:443}, {AF_UNIX, "/run/x.sock"}."""
    import ipaddress
    import struct

    if not addr or length < 2:
        return "NULL"
    raw = mem.read(addr, min(length, 128))
    (family,) = struct.unpack_from("<H", raw)
    name = AF.get(family, str(family))
    if family == 2 and len(raw) >= 8:
        port = struct.unpack_from(">H", raw, 2)[0]
        return f"{{{name}, {ipaddress.IPv4Address(raw[4:8])}:{port}}}"
    if family == 10 and len(raw) >= 24:
        port = struct.unpack_from(">H", raw, 2)[0]
        return f"{{{name}, [{ipaddress.IPv6Address(raw[8:24])}]:{port}}}"
    if family == 1:
        path = raw[2:]
        abstract = path[:1] == b"\0"
        text = (path[1:] if abstract else path).split(b"\0")[0].decode(errors="replace")
        return f'{{{name}, "{"@" if abstract else ""}{text}"}}'
    return f"{{{name}, ...}}"


def _arg(kind: str, v: int, mem: Memory | None, nxt: int = 0) -> str:
    if kind == "p":
        if not v:
            return "NULL"
        if mem is None:
            return hex(v)
        try:
            return repr(mem.read_cstr(v, 4096).decode(errors="replace")).replace("'", '"')
        except OSError:
            return hex(v)
    if kind == "f":
        return open_flags(v)
    if kind == "d":
        return dirfd(v)
    if kind == "m":
        return oct(v & 0o7777)
    if kind == "c":
        low = v & 0xFF
        rest = flags(v & ~0xFF, CLONE_FLAGS)
        if low and low != 0x80:
            return (rest + "|" if v & ~0xFF else "") + f"SIG{low}"
        return flags(v, CLONE_FLAGS)
    if kind == "M":
        return flags(v, MOUNT_FLAGS)
    if kind == "u":
        return flags(v, UMOUNT_FLAGS)
    if kind == "a":
        return AF.get(v, str(v))
    if kind == "t":
        base = SOCK_TYPES.get(v & 0xF, str(v & 0xF))
        extra = flags(v & ~0xF, SOCK_FLAGS, "")
        return base + ("|" + extra if extra else "")
    if kind == "s":  # a sockaddr; its length is the next argument
        return hex(v) if mem is None else sockaddr(mem, v, nxt)
    if kind == "P":
        return PTRACE_REQ.get(v, str(v))
    if kind == "i":
        return str(_s32(v))
    return hex(v)


def decode(name: str, args: tuple[int, ...] | list[int], mem: Memory | None = None) -> str:
    """`openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC)`; hex for unknown calls."""
    fmt = _FORMATS.get(name)
    if fmt is None:
        return f"{name}({', '.join(hex(a) for a in args[:3])}, ...)"
    parts = []
    for i, (kind, v) in enumerate(zip(fmt, args)):
        try:
            parts.append(_arg(kind, v, mem, args[i + 1] if i + 1 < len(args) else 0))
        except Exception:  # a decoder must never break the loop
            parts.append(hex(v))
    return f"{name}({', '.join(parts)})"


__all__ = ["decode", "syscall_name", "errno_name", "open_flags", "flags",
           "CLONE_FLAGS", "MOUNT_FLAGS", "OPEN_FLAGS", "AF", "SOCK_TYPES"]
