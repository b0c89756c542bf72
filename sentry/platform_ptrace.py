"""Platform `ptrace`: deliver trapped calls to the Sentry's handlers through ptrace.

The host filter is built with `engine.filter.build_filter(plan, platform="ptrace")`: calls
the Plan traps return SECCOMP_RET_TRACE, everything else is decided in the kernel (allowed
calls never stop). The tracer seizes the sandboxed child before the child loads that
filter (PTRACE_SEIZE with TRACESECCOMP|TRACEFORK|TRACEVFORK|TRACECLONE|TRACEEXEC|EXITKILL),
so it follows the program, every thread and every child, and if the tracer dies the
kernel kills them all (EXITKILL): nothing runs unsupervised.

At a seccomp stop the tracer builds a `Call` from the registers, a `Memory` over
/proc/<tid>/mem, runs the SAME handler as seccomp-notify, and applies the decision:

    Continue   resume (the kernel runs the call)
    Return(v)  skip the call: orig_rax = -1 and rax = v, set at the seccomp stop (the
    Errno(e)   kernel reports rax as the call's result, seccomp(2) "SECCOMP_RET_TRACE")
    Kill(r)    SIGKILL to the thread group
    InjectFd   see `_FdInjection`: the host fd reaches the program through a socketpair
               the program itself creates during injected calls, never through a runtime fd

With `--strace` every call stops (PTRACE_SYSCALL) and PTRACE_GET_SYSCALL_INFO tells entry,
exit and seccomp stops apart, so a line is written per call with its result and duration.

python-ptrace provides the register layout (ptrace.binding), the process registry
(ptrace.debugger.PtraceDebugger / PtraceProcess) and the argument formatting
(ptrace.syscall, through sentry/strace.py). The event loop itself waits with one blocking
waitpid(-1, __WALL): PtraceDebugger.waitProcessEvent() polls with sleeps when several
processes are traced, and addProcess() blocks on a child's first stop, which races with
the parent's fork event; both would cost milliseconds per call.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

# ptrace(2) requests and options not all named by python-ptrace.
PTRACE_CONT = 7
PTRACE_SYSCALL = 24
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

PTRACE_SYSCALL_INFO_ENTRY = 1
PTRACE_SYSCALL_INFO_EXIT = 2
PTRACE_SYSCALL_INFO_SECCOMP = 3

WALL = 0x40000000
SPIN = 200  # non-blocking waits before a blocking one (~150 us)
OPTIONS = (PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK
           | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP
           | PTRACE_O_EXITKILL)
_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_SYSCALL_TRAP = signal.SIGTRAP | 0x80
_SKIP = 0xFFFF_FFFF_FFFF_FFFF  # orig_rax = -1: the kernel skips the call
_U64 = 0xFFFF_FFFF_FFFF_FFFF
# waitpid status of a seccomp stop: stopped (0x7f), SIGTRAP, PTRACE_EVENT_SECCOMP
_SECCOMP_STATUS = 0x7F | (signal.SIGTRAP << 8) | (PTRACE_EVENT_SECCOMP << 16)
NR_NAMES = 512  # syscall numbers named in the trap path's table (x86_64 stops at ~460)


class _SyscallInfo(ctypes.Structure):
    """struct ptrace_syscall_info (linux/ptrace.h), the entry/seccomp view of the union
    (nr + args; `exit` overlays rval at nr and is_error at args[0])."""

    _fields_ = [("op", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
                ("ip", ctypes.c_uint64), ("sp", ctypes.c_uint64), ("nr", ctypes.c_uint64),
                ("args", ctypes.c_uint64 * 6), ("ret_data", ctypes.c_uint32),
                ("pad2", ctypes.c_uint32)]


class _Ptrace:
    """Thin ctypes ptrace(2) with preallocated buffers: the trap path allocates nothing."""

    def __init__(self) -> None:
        from ptrace.binding.linux_struct import user_regs_struct  # python-ptrace's layout

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.ptrace
        fn.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
        fn.restype = ctypes.c_long
        self._fn = fn
        self.regs = user_regs_struct()
        self._regs_addr = ctypes.addressof(self.regs)
        self.info = _SyscallInfo()
        self._info_addr = ctypes.addressof(self.info)
        self._msg = ctypes.c_ulong()
        self._msg_addr = ctypes.addressof(self._msg)
        # The trap path's entry points: a second function object without argtypes
        # (ctypes converts the small ints itself; the buffer address is a prebuilt
        # c_void_p), which saves ~0.8 us of argument conversion per request. They return
        # -1 on failure; the caller then asks `call` to raise (errno is kept per thread).
        raw = libc["ptrace"]
        raw.restype = ctypes.c_long
        self.raw = raw
        self.regs_ptr = ctypes.c_void_p(self._regs_addr)

    def call(self, req: int, pid: int, addr: int = 0, data: int = 0) -> int:
        res = self._fn(req, pid, addr, data)
        if res == -1:
            err = ctypes.get_errno()
            raise OSError(err, f"ptrace({req:#x}, {pid}): {os.strerror(err)}")
        return res

    def getregs(self, pid: int) -> Any:
        self.call(PTRACE_GETREGS, pid, 0, self._regs_addr)
        return self.regs

    def setregs(self, pid: int) -> None:
        self.call(PTRACE_SETREGS, pid, 0, self._regs_addr)

    def syscall_info(self, pid: int) -> _SyscallInfo:
        self.call(PTRACE_GET_SYSCALL_INFO, pid, ctypes.sizeof(_SyscallInfo), self._info_addr)
        return self.info

    def eventmsg(self, pid: int) -> int:
        self.call(PTRACE_GETEVENTMSG, pid, 0, self._msg_addr)
        return self._msg.value


class ProcMemory:
    """`Memory` (sentry/call.py) over /proc/<tid>/mem. Valid while the thread is stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # any read of the caller's memory (the dispatcher then refuses a Continue: the
        # kernel would read that memory again). Reset for each call by the tracer.
        self.touched = False
        self._fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    def read(self, addr: int, size: int) -> bytes:
        """Exactly `size` bytes, or OSError(EFAULT) (as seccomp-notify's ProcessMemory)."""
        self.touched = True
        if size <= 0:
            return b""
        try:
            data = os.pread(self._fd, size, addr)
        except OSError as exc:
            raise OSError(errno.EFAULT, "cannot read the caller's memory") from exc
        if len(data) != size:
            raise OSError(errno.EFAULT, "short read of the caller's memory")
        return data

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        """The NUL-terminated string at addr; EFAULT if unreadable, ENAMETOOLONG if no
        NUL within `limit` bytes."""
        self.touched = True
        out = b""
        while len(out) < limit:
            # read up to the end of the page, so an unmapped next page is not touched
            chunk = min(limit - len(out), 4096 - ((addr + len(out)) & 4095))
            try:
                data = os.pread(self._fd, chunk, addr + len(out))
            except OSError:
                data = b""
            if not data:
                raise OSError(errno.EFAULT, "cannot read the caller's string")
            nul = data.find(b"\0")
            if nul >= 0:
                return out + data[:nul]
            out += data
        raise OSError(errno.ENAMETOOLONG, "string longer than the limit")

    def write(self, addr: int, data: bytes) -> None:
        written = os.pwrite(self._fd, data, addr)
        if written != len(data):
            raise OSError(errno.EFAULT, "short write to tracee memory")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class _Tracee:
    pid: int
    mem: ProcMemory | None = None
    started: bool = False  # its first stop has been seen
    entry: tuple[int, str, int] | None = None  # strace: (nr, call text, t0 ns)
    forced: int | None = None  # strace: result the Sentry set at the seccomp stop
    inject: "_FdInjection | None" = None

    def memory(self) -> ProcMemory:
        if self.mem is None:
            self.mem = ProcMemory(self.pid)
        return self.mem

    def drop_memory(self) -> None:
        if self.mem is not None:
            self.mem.close()
            self.mem = None


