"""`--strace`: one line per system call, decoded with python-ptrace's syscall formatting.

Both platforms write through `StraceLog`. The arguments are decoded from the call's
number, its six argument registers and the caller's memory (the `Memory` protocol of
sentry/call.py), so the same formatter serves seccomp-notify (calls that reach the
Sentry) and ptrace (every call, PTRACE_SYSCALL):

    [pid 12] openat(AT_FDCWD, '/etc/hostname', O_RDONLY|O_CLOEXEC) = 3 <0.000021>
    [pid 12] read(3, 0x7ffd5c2e1000, 131072) = 8 <0.000008>
    [pid 12] openat(AT_FDCWD, '/nope', O_RDONLY) = -2 ENOENT (No such file or directory) <0.000011>

python-ptrace is imported on first use, so importing this module costs nothing.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from dataclasses import dataclass
from typing import IO, Any, Protocol


class _Memory(Protocol):  # sentry.call.Memory (restated to keep this module import-light)
    def read(self, addr: int, size: int) -> bytes: ...
    def read_cstr(self, addr: int, limit: int = 4096) -> bytes: ...


@dataclass
class _Regs:
    """The register names python-ptrace's PtraceSyscall reads on x86_64."""

    orig_rax: int
    rdi: int
    rsi: int
    rdx: int
    r10: int
    r8: int
    r9: int
    rax: int = 0
    rip: int = 0
    rsp: int = 0


class _MemoryProcess:
    """The subset of ptrace.debugger.PtraceProcess that python-ptrace's argument
    formatting uses, over a `Memory` (so seccomp-notify can format calls too)."""

    def __init__(self, mem: _Memory, regs: _Regs) -> None:
        self._mem = mem
        self._regs = regs

    def getregs(self) -> _Regs:
        return self._regs

    def getreg(self, name: str) -> int:
        return getattr(self._regs, name)

    def getStackPointer(self) -> int:  # noqa: N802 (python-ptrace's API)
        return self._regs.rsp

    def readBytes(self, address: int, size: int) -> bytes:  # noqa: N802
        data = self._mem.read(address, size)
        if len(data) < size:
            raise OSError(_errno.EFAULT, "short read")
        return data

    def readWord(self, address: int) -> int:  # noqa: N802
        return int.from_bytes(self.readBytes(address, 8), "little")

    def readStruct(self, address: int, struct: Any) -> Any:  # noqa: N802
        return struct.from_buffer_copy(self.readBytes(address, ctypes.sizeof(struct)))

    def readArray(self, address: int, basetype: Any, count: int) -> Any:  # noqa: N802
        return (basetype * count).from_buffer_copy(
            self.readBytes(address, ctypes.sizeof(basetype) * count))

    def readCString(self, address: int, max_size: int, chunk_length: int = 256):  # noqa: N802
        try:
            return self._mem.read_cstr(address, max_size + 1), False
        except OSError as exc:
            if exc.errno != _errno.ENAMETOOLONG:
                raise
        return self._mem.read(address, max_size), True


class Formatter:
    """Decode calls with python-ptrace (ptrace.syscall.PtraceSyscall)."""

    def __init__(self, string_max_length: int = 64) -> None:
        from ptrace.func_call import FunctionCallOptions
        from ptrace.syscall import PtraceSyscall, SYSCALL_NAMES, SYSCALL_PROTOTYPES

        self._syscall = PtraceSyscall
        self._names = SYSCALL_NAMES
        self._protos = SYSCALL_PROTOTYPES
        self._options = FunctionCallOptions(write_types=False, write_argname=False,
                                            replace_socketcall=False,
                                            string_max_length=string_max_length,
                                            write_address=False, max_array_count=8)

    def name(self, nr: int) -> str:
        return self._names.get(nr, f"syscall_{nr}")

    def call(self, nr: int, args: tuple[int, ...], mem: _Memory) -> str:
        """`openat(AT_FDCWD, '/etc/hostname', O_RDONLY)`; never raises."""
        regs = _Regs(nr, *args[:6])
        try:
            sc = self._syscall(_MemoryProcess(mem, regs), self._options, regs)
            sc.enter(regs)
            return sc.format()
        except Exception:  # noqa: BLE001 - formatting must never break the trace
            name = self.name(nr)
            return f"{name}({', '.join(hex(a) for a in args[:_argc(self._protos, name)])})"

    def result(self, nr: int, value: int) -> str:
        """`3`, `0x7f12a000`, or `-2 ENOENT (No such file or directory)`."""
        value = _signed(value)
        name = self.name(nr)
        restype = self._protos.get(name, ("long", ()))[0]
        if -4096 < value < 0:
            err = -value
            return f"{value} {_errno.errorcode.get(err, '?')} ({os.strerror(err)})"
        if restype.endswith("*") or value > 0xFFFF_FFFF:
            return hex(value & 0xFFFF_FFFF_FFFF_FFFF)
        return str(value)


