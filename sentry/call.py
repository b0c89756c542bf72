"""The contract between the Sentry's platforms and its handlers.

A platform (seccomp-notify in platform_notify.py, ptrace in platform_ptrace.py) turns one
trapped system call into a `Call` plus a `Memory` view of the caller, asks the handler
the table names for a `Decision`, and carries the decision out. Handlers never talk to
the kernel interface themselves, so one handler serves both platforms.

    def handle(ctx: SentryContext, call: Call, mem: Memory) -> Decision

Rule (TOCTOU): a handler that read the caller's memory to decide must not return
`Continue()`: the kernel would read that memory again, after the program changed it.
Continue is only for calls the handler merely observed (execve, `log` rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Union

from ..engine.plan import Plan


@dataclass(slots=True)
class Call:
    """One trapped system call (x86_64 numbering)."""

    pid: int  # thread id of the caller, as the Sentry's pid namespace sees it
    nr: int
    args: tuple[int, int, int, int, int, int]
    name: str


class Memory(Protocol):
    """The calling process's memory."""

    def read(self, addr: int, size: int) -> bytes: ...

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...


# -- decisions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Continue:
    """Let the kernel run the call as made. ONLY for calls the handler merely observed."""


@dataclass(frozen=True, slots=True)
class Return:
    """The call returns `value` (>= 0) without running."""

    value: int = 0


@dataclass(frozen=True, slots=True)
class Errno:
    """The call fails with -errno without running."""

    errno: int


@dataclass(frozen=True, slots=True)
class Kill:
    """Kill the calling process (its whole thread group); the run records `reason`."""

    reason: str


@dataclass(frozen=True, slots=True)
class InjectFd:
    """Install host descriptor `fd` in the caller and return its number as the call's
    result (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND). The platform closes
    `fd` in the Sentry afterwards when `close` is true."""

    fd: int
    cloexec: bool = False
    close: bool = True


Decision = Union[Continue, Return, Errno, Kill, InjectFd]


class MemoryError_(OSError):
    """The caller's memory could not be read or written (bad address, process gone)."""


# -- the handler's view of the Sentry -------------------------------------------------


EventSink = Callable[[dict[str, Any]], None]


@dataclass
class SentryContext:
    """What a handler may use. One per Sentry process; handlers must treat it as
    read-only except through `event()`.

    `gofer_sock` is the Sentry's end of the Gofer connection (None without a Gofer).
    `extra` is for handler families to keep their own per-Sentry state (e.g. a Gofer
    client), keyed by module name.
    """

    plan: Plan
    emit: EventSink
    gofer_sock: Any = None
    debug: Callable[[str], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def event(self, ev: dict[str, Any]) -> None:
        self.emit(ev)


Handler = Callable[[SentryContext, Call, Memory], Decision]

__all__ = ["Call", "Memory", "Continue", "Return", "Errno", "Kill", "InjectFd", "Decision",
           "MemoryError_", "SentryContext", "Handler", "EventSink"]
