"""bind/connect: a Unix socket's path checked against the profile's path rules.

The kernel resolves a socket path itself (it is not a Gofer call): the Sentry reads the
address, and for an AF_UNIX path that a `deny` rule names (or, for bind, which creates the
file, a `readonly` rule) refuses the call with the rule's errno and a file event
(sentry/path_rules.py). Every other address (IP families, abstract Unix names, relative
paths, paths no rule names) is left to the kernel: CONTINUE, whose answer does not depend
on what was read, and the kernel's layer (hidden deny paths, read-only mounts) decides.

The compiler traps these two calls only when the profile has path rules and lets the
calls run (engine/compile.py); sendto/sendmsg to a Unix path are the kernel's alone.
"""

from __future__ import annotations

import json
import socket
import struct

from .call import Call, Continue, Decision, Memory, SentryContext
from .path_rules import refusal
from .table import Entry

_AF_UNIX = int(socket.AF_UNIX)
_SUN_PATH = 108  # sizeof(sockaddr_un.sun_path)


def unix_path(mem: Memory, addr: int, addrlen: int) -> str | None:
    """The filesystem path of a sockaddr_un, or None (another family, an abstract or
    unnamed address, unreadable memory)."""
    if not addr or addrlen < 3:
        return None
    n = min(addrlen, 2 + _SUN_PATH)
    try:
        raw = mem.read(addr, n)
    except OSError:
        return None
    (family,) = struct.unpack_from("<H", raw)
    if family != _AF_UNIX or raw[2] == 0:  # abstract names start with a NUL
        return None
    path = raw[2:].split(b"\0", 1)[0]
    return path.decode("utf-8", "surrogateescape") if path else None


def check_unix_path(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    a = call.args
    path = unix_path(mem, a[1], a[2] & 0xFFFFFFFF)
    if path is None:
        return Continue()
    write = call.name == "bind"
    shown = f"{call.name}({a[0]}, {{AF_UNIX, {json.dumps(path)}}}, {a[2] & 0xFFFFFFFF})"
    refused = refusal(ctx, call, path, write=write, op=call.name, shown=shown)
    return refused if refused is not None else Continue()


TABLE: dict[str, Entry] = {
    "unix_path": Entry("sandboxctl.sentry.handlers_unix:check_unix_path", "partial",
                       "AF_UNIX paths a deny rule names (readonly too, for bind) refused with "
                       "an event; everything else left to the kernel",
                       syscalls=("bind", "connect"), observes=True),
}
