"""The user namespace: map the sandbox's uid/gid onto the invoking user's ids.

The child writes its own maps right after unshare(CLONE_NEWUSER): one line each, the id
inside -> the caller's effective id outside. This is what an unprivileged user may do
(after denying setgroups), so root and rootless runs take the same path.
"""

from __future__ import annotations

import os


def write_maps(uid_inside: int, gid_inside: int, uid_outside: int, gid_outside: int) -> None:
    with open("/proc/self/setgroups", "w") as fh:
        fh.write("deny")
    with open("/proc/self/gid_map", "w") as fh:
        fh.write(f"{gid_inside} {gid_outside} 1\n")
    with open("/proc/self/uid_map", "w") as fh:
        fh.write(f"{uid_inside} {uid_outside} 1\n")


def userns_available() -> str | None:
    """None when unprivileged user namespaces can be created, else why not."""
    try:
        with open("/proc/sys/user/max_user_namespaces") as fh:
            if int(fh.read().strip() or "0") == 0:
                return "user namespaces are disabled (user.max_user_namespaces is 0)"
    except OSError:
        return "this kernel has no user namespaces (/proc/sys/user/max_user_namespaces is missing)"
    try:
        with open("/proc/sys/kernel/unprivileged_userns_clone") as fh:
            if fh.read().strip() == "0" and os.geteuid() != 0:
                return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone is 0)"
    except OSError:
        pass
    return None