@dataclass(frozen=True)
class TraceResult:
    exit_code: int | None  # the first process's exit status, or None if killed by a signal
    signal: int | None
    killed_reason: str | None = None  # set when a Kill decision ended the run
    calls: int = 0  # seccomp stops served


# dispatch(call, mem) -> Decision (sentry/call.py); make_call(pid, nr, args, name) -> Call
Dispatch = Callable[[Any, Any], Any]
MakeCall = Callable[[int, int, tuple, str], Any]


@dataclass
class PtraceTracer:
    """Follow one sandboxed process tree; serve its trapped calls with `dispatch`."""

    dispatch: Dispatch | None = None
    make_call: MakeCall | None = None
    strace: Any = None  # sentry.strace.StraceLog: every call stops (PTRACE_SYSCALL)
    on_kill: Callable[[Any, Any], None] | None = None  # (Call, Kill), as NotifyLoop
    # may_block(nr): the handler may block (a Gofer open of a FIFO): it runs on a worker
    # thread while its caller stays stopped; the loop goes on serving the others
    may_block: Callable[[int], bool] | None = None
    tracees: dict[int, _Tracee] = field(default_factory=dict)
    foreign_exits: dict[int, int] = field(default_factory=dict)  # untraced children reaped

    def __post_init__(self) -> None:
        from ptrace.debugger import PtraceDebugger
        from ptrace.syscall import SYSCALL_NAMES

        self._pt = _Ptrace()
        self._debugger = PtraceDebugger()  # registry of traced processes (python-ptrace)
        self._names = SYSCALL_NAMES
        # syscall names by number, for the trap path (no dict lookup, no f-string)
        self._name_of = tuple(SYSCALL_NAMES.get(n, f"syscall_{n}") for n in range(NR_NAMES))
        self._resume = PTRACE_SYSCALL if self.strace is not None else PTRACE_CONT
        self._main: int | None = None
        self._pending: dict[int, Any] = {}  # tid -> Call served by a worker thread
        self._done: Any = None
        self._wake_r = self._wake_w = -1
        self._killed: str | None = None
        self._calls = 0
        self._spin = SPIN
        from .call import Call, Continue, Errno, InjectFd, Kill, Return

        if self.make_call is None:
            self.make_call = Call  # Call(pid, nr, args, name)

        self._Continue, self._Return, self._Errno = Continue, Return, Errno
        self._Kill, self._InjectFd = Kill, InjectFd

    # -- set-up -------------------------------------------------------------------
    def set_strace(self, log: Any) -> None:
        """Turn --strace on (every call stops) or off; before run()."""
        self.strace = log
        self._resume = PTRACE_SYSCALL if log is not None else PTRACE_CONT

    def seize(self, pid: int) -> None:
        """Trace `pid` (our child, not yet running the program) and everything it
        starts. Call before the child loads the host filter: a RET_TRACE call with no
        tracer fails with ENOSYS."""
        try:
            self._pt.call(PTRACE_SEIZE, pid, 0, OPTIONS)
        except OSError as exc:
            from ..engine.errors import HostError

            raise HostError(
                f"cannot trace the sandbox (PTRACE_SEIZE: {exc.strerror})",
                hint="run as root or as the owner of the sandbox's user namespace, and allow "
                     "ptrace in the Sentry's own seccomp filter on platform ptrace") from exc
        self._main = pid
        self._add(pid, started=True)
        # Spinning pays when the program runs on another CPU than the tracer. On one CPU
        # (`taskset -c N sandboxctl ...`: the program inherits the affinity) the spin
        # would only delay the program; a blocking wait hands the CPU over directly.
        self._spin = SPIN if len(os.sched_getaffinity(0)) > 1 else 0

    def _add(self, pid: int, started: bool = False) -> _Tracee:
        from ptrace.debugger import PtraceProcess

        t = self.tracees.get(pid)
        if t is None:
            t = _Tracee(pid, started=started)
            self.tracees[pid] = t
            proc = PtraceProcess(self._debugger, pid, True)
            self._debugger.dict[pid] = proc
            self._debugger.list.append(proc)
        return t

    def _remove(self, pid: int) -> None:
        t = self.tracees.pop(pid, None)
        if t is not None:
            t.drop_memory()
            self._debugger.deleteProcess(pid=pid)

    # -- the loop -------------------------------------------------------------------
    def run(self) -> TraceResult:
        """Serve until the first process exits; then kill what is left of its tree."""
        if self._main is None:
            raise RuntimeError("seize() a process first")
        main_status: int | None = None
        while main_status is None:
            try:
                if self._pending:  # blocking handlers in flight: wait for either side
                    self._apply_finished(timeout=0.001)
                    pid, status = os.waitpid(-1, WALL | os.WNOHANG)
                    if not pid:
                        continue
                else:
                    # Spin briefly before sleeping: a trapped call usually comes back in
                    # microseconds; a sleep/wake-up pair costs more than the call itself.
                    for _ in range(self._spin):
                        pid, status = os.waitpid(-1, WALL | os.WNOHANG)
                        if pid:
                            break
                    else:
                        pid, status = os.waitpid(-1, WALL)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            t = self.tracees.get(pid)
            if status == _SECCOMP_STATUS and t is not None and t.started:
                # the trap path: straight to the seccomp stop, no status decoding
                try:
                    self._seccomp_stop(t)
                except OSError as exc:
                    if exc.errno != errno.ESRCH:  # killed meanwhile: its exit is reported
                        raise
                continue
            if os.WIFSTOPPED(status):
                if t is None:  # a new child's first stop, before its parent's event
                    t = self._add(pid)
                self._stopped(t, status)
            elif t is not None:
                self._exited(t)
                if pid == self._main:
                    main_status = status
            else:
                self.foreign_exits[pid] = status
        self._kill_rest()
        if main_status is None:
            return TraceResult(None, signal.SIGKILL, self._killed, self._calls)
        if os.WIFSIGNALED(main_status):
            return TraceResult(None, os.WTERMSIG(main_status), self._killed, self._calls)
        return TraceResult(os.WEXITSTATUS(main_status), None, self._killed, self._calls)

    def _kill_rest(self) -> None:
        for pid in list(self.tracees):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in list(self.tracees):
            try:
                while True:
                    _, status = os.waitpid(pid, WALL)
                    if not os.WIFSTOPPED(status):
                        break
            except ChildProcessError:
                pass
            self._remove(pid)

    def _exited(self, t: _Tracee) -> None:
        if self.strace is not None and t.entry is not None and t.entry[1]:
            self.strace.unfinished(t.pid, t.entry[1], "exited")
        self._remove(t.pid)

    def _resume_tracee(self, pid: int, sig: int = 0) -> None:
        if self._pt.raw(self._resume, pid, 0, sig) == -1:
            err = ctypes.get_errno()
            if err != errno.ESRCH:  # ESRCH: killed meanwhile; its exit is reported
                raise OSError(err, f"ptrace resume {pid}: {os.strerror(err)}")

    def _stopped(self, t: _Tracee, status: int) -> None:
        pid = t.pid
        sig = os.WSTOPSIG(status)
        event = status >> 16
        try:
            if not t.started:  # a new child's attach stop (SEIZE: PTRACE_EVENT_STOP)
                t.started = True
                if event == PTRACE_EVENT_STOP or (event == 0 and sig == signal.SIGSTOP):
                    self._resume_tracee(pid)
                    return
            if event == PTRACE_EVENT_SECCOMP:
                self._seccomp_stop(t)
                return
            if sig == _SYSCALL_TRAP:
                self._syscall_stop(t)
                return
            if event in (PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE):
                self._add(self._pt.eventmsg(pid))  # unless its first stop came already
                self._resume_tracee(pid)
                return
            if event == PTRACE_EVENT_EXEC:
                former = self._pt.eventmsg(pid)
                if former != pid and former in self.tracees:  # a thread exec'd: it is pid now
                    old = self.tracees[former]
                    t.entry = t.entry or old.entry
                    self._remove(former)
                t.drop_memory()  # new address space
                self._resume_tracee(pid)
                return
            if event == PTRACE_EVENT_STOP:
                if sig in _STOP_SIGNALS:  # group-stop: stay stopped until SIGCONT
                    self._pt.call(PTRACE_LISTEN, pid, 0, 0)
                else:
                    self._resume_tracee(pid)
                return
            if event:
                self._resume_tracee(pid)
                return
            # signal-delivery-stop: deliver it
            self._resume_tracee(pid, sig)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    # -- seccomp stops: the Sentry's calls ---------------------------------------------
    def _seccomp_stop(self, t: _Tracee) -> None:
        pid = t.pid
        if t.inject is not None:  # one of our injected calls hit a trap: it is ours
            self._resume_tracee(pid)
            return
        # The trap path: one GETREGS into the preallocated struct (kept in self._pt.regs
        # for _skip), the handler, one SETREGS only for Return/Errno, one CONT.
        pt = self._pt
        if pt.raw(PTRACE_GETREGS, pid, 0, pt.regs_ptr) == -1:
            pt.call(PTRACE_GETREGS, pid, 0, pt._regs_addr)  # raises with the errno
        regs = pt.regs
        nr = regs.orig_rax
        args = (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)
        self._calls += 1
        if self.strace is not None and t.entry is None:
            # traced from inside this call (first stop after seize): log it from here
            self._strace_entry(t, nr, args)
        if self.dispatch is None:
            self._resume_tracee(pid)
            return
        name = self._name_of[nr] if nr < NR_NAMES else f"syscall_{nr}"
        mem = t.mem
        if mem is None:
            mem = t.memory()
        mem.touched = False
        call = self.make_call(pid, nr, args, name)
        if self.may_block is not None and self.may_block(nr):
            self._start_blocking(t, call, mem)
            return
        try:
            decision = self.dispatch(call, mem)
        except Exception as exc:  # noqa: BLE001 - fail closed: never run an unchecked call
            self._kill(t, f"sentry error in {name}: {exc!r}", call, None)
            return
        cls = decision.__class__
        if cls is self._Return:
            self._skip(t, decision.value, regs)
        elif cls is self._Errno:
            self._skip(t, -decision.errno, regs)
        elif cls is self._Continue:
            self._resume_tracee(pid)
        else:
            self._apply(t, call, decision, regs)

    def _apply(self, t: _Tracee, call: Any, decision: Any, regs: Any = None) -> None:
        """Carry out `decision` at t's seccomp stop (`regs`: as read there, or None)."""
        pid, name = t.pid, call.name
        if regs is None and decision.__class__ in (self._Return, self._Errno):
            regs = self._pt.getregs(pid)
        cls = decision.__class__
        if cls is self._Continue:
            self._resume_tracee(pid)
        elif cls is self._Return:
            self._skip(t, int(decision.value), regs)
        elif cls is self._Errno:
            self._skip(t, -int(decision.errno), regs)
        elif cls is self._InjectFd:
            _FdInjection.start(self, t, decision)
        elif cls is self._Kill:
            self._kill(t, decision.reason, call, decision)
        else:  # not a Decision: fail closed
            self._kill(t, f"{name}: handler returned {decision!r}", call, None)

    # -- blocking handlers: off the loop thread; ptrace itself stays on it ------------
    def _start_blocking(self, t: _Tracee, call: Any, mem: Any) -> None:
        import queue
        import threading

        if self._done is None:
            self._done = queue.SimpleQueue()
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._pending[t.pid] = call

        def work() -> None:
            try:
                result: Any = self.dispatch(call, mem)
            except Exception as exc:  # noqa: BLE001 - reported on the loop thread
                result = exc
            self._done.put((t.pid, call, result))
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass

        threading.Thread(target=work, name=f"sentry-block-{call.name}", daemon=True).start()

    def _apply_finished(self, timeout: float) -> None:
        import select

        if self._done.empty():
            poller = select.poll()  # poll, not select: the Sentry's filter allows poll
            poller.register(self._wake_r, select.POLLIN)
            poller.poll(timeout * 1000)
        try:
            os.read(self._wake_r, 512)
        except OSError:
            pass
        while not self._done.empty():
            pid, call, result = self._done.get()
            self._pending.pop(pid, None)
            t = self.tracees.get(pid)
            if t is None:
                continue  # gone meanwhile
            try:
                if isinstance(result, Exception):
                    self._kill(t, f"sentry error in {call.name}: {result!r}", call, None)
                else:
                    self._apply(t, call, result)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise

    def _skip(self, t: _Tracee, value: int, regs: Any) -> None:
        """Skip the call at its seccomp stop; `regs` is self._pt.regs as read there."""
        regs.orig_rax = _SKIP
        regs.rax = value & _U64
        pt = self._pt
        if pt.raw(PTRACE_SETREGS, t.pid, 0, pt.regs_ptr) == -1:
            pt.call(PTRACE_SETREGS, t.pid, 0, pt._regs_addr)  # raises with the errno
        t.forced = value
        self._resume_tracee(t.pid)

    def _kill(self, t: _Tracee, reason: str, call: Any, decision: Any) -> None:
        self._killed = self._killed or reason
        if self.on_kill is not None and decision is not None:
            self.on_kill(call, decision)
        try:
            os.kill(_tgid(t.pid), signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- syscall stops: --strace ------------------------------------------------------
    def _strace_entry(self, t: _Tracee, nr: int, args: tuple[int, ...]) -> None:
        name = self._names.get(nr, f"syscall_{nr}")
        if not self.strace.wants(name):
            t.entry = (nr, "", time.monotonic_ns())
            return
        text = self.strace.formatter.call(nr, args, t.memory())
        t.entry = (nr, text, time.monotonic_ns())

    def _syscall_stop(self, t: _Tracee) -> None:
        info = self._pt.syscall_info(t.pid)
        if info.op == PTRACE_SYSCALL_INFO_ENTRY:
            if t.inject is not None:  # an injected call: its exit must stop here too
                self._pt.call(PTRACE_SYSCALL, t.pid, 0, 0)
                return
            t.forced = None
            if self.strace is not None:
                self._strace_entry(t, info.nr, tuple(info.args))
        elif info.op == PTRACE_SYSCALL_INFO_EXIT:
            if t.inject is not None:
                t.inject.on_exit(self, t, ctypes.c_int64(info.nr).value)
                return
            self._strace_exit(t, ctypes.c_int64(info.nr).value)  # rval overlays nr
        self._resume_tracee(t.pid)

    def _strace_exit(self, t: _Tracee, rval: int) -> None:
        if self.strace is not None and t.entry is not None:
            nr, text, t0 = t.entry
            if text:
                note = "sentry" if t.forced is not None else ""
                self.strace.line(t.pid, text, self.strace.formatter.result(nr, rval),
                                 (time.monotonic_ns() - t0) / 1e9, note)
        t.entry = None
        t.forced = None


class _FdInjection:
    """InjectFd on ptrace: put a host fd into the program without any runtime fd
    reaching it.

    The program's own thread makes, by calls the tracer injects at its stop:
      1. socketpair(AF_UNIX, SOCK_DGRAM|SOCK_CLOEXEC, 0, sv)   (sv on its stack, below
         the red zone); the tracer takes a copy of sv[1] with pidfd_getfd (the tracer may
         ptrace the program, never the reverse) and sends the host fd over it;
      2. close(sv[1]);  3. recvmsg(sv[0], msg, MSG_CMSG_CLOEXEC?) → the fd arrives;
      4. dup3(fd, sv[0]) when fd > sv[0], so the program gets the lowest free number
         as open() would give, then close(the other one); the number is the result.
    The only socket the program ever holds was created by itself and is connected to
    nothing but the tracer's private copy, closed before the call returns; the Gofer
    socket, the notification fd and the logs never enter the program. Other threads of
    the program can at most race for the same fd that was meant for them.
    The injected calls go through the host filter like any other call; a profile that
    refuses socketpair/recvmsg/close gets EPERM from them and the call fails (EMFILE
    etc. propagate as the call's errno)."""

    SYS_CLOSE, SYS_SOCKETPAIR, SYS_RECVMSG, SYS_DUP3 = 3, 53, 47, 292
    AF_UNIX, SOCK_DGRAM, SOCK_CLOEXEC, MSG_CMSG_CLOEXEC = 1, 2, 0o2000000, 0x40000000

    def __init__(self, tracer: PtraceTracer, t: _Tracee, decision: Any) -> None:
        pt = tracer._pt
        regs = pt.getregs(t.pid)
        self.saved = type(regs).from_buffer_copy(regs)  # registers of the original call
        self.host_fd = int(decision.fd)
        self.cloexec = bool(getattr(decision, "cloexec", False))
        self.close_host_fd = bool(getattr(decision, "close", True))
        self.scratch = (regs.rsp - 128 - 256) & ~15  # below the red zone
        self.step = 0
        self.sv: tuple[int, int] = (-1, -1)
        self.received = -1
        self.error = 0

    @classmethod
    def start(cls, tracer: PtraceTracer, t: _Tracee, decision: Any) -> None:
        inj = cls(tracer, t, decision)
        t.inject = inj
        # replace the trapped call by socketpair(...) right here at its seccomp stop
        inj._issue(tracer, t, cls.SYS_SOCKETPAIR,
                   (cls.AF_UNIX, cls.SOCK_DGRAM | cls.SOCK_CLOEXEC, 0, inj.scratch, 0, 0),
                   at_entry=True)

    def _issue(self, tracer: PtraceTracer, t: _Tracee, nr: int, args: tuple[int, ...],
               at_entry: bool = False) -> None:
        pt = tracer._pt
        regs = pt.getregs(t.pid)
        if at_entry:
            regs.orig_rax = nr
        else:  # at a syscall-exit stop: back up to the syscall instruction
            regs.rip = self.saved.rip - 2
            regs.rax = nr
            regs.orig_rax = nr
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9 = args
        pt.setregs(t.pid)
        # the exit of the injected call (and its entry, when re-issued) must stop here
        pt.call(PTRACE_SYSCALL, t.pid, 0, 0)

    def on_exit(self, tracer: PtraceTracer, t: _Tracee, rval: int) -> None:
        mem = t.memory()
        if self.step == 0:  # socketpair done
            if rval < 0:
                return self._finish(tracer, t, rval)
            raw = mem.read(self.scratch, 8)
            self.sv = (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:8], "little"))
            try:
                self._send(t.pid)
            except OSError as exc:
                self.error = -(exc.errno or errno.EIO)
            self.step = 1
            return self._issue(tracer, t, self.SYS_CLOSE, (self.sv[1], 0, 0, 0, 0, 0))
        if self.step == 1:  # close(sv[1]) done
            if self.error:
                self.step = 3
                return self._issue(tracer, t, self.SYS_CLOSE, (self.sv[0], 0, 0, 0, 0, 0))
            # struct msghdr at scratch+16, iovec at +80, 1-byte buffer at +96, cmsg at +112
            base = self.scratch
            msghdr = (b"\0" * 16 + (base + 80).to_bytes(8, "little") + (1).to_bytes(8, "little")
                      + (base + 112).to_bytes(8, "little") + (24).to_bytes(8, "little")
                      + b"\0" * 8)
            iov = (base + 96).to_bytes(8, "little") + (1).to_bytes(8, "little")
            mem.write(base + 16, msghdr)
            mem.write(base + 80, iov)
            mem.write(base + 112, b"\0" * 24)
            flags = self.MSG_CMSG_CLOEXEC if self.cloexec else 0
            self.step = 2
            return self._issue(tracer, t, self.SYS_RECVMSG, (self.sv[0], base + 16, flags, 0, 0, 0))
        if self.step == 2:  # recvmsg done
            if rval < 0:
                self.error = rval
            else:
                cmsg = mem.read(self.scratch + 112, 24)
                level = int.from_bytes(cmsg[8:12], "little")
                kind = int.from_bytes(cmsg[12:16], "little")
                if level == 1 and kind == 1:  # SOL_SOCKET, SCM_RIGHTS
                    self.received = int.from_bytes(cmsg[16:20], "little")
                else:
                    self.error = -errno.EIO
            if self.received > self.sv[0]:
                # give it the number open() would have: sv[0]'s slot (dup3 closes sv[0])
                self.step = 4
                flags = os.O_CLOEXEC if self.cloexec else 0
                return self._issue(tracer, t, self.SYS_DUP3,
                                   (self.received, self.sv[0], flags, 0, 0, 0))
            self.step = 3
            return self._issue(tracer, t, self.SYS_CLOSE, (self.sv[0], 0, 0, 0, 0, 0))
        if self.step == 4:  # dup3 done: drop the higher number
            if rval >= 0:
                old, self.received = self.received, rval
            else:  # keep the higher number; still close the socket
                self.step = 3
                return self._issue(tracer, t, self.SYS_CLOSE, (self.sv[0], 0, 0, 0, 0, 0))
            self.step = 3
            return self._issue(tracer, t, self.SYS_CLOSE, (old, 0, 0, 0, 0, 0))
        return self._finish(tracer, t, self.error or self.received)

    def _send(self, pid: int) -> None:
        import socket

        pidfd = os.pidfd_open(pid)
        try:
            mine = _pidfd_getfd(pidfd, self.sv[1])
        finally:
            os.close(pidfd)
        sock = socket.socket(fileno=mine)
        try:
            socket.send_fds(sock, [b"f"], [self.host_fd])
        finally:
            sock.close()
            if self.close_host_fd:
                os.close(self.host_fd)
                self.close_host_fd = False

    def _finish(self, tracer: PtraceTracer, t: _Tracee, result: int) -> None:
        if self.close_host_fd:  # the send never happened
            os.close(self.host_fd)
            self.close_host_fd = False
        pt = tracer._pt
        regs = pt.getregs(t.pid)
        ctypes.memmove(ctypes.addressof(regs), ctypes.addressof(self.saved),
                       ctypes.sizeof(regs))
        regs.rax = result & _U64
        pt.setregs(t.pid)
        t.inject = None
        t.forced = result
        tracer._strace_exit(t, result)  # the original call's exit stop was used up
        tracer._resume_tracee(t.pid)


