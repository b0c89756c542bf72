"""uname(2) from the profile: sysname, nodename (the sandbox hostname), release, version,
machine, domainname. The struct is written into the caller's buffer; nothing is read
from the caller, so there is nothing to re-check."""

from __future__ import annotations

import errno as _errno

from ..engine.plan import UnameConfig
from .call import Call, Decision, Errno, Memory, Return, SentryContext
from .table import Entry

_FIELD = 65  # __NEW_UTS_LEN + 1


def utsname_bytes(u: UnameConfig) -> bytes:
    """struct new_utsname: six NUL-padded 65-byte fields."""
    out = b""
    for value in (u.sysname, u.nodename, u.release, u.version, u.machine, u.domainname):
        raw = value.encode()[: _FIELD - 1]
        out += raw + b"\0" * (_FIELD - len(raw))
    return out


def handle_uname(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    data = ctx.extra.get("uname")
    if data is None:
        data = ctx.extra["uname"] = utsname_bytes(ctx.plan.sentry.uname)
    try:
        mem.write(call.args[0], data)
    except OSError:
        return Errno(_errno.EFAULT)
    return Return(0)


TABLE: dict[str, Entry] = {
    "uname": Entry("sandboxctl.sentry.handlers_uname:handle_uname", "supported",
                   "sysname, nodename, release, version, machine, domainname from the profile"),
}