def _argc(protos: dict, name: str) -> int:
    proto = protos.get(name)
    return len(proto[1]) if proto else 6


def _signed(value: int) -> int:
    value &= 0xFFFF_FFFF_FFFF_FFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_syscall_list(text: str | None) -> frozenset[str] | None:
    """`--strace-syscalls openat,read` → frozenset; None/empty → every call."""
    if not text:
        return None
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    return names or None


class StraceLog:
    """Writes strace lines to a stream (stderr with `--strace=-`, else the run's
    strace.log). `syscalls` narrows the output to those names."""

    def __init__(self, stream: IO[str], syscalls: frozenset[str] | None = None,
                 formatter: Formatter | None = None) -> None:
        self.stream = stream
        self.syscalls = syscalls
        self.formatter = formatter or Formatter()

    def wants(self, name: str) -> bool:
        return self.syscalls is None or name in self.syscalls

    def line(self, pid: int, call_text: str, result_text: str, seconds: float,
             note: str = "") -> None:
        extra = f" [{note}]" if note else ""
        self.stream.write(f"[pid {pid}] {call_text} = {result_text} <{seconds:.6f}>{extra}\n")
        self.stream.flush()

    def unfinished(self, pid: int, call_text: str, note: str) -> None:
        self.stream.write(f"[pid {pid}] {call_text} = ? <{note}>\n")
        self.stream.flush()

    def record(self, pid: int, nr: int, args: tuple[int, ...], mem: _Memory, result: int,
               seconds: float, note: str = "") -> None:
        """One complete call (seccomp-notify: the Sentry's answer is the result)."""
        name = self.formatter.name(nr)
        if not self.wants(name):
            return
        self.line(pid, self.formatter.call(nr, args, mem), self.formatter.result(nr, result),
                  seconds, note)


def open_strace(target: str, run_dir: str | None,
                syscalls: frozenset[str] | None) -> StraceLog:
    """`--strace=-` → stderr; otherwise `<run_dir>/strace.log` (or the file named)."""
    import sys

    if target == "-":
        return StraceLog(sys.stderr, syscalls)
    path = target if target not in ("", "log") else os.path.join(run_dir or ".", "strace.log")
    stream = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
    return StraceLog(stream, syscalls)


__all__ = ["Formatter", "StraceLog", "open_strace", "parse_syscall_list"]


class StracingDispatcher:
    """seccomp-notify's `--strace`: wraps the Sentry's Dispatcher (same interface the
    NotifyLoop uses) and writes one line per call that reaches the Sentry, with the
    Sentry's answer. Calls the Sentry lets the kernel run (Continue) show `= ?
    [continued]`: their result is the kernel's and never passes through the Sentry."""

    def __init__(self, dispatcher: Any, log: StraceLog) -> None:
        import threading
        import time

        self._d = dispatcher
        self._log = log
        self._lock = threading.Lock()  # worker threads may serve calls concurrently
        self._now = time.monotonic_ns

    def __getattr__(self, name: str) -> Any:  # slots, slot(), call_name(), ctx, plan...
        return getattr(self._d, name)

    def dispatch(self, call: Any, mem: Any, slot: Any = None) -> Any:
        if not self._log.wants(call.name):
            return self._d.dispatch(call, mem, slot)
        text = self._log.formatter.call(call.nr, call.args, mem)
        t0 = self._now()
        decision = self._d.dispatch(call, mem, slot)
        seconds = (self._now() - t0) / 1e9
        kind = decision.__class__.__name__
        if kind == "Return":
            result = self._log.formatter.result(call.nr, decision.value)
        elif kind == "Errno":
            result = self._log.formatter.result(call.nr, -decision.errno)
        elif kind == "Continue":
            result = "? [continued]"
        elif kind == "InjectFd":
            result = "<new fd> [sentry]"
        else:
            result = f"? [killed: {getattr(decision, 'reason', kind)}]"
        note = "sentry" if kind in ("Return", "Errno") else ""
        with self._lock:
            self._log.line(call.pid, text, result, seconds, note)
        return decision


__all__ += ["StracingDispatcher"]
