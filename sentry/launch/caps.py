"""Capabilities: cut every set (bounding, ambient, inheritable, permitted, effective) down
to the Plan's keep list, just before the program is executed."""

from __future__ import annotations

from ...engine.errors import SandboxError
from . import kernel

CAP_NAMES: tuple[str, ...] = (
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


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except OSError:
        return len(CAP_NAMES) - 1


def cap_numbers(names: tuple[str, ...] | list[str]) -> list[int]:
    """Numbers of the named capabilities ("CAP_NET_RAW" or "net_raw")."""
    out = []
    for name in names:
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        if key not in CAP_NAMES:
            raise SandboxError(f"unknown capability {name!r} in the plan",
                               hint="use a name from capabilities(7), e.g. CAP_NET_BIND_SERVICE")
        out.append(CAP_NAMES.index(key))
    return out


def drop_to(keep: tuple[str, ...] | list[str]) -> None:
    """Leave only `keep` in every capability set of the calling process.

    Must run while the process still holds CAP_SETPCAP in its user namespace (i.e. before
    the uid changes away from a privileged one). Kept capabilities are also raised in the
    ambient set so they survive execve() for a non-root uid.
    """
    numbers = cap_numbers(keep)
    mask = 0
    for n in numbers:
        mask |= 1 << n
    for n in range(_last_cap() + 1):
        if not mask & (1 << n):
            kernel.prctl(kernel.PR_CAPBSET_DROP, n)
    kernel.prctl(kernel.PR_CAP_AMBIENT, kernel.PR_CAP_AMBIENT_CLEAR_ALL)
    kernel.capset(mask, mask, mask)
    for n in numbers:
        kernel.prctl(kernel.PR_CAP_AMBIENT, kernel.PR_CAP_AMBIENT_RAISE, n)


__all__ = ["CAP_NAMES", "cap_numbers", "drop_to"]
