"""Start the Sentry for a sandboxed child and keep the two tied together.

    handle = start_sentry(plan, child_pid, listener_fdnum, run, gofer_sock=None, debug=False)
    ...                         # the launcher waits for (and reaps) the program
    handle.wait()               # then the Sentry: it exits once no sandboxed task is left
    run.finish(code, sig)       # status.json (killed_by is found in events.jsonl)

The listener is taken from the child with pidfd_getfd (polling until the child has
loaded its filter: the pending execve notification waits in the kernel meanwhile). The
Sentry is a forked process that keeps the supervisor's uid (the owner of the sandbox's user
namespace, which is what lets it read the sandbox's memory without any capability of its
own: a ptrace-mode access check succeeds for the owner), drops every capability, sets
no_new_privs, loads its own filter (confine.py) and serves. If it fails it kills the
sandbox and writes why to <run>/sentry.failed; a watcher thread in the supervisor kills
the sandbox too if the Sentry dies any other way, so the program never runs unserved.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import select
import signal
import threading
import time

from ..engine.errors import HostError, SandboxError
from ..engine.plan import Plan
from .runs import RunRecord

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any

NR_PIDFD_SEND_SIGNAL = 424
NR_PIDFD_OPEN = 434
NR_PIDFD_GETFD = 438
FAILED = "sentry.failed"
LISTENER_TIMEOUT = 10.0

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def pidfd_open(pid: int) -> int:
    fd = _syscall(NR_PIDFD_OPEN, ctypes.c_int(pid), ctypes.c_uint(0))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"pidfd_open({pid}): {os.strerror(e)}")
    return fd


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    fd = _syscall(NR_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(targetfd), ctypes.c_uint(0))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def pidfd_kill(pidfd: int, sig: int = signal.SIGKILL) -> bool:
    r = _syscall(NR_PIDFD_SEND_SIGNAL, ctypes.c_int(pidfd), ctypes.c_int(sig), None, ctypes.c_uint(0))
    return r == 0


def _exited(pidfd: int) -> bool:
    return bool(select.select([pidfd], [], [], 0)[0])


def _is_listener(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:seccomp notify"
    except OSError:
        return False


def take_listener(child_pidfd: int, fdnum: int, timeout: float = LISTENER_TIMEOUT) -> int:
    """Copy the child's notification fd into this process once the child loaded it."""
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        try:
            fd = pidfd_getfd(child_pidfd, fdnum)
        except OSError as exc:
            if exc.errno == _errno.EPERM:
                raise HostError("cannot take the sandbox's seccomp listener (pidfd_getfd: "
                                "permission denied)",
                                hint="run sandboxctl as the user who owns the sandbox, without "
                                "a ptrace restriction (kernel.yama.ptrace_scope <= 1)") from exc
            if exc.errno == _errno.ENOSYS:
                raise HostError("this kernel has no pidfd_getfd(2)",
                                hint="use Linux 5.6 or newer, or --platform ptrace") from exc
            if exc.errno not in (_errno.EBADF, _errno.ESRCH):
                raise SandboxError(f"pidfd_getfd: {exc.strerror}") from exc
        else:
            if _is_listener(fd):
                return fd
            os.close(fd)  # not (yet) the listener: the child still sets up
        if _exited(child_pidfd):
            raise SandboxError("the sandboxed process exited before it loaded its seccomp filter")
        if time.monotonic() > deadline:
            raise SandboxError(f"the sandboxed process did not load its seccomp filter within "
                               f"{timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


class SentryHandle:
    """The launcher's handle on a running Sentry process. Armed (arm(), or at the
    fork when the program is known already), a watcher thread kills the program if the
    Sentry dies first."""

    def __init__(self, pid: int, pidfd: int, run: RunRecord, child_pidfd: int | None = None) -> None:
        self.pid = pid
        self.pidfd = pidfd  # readable when the Sentry has exited
        self.run = run
        self._child_pidfd = child_pidfd
        self._stop_w = -1
        self._status: int | None = None
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        if child_pidfd is not None:
            self.arm(child_pidfd)

    def arm(self, child_pidfd: int) -> None:
        """From now on, if the Sentry dies first, the program (`child_pidfd`, owned by
        the watcher from now on) is killed."""
        from .sentry_process import watch

        stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._child_pidfd = child_pidfd
        t = threading.Thread(target=watch, args=(self.pidfd, child_pidfd, stop_r),
                             name="sentry-watch", daemon=True)
        t.start()
        self._watcher = t

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the Sentry to exit (it does once no sandboxed task is left; call after
        the program was reaped). Returns its wait status, None on timeout."""
        with self._lock:
            if self._status is not None:
                return self._status
        if timeout is not None and not select.select([self.pidfd], [], [], timeout)[0]:
            return None
        with self._lock:
            if self._status is None:
                try:
                    _, status = os.waitpid(self.pid, 0)
                except ChildProcessError:  # reaped by someone else: outcome unknown
                    status = 0
                self._status = status
                self._close()
                try:
                    os.close(self.pidfd)
                except OSError:
                    pass
                self.pidfd = -1
            return self._status

    def kill(self) -> None:
        if self.pidfd >= 0:
            pidfd_kill(self.pidfd, signal.SIGKILL)

    def failed(self) -> str | None:
        """Why the Sentry failed, or None if it did not (or has not exited yet)."""
        try:
            with open(self.run.file(FAILED), encoding="utf-8") as fh:
                return fh.read().strip() or "the Sentry failed"
        except OSError:
            pass
        st = self._status
        if st is None:
            return None
        if os.WIFSIGNALED(st):
            sig = os.WTERMSIG(st)
            why = " (by its own seccomp filter)" if sig == signal.SIGSYS else ""
            return f"the Sentry was killed by signal {signal.Signals(sig).name}{why}"
        if os.WIFEXITED(st) and os.WEXITSTATUS(st) != 0:
            return f"the Sentry exited with status {os.WEXITSTATUS(st)}"
        return None

    def _close(self) -> None:
        """Release the watcher (it exits) and the supervisor's descriptors."""
        if self._stop_w < 0:
            return
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass  # EPIPE: the watcher is gone already
        os.close(self._stop_w)
        self._stop_w = -1
        if self._watcher is not None:
            self._watcher.join(timeout=1)


def warm() -> None:
    """Import everything the Sentry will need (handler families included). The launcher
    may call this while the sandboxed child sets itself up; start_sentry calls it anyway,
    so the forked Sentry starts serving without importing anything."""
    from ..engine.syscalls import name_of
    from . import dispatch, platform_notify, sentry_process  # noqa: F401
    from .table import load_table

    load_table()
    name_of(0)  # the syscall names: the Sentry cannot load libseccomp once confined


def start_sentry(plan: Plan, child_pid: int, listener_fdnum: int, run: RunRecord,
                 gofer_sock: Any = None, debug: bool = False, strace: str | None = None,
                 strace_syscalls: frozenset[str] | None = None) -> SentryHandle:
    if plan.launch.platform == "ptrace":  # the Sentry seizes the child (platform_ptrace)
        from .platform_ptrace import start_ptrace_sentry

        return start_ptrace_sentry(plan, child_pid, run, gofer_sock=gofer_sock, debug=debug,
                                   strace=strace, strace_syscalls=strace_syscalls)
    early = fork_sentry_early(plan, run, gofer_sock=gofer_sock, debug=debug, strace=strace,
                              strace_syscalls=strace_syscalls)
    try:
        return early.hand_over(child_pid, listener_fdnum)
    except BaseException:
        early.cancel()
        raise


class EarlySentry:
    """A seccomp-notify Sentry forked before the sandbox has reported its listener.

    It sets itself up (its files, the dispatcher, the worker pool) and confines itself
    while the sandbox is still being built, then waits on a socket for the listener and
    the program's pidfd; hand_over() sends them. (The launcher forks it as soon as its
    own imports are done, so none of that is on the path from the program's report to
    the first served call.) cancel() closes the socket: the Sentry then exits quietly
    and is reaped."""

    def __init__(self, handle: SentryHandle, ctl: Any) -> None:
        self.handle = handle
        self.ctl = ctl

    def hand_over(self, child_pid: int, listener_fdnum: int) -> SentryHandle:
        """Take the program's listener (pidfd_getfd) and pass it, with a pidfd of the
        program, to the Sentry; from now on the handle's watcher kills the program if
        the Sentry dies first."""
        import socket

        child_pidfd = pidfd_open(child_pid)
        try:
            listener = take_listener(child_pidfd, listener_fdnum)
        except BaseException:
            os.close(child_pidfd)
            raise
        try:
            self.handle.arm(child_pidfd)  # owns child_pidfd now
            try:
                socket.send_fds(self.ctl, [b"L"], [listener, child_pidfd])
            except OSError as exc:  # the Sentry is gone (its failure file says why; the
                # watcher kills the program)
                raise SandboxError(self.handle.failed() or
                                   f"the Sentry ended before it was given the listener ({exc.strerror})") from exc
        finally:
            os.close(listener)  # the Sentry's alone
            self.ctl.close()
        return self.handle

    def cancel(self) -> None:
        """The sandbox will not report: end the Sentry (it reads EOF) and reap it."""
        try:
            self.ctl.close()
        except OSError:
            pass
        if self.handle.wait(timeout=2) is None:
            self.handle.kill()
            self.handle.wait()


def fork_sentry_early(plan: Plan, run: RunRecord, gofer_sock: Any = None, debug: bool = False,
                      strace: str | None = None,
                      strace_syscalls: frozenset[str] | None = None) -> EarlySentry:
    """Fork a seccomp-notify Sentry that sets itself up now and serves once
    EarlySentry.hand_over() gives it the sandbox's listener."""
    import socket

    from .confine import sentry_filter_bpf
    from .platform_notify import UnsupportedKernel, listener_ioctls, notif_sizes

    warm()
    try:
        sizes = notif_sizes()
    except UnsupportedKernel as exc:
        raise HostError("this kernel has no seccomp user notification",
                        hint="use Linux 5.5 or newer, or --platform ptrace") from exc
    # built here, loaded by the Sentry (its set-up runs while the sandbox builds itself,
    # on a machine as busy as it gets: the less it does, the sooner it is ready)
    flt = sentry_filter_bpf(listener_ioctls(sizes))
    from .sentry_process import fork_sentry

    ctl, sentry_ctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        handle = fork_sentry(run, None,
                             lambda: _sentry_main(plan, sentry_ctl, run, gofer_sock, debug,
                                                  sizes, flt, strace=strace,
                                                  strace_syscalls=strace_syscalls),
                             parent_closes=(sentry_ctl.fileno(),))
    except BaseException:
        ctl.close()
        sentry_ctl.close()
        raise
    sentry_ctl.detach()  # closed by fork_sentry in this process
    return EarlySentry(handle, ctl)


# -- inside the Sentry process ----------------------------------------------------------


def _sentry_main(plan: Plan, ctl: Any, run: RunRecord, gofer_sock: Any, debug: bool,
                 sizes: Any, flt: Any, strace: str | None = None,
                 strace_syscalls: frozenset[str] | None = None) -> int:
    """Set up, confine (with `flt`, built by the launcher for the kernel's notification
    `sizes`), wait for the listener on `ctl` (EOF: the sandbox never reported; exit
    quietly), serve."""
    import socket

    from .sentry_process import SentryOutput, isolate_fds, open_output, report_failure

    # (fork_sentry reset the supervisor's signal set-up in this process)
    out: SentryOutput | None = None
    child_pidfd = -1
    try:
        from .call import SentryContext
        from .confine import confine
        from .dispatch import Dispatcher
        from .platform_notify import NotifyLoop

        isolate_fds(gofer_sock, ctl.fileno())
        out = open_output(run, debug)
        flush = out.flush
        log = out.log

        def on_kill(call: Any, k: Any) -> None:
            flush()

        ctx = SentryContext(plan=plan, emit=out.emit, gofer_sock=gofer_sock, debug=log)
        dispatcher = Dispatcher(ctx)
        if strace is not None:  # --strace: the calls that reach the Sentry (sentry/strace.py)
            from .strace import StracingDispatcher, open_strace

            dispatcher = StracingDispatcher(dispatcher, open_strace(strace, run.path,
                                                                    strace_syscalls))
        blocking = any(s is not None and s.may_block for s in dispatcher.slots)
        # One worker to start with (more are started while every one is busy): starting
        # four cost ~3 ms of the Sentry's set-up, on the path to the first served call.
        loop = NotifyLoop(-1, dispatcher, workers=1 if blocking else 0, flush=flush,
                          on_kill=on_kill, log=log, sizes=sizes)
        loop.start_workers()
        confine(flt)
        # the listener and the program's pidfd (SCM_RIGHTS); nothing: no sandbox to serve
        _, fds, _, _ = socket.recv_fds(ctl, 16, 2)
        ctl.close()
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return 0
        listener, child_pidfd = fds
        loop.attach(listener)
        if log is not None:
            log(f"sentry pid={os.getpid()} uid={os.geteuid()} trapped="
                f"{sorted(plan.trapped_numbers())} workers={loop.nworkers} "
                f"sync_wakeup={loop.sync_wakeup}")
            log("confined; serving")
        loop.run()
        # no sandboxed task left: the Gofer ends on EOF, while this process ends
        gofer_fd = gofer_sock.fileno() if hasattr(gofer_sock, "fileno") else gofer_sock
        if isinstance(gofer_fd, int) and gofer_fd >= 0:
            os.close(gofer_fd)
        if log is not None:
            log(f"no sandboxed task left; served {loop.served} calls")
            from .handlers_fs import cache_report

            if (line := cache_report(ctx)) is not None:
                log(line)
        return 0
    except BaseException as exc:
        return report_failure(exc, run, child_pidfd, out)
    finally:
        if out is not None:
            out.close()


__all__ = ["start_sentry", "fork_sentry_early", "EarlySentry", "warm", "SentryHandle", "take_listener", "pidfd_open", "pidfd_getfd",
           "pidfd_kill", "FAILED"]
