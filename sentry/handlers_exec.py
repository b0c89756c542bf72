"""execve/execveat: observed, recorded (path + argv), then CONTINUEd.

This is the one kind of call the Sentry lets the kernel run after looking at it: the
decision does not depend on what was read (the record is only a record), so a program
that changes the path after the read gains nothing. The host filter (plus the Gofer's
mounts) still decides whether the exec succeeds."""

from __future__ import annotations

import json
import struct

from .call import Call, Continue, Decision, Memory, SentryContext
from .dispatch_util import read_comm
from .table import Entry

_MAX_ARGV = 64
_MAX_ARG_LEN = 512


def _read_argv(mem: Memory, addr: int) -> list[str]:
    argv: list[str] = []
    if not addr:
        return argv
    for i in range(_MAX_ARGV):
        (ptr,) = struct.unpack("<Q", mem.read(addr + 8 * i, 8))
        if not ptr:
            return argv
        argv.append(mem.read_cstr(ptr, _MAX_ARG_LEN).decode(errors="replace"))
    argv.append("...")
    return argv


def observe_exec(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    if not ctx.plan.sentry.audit.exec:
        return Continue()
    if call.name == "execveat":
        path_addr, argv_addr = call.args[1], call.args[2]
    else:
        path_addr, argv_addr = call.args[0], call.args[1]
    path: str | None
    try:
        path = mem.read_cstr(path_addr).decode(errors="replace")
    except OSError:
        path = None
    try:
        argv = _read_argv(mem, argv_addr)
    except OSError:
        argv = []
    ctx.event({"kind": "exec", "pid": call.pid, "comm": read_comm(call.pid), "syscall": call.name, "nr": call.nr,
               "args": list(call.args), "action": "allow", "path": path, "argv": argv,
               "decoded": f"{call.name}({json.dumps(path)}, {json.dumps(argv)})"})
    return Continue()


TABLE: dict[str, Entry] = {
    "execve": Entry("sandboxctl.sentry.handlers_exec:observe_exec", "supported",
                    "observed: path and argv recorded, then run by the host kernel",
                    syscalls=("execve", "execveat"), observes=True),
}
