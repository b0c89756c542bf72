"""Capabilities: cut every set (bounding, ambient, inheritable, permitted, effective) down
to the Plan's keep list, just before the program is executed."""

from __future__ import annotations

from ...engine.errors import SandboxError
from ...engine.constants import CAPABILITIES
from . import kernel

# One table of capability names for the whole project (engine/constants.py).
CAP_NAMES: tuple[str, ...] = CAPABILITIES


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
