"""Host checks before anything starts: what this kernel and this user can do, and for each
missing piece one sentence naming it and the fix."""

from __future__ import annotations

from ...engine.errors import HostError
from .user import userns_available


def check_host(platform: str = "seccomp-notify") -> None:
    why = userns_available()
    if why:
        raise HostError(f"cannot create the sandbox: {why}",
                        hint="enable them: sysctl -w user.max_user_namespaces=15000 "
                        "(and kernel.unprivileged_userns_clone=1 where it exists)")
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as fh:
            actions = fh.read().split()
    except OSError:
        raise HostError("this kernel has no seccomp filter support",
                        hint="use a kernel built with CONFIG_SECCOMP_FILTER") from None
    if "user_notif" not in actions and platform != "ptrace":
        raise HostError("this kernel has no seccomp user notification (SECCOMP_RET_USER_NOTIF)",
                        hint="use Linux 5.5 or newer, or run with --platform ptrace "
                        "(platform: ptrace in the profile)") from None
    if "trace" not in actions and platform == "ptrace":
        raise HostError("this kernel has no SECCOMP_RET_TRACE",
                        hint="use --platform seccomp-notify") from None
