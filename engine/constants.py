"""Symbolic constants a profile may use (x86_64 Linux values), errno names, capabilities,
and size/number parsing. Data only; the validator and compiler look things up here."""

from __future__ import annotations

import errno as _errno

# Argument constants accepted in `syscalls` argument conditions; join with `|`.
ARG_CONSTANTS: dict[str, int] = {
    # address families, socket types, protocols
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10,
    "AF_NETLINK": 16, "AF_PACKET": 17, "AF_VSOCK": 40,
    "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_RAW": 3, "SOCK_SEQPACKET": 5,
    "SOCK_NONBLOCK": 0o4000, "SOCK_CLOEXEC": 0o2000000,
    "IPPROTO_IP": 0, "IPPROTO_ICMP": 1, "IPPROTO_TCP": 6, "IPPROTO_UDP": 17,
    "IPPROTO_IPV6": 41, "IPPROTO_ICMPV6": 58, "NETLINK_ROUTE": 0,
    # open flags
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_ACCMODE": 3, "O_CREAT": 0o100,
    "O_EXCL": 0o200, "O_NOCTTY": 0o400, "O_TRUNC": 0o1000, "O_APPEND": 0o2000,
    "O_NONBLOCK": 0o4000, "O_DSYNC": 0o10000, "O_DIRECT": 0o40000,
    "O_LARGEFILE": 0o100000, "O_DIRECTORY": 0o200000, "O_NOFOLLOW": 0o400000,
    "O_NOATIME": 0o1000000, "O_CLOEXEC": 0o2000000, "O_SYNC": 0o4010000,
    "O_PATH": 0o10000000, "O_TMPFILE": 0o20200000,
    "AT_SYMLINK_NOFOLLOW": 0x100, "AT_REMOVEDIR": 0x200, "AT_SYMLINK_FOLLOW": 0x400,
    "AT_EMPTY_PATH": 0x1000,
    # clone flags
    "CLONE_NEWTIME": 0x80, "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400,
    "CLONE_SIGHAND": 0x800, "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000,
    "CLONE_VFORK": 0x4000, "CLONE_PARENT": 0x8000, "CLONE_THREAD": 0x10000,
    "CLONE_NEWNS": 0x20000, "CLONE_SYSVSEM": 0x40000, "CLONE_SETTLS": 0x80000,
    "CLONE_PARENT_SETTID": 0x100000, "CLONE_CHILD_CLEARTID": 0x200000,
    "CLONE_DETACHED": 0x400000, "CLONE_UNTRACED": 0x800000,
    "CLONE_CHILD_SETTID": 0x1000000, "CLONE_NEWCGROUP": 0x2000000,
    "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000, "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000, "CLONE_IO": 0x80000000,
    # memory
    "PROT_NONE": 0, "PROT_READ": 1, "PROT_WRITE": 2, "PROT_EXEC": 4,
    "MAP_SHARED": 1, "MAP_PRIVATE": 2, "MAP_FIXED": 0x10, "MAP_ANONYMOUS": 0x20,
    # prctl
    "PR_SET_PDEATHSIG": 1, "PR_SET_DUMPABLE": 4, "PR_SET_NAME": 15, "PR_GET_NAME": 16,
    "PR_SET_SECCOMP": 22, "PR_CAPBSET_DROP": 24, "PR_SET_NO_NEW_PRIVS": 38,
    # fcntl / ioctl
    "F_DUPFD": 0, "F_GETFD": 1, "F_SETFD": 2, "F_GETFL": 3, "F_SETFL": 4,
    "F_DUPFD_CLOEXEC": 1030, "TCGETS": 0x5401, "TCSETS": 0x5402, "TIOCSTI": 0x5412,
    "TIOCGWINSZ": 0x5413, "TIOCSWINSZ": 0x5414, "FIONREAD": 0x541B, "FIONBIO": 0x5421,
    "TIOCLINUX": 0x541C,
    # signals
    "SIGHUP": 1, "SIGINT": 2, "SIGKILL": 9, "SIGUSR1": 10, "SIGUSR2": 12, "SIGTERM": 15,
    "SIGSTOP": 19,
}

CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

RLIMITS: tuple[str, ...] = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
)

# Largest value an rlimit may have; "unlimited" in a profile means RLIM_INFINITY.
RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF

_SIZE_RE = r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?|[kmgt]|B)?\s*$"  # (compiled where sizes are parsed:
# the sandbox's init imports this module for CAPABILITIES, and `re` is ~1.4 ms there)
_UNITS = {None: 1, "B": 1, "K": 10**3, "k": 10**3, "M": 10**6, "m": 10**6, "G": 10**9,
          "g": 10**9, "T": 10**12, "t": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
          "Ti": 2**40}


def errno_names() -> list[str]:
    return sorted(set(_errno.errorcode.values()))


def errno_value(name: str) -> int | None:
    value = getattr(_errno, name, None) if name.startswith("E") else None
    return value if isinstance(value, int) else None


def errno_name(value: int) -> str:
    return _errno.errorcode.get(value, str(value))


def parse_size(value: object) -> int | None:
    """Bytes from 1048576, "64Mi", "1G"; None if it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    import re  # (re caches the compiled pattern)

    m = re.match(_SIZE_RE, value)
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_arg_value(value: object) -> tuple[int | None, str | None, str | None]:
    """(integer, symbol, unknown-part) for an argument value: 5, "0x10", "O_WRONLY|O_CREAT".

    `symbol` is the text when it held a name; `unknown-part` is the first part that is
    neither a known constant nor a number."""
    if isinstance(value, bool):
        return None, None, str(value)
    if isinstance(value, int):
        return value, None, None
    if not isinstance(value, str) or not value.strip():
        return None, None, str(value)
    total = 0
    symbolic = False
    for part in value.split("|"):
        part = part.strip()
        if part in ARG_CONSTANTS:
            total |= ARG_CONSTANTS[part]
            symbolic = True
            continue
        try:
            total |= int(part, 0)
        except ValueError:
            return None, None, part
    return total, (value.strip() if symbolic else None), None


__all__ = ["ARG_CONSTANTS", "CAPABILITIES", "RLIMITS", "RLIM_INFINITY", "errno_names",
           "errno_value", "errno_name", "parse_size", "parse_arg_value"]
