"""The Sentry's syscall table, as data (gVisor keeps linux64.go the same way).

Each handler family is one module `sentry/handlers_<family>.py` holding a dict

    TABLE: dict[str, Entry] = {"uname": Entry("sandboxctl.sentry.handlers_uname:handle_uname",
                                               "supported", "from the profile's uname")}

keyed by the handler name a Plan rule gives (`SyscallRule.handler`), which is the syscall
name unless a rule says otherwise. This module gathers every such dict (modules are found
by name, so a new family needs no edit here) plus the calls sandboxctl deliberately does
not implement, with the reason. `sandboxctl syscalls` prints `handler_table()`.
"""

from __future__ import annotations

import functools
import importlib
import os

from ..engine.record import record
from .call import Handler

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Literal

    Status = Literal["supported", "partial", "unimplemented"]
else:
    Status = str


@record
class Entry:
    """One handler of the Sentry's table: what serves a syscall, its status and note."""

    handler: str | None  # "module:function", None for unimplemented calls
    status: Status
    note: str = ""
    may_block: bool = False  # served off the loop thread (e.g. a Gofer open of a FIFO)
    # True only for handlers that read the caller's memory merely to record it and then
    # CONTINUE (execve). Any other handler answering Continue after a read is refused by
    # the dispatcher: the kernel would re-read memory the program can change (TOCTOU).
    observes: bool = False
    syscalls: tuple[str, ...] = ()  # syscalls served, when not just the entry's name
    listed: bool = True  # False: an internal handler no syscall row names (observe)


# Calls no handler serves, and why. The host filter refuses them in every profile's
# defaults; the reason is what `sandboxctl syscalls` shows.
UNIMPLEMENTED: dict[str, str] = {
    "io_uring_setup": "its operations bypass seccomp; refused",
    "io_uring_enter": "its operations bypass seccomp; refused",
    "io_uring_register": "its operations bypass seccomp; refused",
    "ptrace": "would let the program inspect or steer other processes; refused",
    "process_vm_readv": "cross-process memory access; refused",
    "process_vm_writev": "cross-process memory access; refused",
    "bpf": "kernel programs; refused",
    "perf_event_open": "kernel attack surface; refused",
    "userfaultfd": "used to widen kernel race windows; refused",
    "keyctl": "the kernel keyring is not namespaced; refused",
    "add_key": "the kernel keyring is not namespaced; refused",
    "request_key": "the kernel keyring is not namespaced; refused",
    "open_by_handle_at": "bypasses path checks; refused",
    "kexec_load": "host kernel control; refused",
    "kexec_file_load": "host kernel control; refused",
    "init_module": "kernel modules; refused",
    "finit_module": "kernel modules; refused",
    "delete_module": "kernel modules; refused",
}

_PREFIX = "handlers_"


def _family_modules() -> list[str]:
    """The handler family modules, by file name in this package's folder(s). (Not
    pkgutil.iter_modules: it imports inspect, ~4 ms of `apply`'s start-up.)"""
    from . import __path__ as pkg_path  # type: ignore[attr-defined]

    names: set[str] = set()
    for folder in pkg_path:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for fname in entries:
            stem, dot, ext = fname.rpartition(".")
            if stem.startswith(_PREFIX) and dot and ext in ("py", "pyc") and stem.isidentifier():
                names.add(stem)
    return sorted(names)


@functools.cache
def load_table() -> dict[str, Entry]:
    """Every handler entry of every family module, by handler name (imported once;
    treat the result as read-only)."""
    table: dict[str, Entry] = {}
    for name in _family_modules():
        mod = importlib.import_module(f"{__package__}.{name}")
        for key, entry in getattr(mod, "TABLE", {}).items():
            if key in table:
                raise RuntimeError(f"handler {key!r} is defined twice ({name} and another family)")
            table[key] = entry
    return table


def handler_table() -> list[tuple[str, str, str, str]]:
    """Rows (name, status, handler, note), sorted by name, for `sandboxctl syscalls`."""
    rows: dict[str, tuple[str, str, str, str]] = {}
    for key, e in load_table().items():
        if not e.listed:
            continue
        for sysname in e.syscalls or (key,):
            rows[sysname] = (sysname, e.status, e.handler or "", e.note)
    for sysname, note in UNIMPLEMENTED.items():
        rows.setdefault(sysname, (sysname, "unimplemented", "", note))
    return [rows[k] for k in sorted(rows)]


def resolve(spec: str) -> Handler:
    """Import "module:function" once (at Sentry start, never per call)."""
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


__all__ = ["Entry", "Status", "UNIMPLEMENTED", "load_table", "handler_table", "resolve"]
