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

from ..engine.plan import Plan

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Protocol, Union
else:
    Protocol = object  # Memory is a structural type for the checker alone


class Call:
    """One trapped system call (x86_64 numbering).

    A plain slots class rather than a dataclass: one is made per trapped call, and the
    dataclasses module (with inspect) is ~5 ms of `apply`'s start-up."""

    __slots__ = ("pid", "nr", "args", "name")

    def __init__(self, pid: int, nr: int, args: tuple[int, int, int, int, int, int],
                 name: str) -> None:
        self.pid = pid  # thread id of the caller, as the Sentry's pid namespace sees it
        self.nr = nr
        self.args = args
        self.name = name

    def __repr__(self) -> str:
        return f"Call(pid={self.pid}, nr={self.nr}, args={self.args!r}, name={self.name!r})"


class Memory(Protocol):
    """The calling process's memory."""

    def read(self, addr: int, size: int) -> bytes: ...

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...


# -- decisions ----------------------------------------------------------------------


class _Decision:
    """Base of the decisions: immutable value objects with __slots__ (plain classes, not
    dataclasses: one is made per trapped call, and a frozen dataclass's __init__ goes
    through object.__setattr__ for each field; creating the classes is cheaper too)."""

    __slots__ = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and other._values() == self._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.__class__.__name__, self._values()))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(" + ", ".join(
            f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self.__class__.__name__} is immutable")


_set = object.__setattr__


class Continue(_Decision):
    """Let the kernel run the call as made. ONLY for calls the handler merely observed."""

    __slots__ = ()


class Return(_Decision):
    """The call returns `value` (>= 0) without running."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        _set(self, "value", value)


class Errno(_Decision):
    """The call fails with -errno without running."""

    __slots__ = ("errno",)

    def __init__(self, errno: int) -> None:
        _set(self, "errno", errno)


class Kill(_Decision):
    """Kill the calling process (its whole thread group); the run records `reason`."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        _set(self, "reason", reason)


class InjectFd(_Decision):
    """Install host descriptor `fd` in the caller and return its number as the call's
    result (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND). The platform closes
    `fd` in the Sentry afterwards when `close` is true."""

    __slots__ = ("fd", "cloexec", "close")

    def __init__(self, fd: int, cloexec: bool = False, close: bool = True) -> None:
        _set(self, "fd", fd)
        _set(self, "cloexec", cloexec)
        _set(self, "close", close)


if TYPE_CHECKING:
    Decision = Union[Continue, Return, Errno, Kill, InjectFd]
else:
    Decision = _Decision  # (a name for the annotations; every decision is one)


class MemoryError_(OSError):
    """The caller's memory could not be read or written (bad address, process gone)."""


# -- the handler's view of the Sentry -------------------------------------------------


if TYPE_CHECKING:
    EventSink = Callable[[dict[str, Any]], None]
else:
    EventSink = Handler = object  # (names for the annotations)


class SentryContext:
    """What a handler may use. One per Sentry process; handlers must treat it as
    read-only except through `event()`.

    `gofer_sock` is the Sentry's end of the Gofer connection (None without a Gofer).
    `extra` is for handler families to keep their own per-Sentry state (e.g. a Gofer
    client), keyed by module name.
    """

    __slots__ = ("plan", "emit", "gofer_sock", "debug", "extra")

    def __init__(self, plan: Plan, emit: EventSink, gofer_sock: Any = None,
                 debug: Callable[[str], None] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.plan = plan
        self.emit = emit
        self.gofer_sock = gofer_sock
        self.debug = debug
        self.extra: dict[str, Any] = {} if extra is None else extra

    def event(self, ev: dict[str, Any]) -> None:
        self.emit(ev)


if TYPE_CHECKING:
    Handler = Callable[[SentryContext, Call, Memory], Decision]

__all__ = ["Call", "Memory", "Continue", "Return", "Errno", "Kill", "InjectFd", "Decision",
           "MemoryError_", "SentryContext", "Handler", "EventSink"]