def _pidfd_getfd(pidfd: int, target_fd: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(438, pidfd, target_fd, 0)  # SYS_pidfd_getfd
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _tgid(tid: int) -> int:
    try:
        with open(f"/proc/{tid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return tid


def _default_make_call(pid: int, nr: int, args: tuple, name: str) -> Any:
    from .call import Call

    return Call(pid, nr, args, name)


# -- launching ----------------------------------------------------------------------
def wait_for_tracer(fd: int) -> None:
    """Child side: block until the tracer has seized us (it writes one byte on `fd`).
    Call before loading the host filter."""
    while True:
        try:
            data = os.read(fd, 1)
        except InterruptedError:
            continue
        if not data:
            os._exit(127)  # the tracer is gone: never run unsupervised
        os.close(fd)
        return


def spawn_traced(argv: list[str], tracer: PtraceTracer, *, load_filter: Callable[[], None]
                 | None = None, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> int:
    """Fork `argv` traced by `tracer`, without namespaces (bench/ and tests; `apply`
    launches through sentry/launch and calls `seize`/`wait_for_tracer` the same way).
    The child sets no_new_privs, waits to be seized, loads the filter, execs."""
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(go_w)
            wait_for_tracer(go_r)
            _no_new_privs()
            if cwd:
                os.chdir(cwd)
            if load_filter is not None:
                load_filter()
            os.execvpe(argv[0], argv, env if env is not None else dict(os.environ))
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"sandboxctl: cannot run {argv[0]}: {exc}\n".encode())
        os._exit(127)
    os.close(go_r)
    try:
        tracer.seize(pid)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(go_w)
        raise
    os.write(go_w, b"g")
    os.close(go_w)
    return pid


def _no_new_privs() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")




# -- the Sentry on platform ptrace (what supervisor.start_sentry is for seccomp-notify) --

# What the tracer needs beyond the notify Sentry's list (sentry/confine.py).
TRACER_ALLOWED: tuple[str, ...] = (
    "ptrace", "wait4", "waitid", "pidfd_open", "pidfd_getfd", "getsockopt", "getsockname",
)


def confine_tracer() -> None:
    """The tracing Sentry's own filter: the notify Sentry's allow list plus ptrace and
    wait4 (and what InjectFd uses), the same fatal list minus ptrace; EPERM otherwise."""
    import pyseccomp as sc

    from .confine import SENTRY_ALLOWED, SENTRY_FATAL, drop_capabilities, no_new_privs

    drop_capabilities()
    no_new_privs()
    flt = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    flt.set_attr(sc.Attr.CTL_TSYNC, 1)
    for name in (*SENTRY_ALLOWED, *TRACER_ALLOWED):
        if name != "ioctl":
            flt.add_rule(sc.ALLOW, name)
    flt.add_rule(sc.ALLOW, "ioctl", sc.Arg(1, sc.EQ, 0x5401))  # TCGETS (isatty)
    for name in SENTRY_FATAL:
        if name not in TRACER_ALLOWED:
            flt.add_rule(sc.KILL_PROCESS, name)
    flt.load()


def child_load_and_exec(plan: Any, argv: list[str] | tuple[str, ...], env: dict[str, str],
                        report_fd: int) -> None:
    """Child side on platform ptrace (seccomp_child.load_and_exec's branch): report
    (`-1`: no listener; the receiver learns our pid as on seccomp-notify), load the Plan's
    filter with SECCOMP_RET_TRACE for trapped calls, exec. Never returns.

    No channel back is needed: the Plan always traps execve, and a RET_TRACE call made
    before a tracer is attached fails with ENOSYS without running, so the child retries
    its execve until the Sentry has seized it (then the execve stops in the Sentry and
    runs). Nothing the Plan traps can run untraced meanwhile."""
    from ..engine.filter import build_filter
    from .seccomp_child import resolve_command

    def die(msg: str, code: int) -> None:
        try:
            os.write(2, f"sandboxctl: {msg}\n".encode(errors="replace"))
        finally:
            os._exit(code)

    try:
        if not argv:
            die("no command to run (give one after `--` or set process.command)", 127)
        flt = build_filter(plan, "ptrace")
        path = resolve_command(argv[0], env)
        if path is None:
            die(f"{argv[0]}: command not found in the sandbox", 127)
        args, env_list = list(argv), dict(env)
        os.write(report_fd, b"-1\n")
        os.close(report_fd)
        flt.load()
    except BaseException as exc:  # noqa: BLE001 - the child must not go on
        die(f"cannot load the sandbox's seccomp filter: {exc}", 126)
    deadline = time.monotonic() + ATTACH_TIMEOUT
    while True:
        try:
            os.execve(path, args, env_list)
        except OSError as exc:
            if exc.errno == errno.ENOSYS and time.monotonic() < deadline:
                _pause()
                continue
            if exc.errno == errno.ENOSYS:
                die("the Sentry did not attach to the sandbox (ptrace)", 126)
            die(f"{argv[0]}: cannot run: {exc.strerror}",
                127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126)


ATTACH_TIMEOUT = 10.0


def _pause() -> None:
    try:
        time.sleep(0.0005)
    except OSError:  # the Plan may refuse the sleep calls: spin a little instead
        for _ in range(20000):
            pass


def start_ptrace_sentry(plan: Any, child_pid: int, run: Any, gofer_sock: Any = None,
                        debug: bool = False, strace: str | None = None,
                        strace_syscalls: frozenset[str] | None = None) -> Any:
    """supervisor.start_sentry's branch for platform ptrace: fork the Sentry, which seizes
    `child_pid` (retrying its execve in child_load_and_exec), confines itself and serves
    until the program exits. Returns supervisor.SentryHandle; the caller reaps the child
    as on seccomp-notify."""
    from .sentry_process import fork_sentry
    from .supervisor import pidfd_open

    child_pidfd = pidfd_open(child_pid)
    return fork_sentry(run, child_pidfd,
                       lambda: _tracer_main(plan, child_pid, child_pidfd, run, gofer_sock, debug,
                                            strace, strace_syscalls))


def _tracer_main(plan: Any, child_pid: int, child_pidfd: int, run: Any,
                 gofer_sock: Any, debug: bool, strace: str | None,
                 strace_syscalls: frozenset[str] | None) -> int:
    from .call import SentryContext
    from .dispatch import Dispatcher
    from .sentry_process import SentryOutput, isolate_fds, open_output, report_failure

    t_start = time.time()
    out: SentryOutput | None = None
    strace_log = None
    try:
        # Seize first: the child retries its execve until then (start-up latency).
        tracer = PtraceTracer()
        tracer.seize(child_pid)  # its execve stops here from now on (served by run())
        t_seized = time.time()
        isolate_fds(gofer_sock, child_pidfd)
        out = open_output(run, debug)
        if strace is not None:
            from .strace import open_strace

            strace_log = open_strace(strace, run.path, strace_syscalls)
        flush = out.flush
        log = out.log
        ctx = SentryContext(plan=plan, emit=out.emit, gofer_sock=gofer_sock, debug=log)
        dispatcher = Dispatcher(ctx)
        tracer.dispatch = dispatcher.dispatch
        tracer.on_kill = lambda call, k: flush()
        from .dispatch import NR_MAX

        blocking = frozenset(n for n in range(NR_MAX) if dispatcher.slot(n).may_block)
        tracer.may_block = blocking.__contains__  # no Python call on the trap path
        tracer.set_strace(strace_log)
        confine_tracer()
        if log is not None:
            log("ptrace sentry started", at=t_start)
            log(f"seized {child_pid}", at=t_seized)
            log(f"ptrace sentry pid={os.getpid()} tracing "
                f"{child_pid}; trapped={sorted(plan.trapped_numbers())}")
        result = tracer.run()
        if log is not None:
            log(f"program exited: {result}")
            from .handlers_fs import cache_report

            if (line := cache_report(ctx)) is not None:
                log(line)
        return 0
    except BaseException as exc:  # noqa: BLE001
        return report_failure(exc, run, child_pidfd, out)
    finally:
        if out is not None:
            out.close()
        stream = getattr(strace_log, "stream", None)
        try:
            if stream is not None and stream is not getattr(__import__("sys"), "stderr"):
                stream.close()
        except BaseException:  # noqa: BLE001
            pass


def run_direct_ptrace(plan: Any, argv: list[str] | tuple[str, ...],
                      env: dict[str, str] | None = None, *, debug: bool = False,
                      stdin: int | None = None, stdout: int | None = None,
                      stderr: int | None = None, strace: str | None = None,
                      strace_syscalls: frozenset[str] | None = None) -> Any:
    """sentry.direct.run_direct on platform ptrace, with `--strace` options."""
    from .confine import drop_capabilities
    from .direct import fork_program, wait_program

    def exec_program(env: dict[str, str], report_w: int) -> None:
        drop_capabilities()
        _no_new_privs()
        child_load_and_exec(plan, argv, env, report_w)

    run, pid, r = fork_program(plan, argv, env, exec_program, stdin=stdin, stdout=stdout,
                               stderr=stderr)
    reported = os.read(r, 64)
    os.close(r)
    handle = None
    if reported.strip():
        handle = start_ptrace_sentry(plan, pid, run, debug=debug, strace=strace,
                                     strace_syscalls=strace_syscalls)
    return wait_program(run, pid, handle)


__all__ = ["PtraceTracer", "TraceResult", "ProcMemory", "spawn_traced", "wait_for_tracer",
           "OPTIONS", "child_load_and_exec", "start_ptrace_sentry", "run_direct_ptrace",
           "confine_tracer", "TRACER_ALLOWED"]
