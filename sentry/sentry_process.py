"""The Sentry as a process of its own: the steps both platforms share.

supervisor.start_sentry (seccomp-notify) and platform_ptrace.start_ptrace_sentry fork the
Sentry the same way, and the Sentry takes the same first steps on both; what it serves with
(NotifyLoop or PtraceTracer) and the signal set-up (notify resets more) differ.

Supervisor side:

    handle = fork_sentry(run, child_pidfd, lambda: sentry_main(...), parent_closes=(...,))

Inside the Sentry (its signals already reset by fork_sentry), in this order (platform
steps go between: the tracer seizes the program before isolate_fds): in a try block,
isolate_fds(...) and out = open_output(run, debug), whose emit/flush/log the handlers and
the loop use; report_failure(exc, ...) in its except block and out.close() at the end.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

from .forking import close_fds_except, fork_flushed
from .runs import EventWriter, RunRecord
from .supervisor import FAILED, SentryHandle, pidfd_kill, pidfd_open
from ..engine.record import record

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any, Callable, TextIO

EXIT_FAILED = 70  # the Sentry's exit status when it failed (EX_SOFTWARE)
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN,
                    signal.SIGTTOU)


# -- supervisor side ---------------------------------------------------------------------


def fork_sentry(run: RunRecord, child_pidfd: int | None, sentry_main: Callable[[], int],
                parent_closes: tuple[int, ...] = ()) -> SentryHandle:
    """Fork the Sentry, which runs `sentry_main()` and exits with what it returns (70 if
    it raises). In this process: close `parent_closes` (what only the Sentry needs), open
    the Sentry's pidfd and, with `child_pidfd`, start the watcher that kills the sandbox
    if the Sentry dies first (else handle.arm(child_pidfd) does later). The handle owns
    `child_pidfd` from then on."""
    pid = fork_flushed()
    if pid == 0:  # the Sentry
        code = EXIT_FAILED
        try:
            _reset_signals()
            code = sentry_main()
        finally:
            os._exit(code)
    for fd in parent_closes:
        os.close(fd)
    return SentryHandle(pid, pidfd_open(pid), run, child_pidfd)


def _reset_signals() -> None:
    """The supervisor's signal set-up (launch/signals.py: relay handlers writing to its
    wakeup fd, a blocked mask) is not the Sentry's: default dispositions, no wakeup fd, an
    empty mask (SIGUSR1 ends the notify loop's RECV), and the terminal's signals ignored
    (they are the program's)."""
    from .launch.signals import reset_in_child

    reset_in_child()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for sig in TERMINAL_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def watch(sentry_pidfd: int, child_pidfd: int, stop_r: int) -> None:
    """If the Sentry dies first, the sandbox dies with it."""
    try:
        r, _, _ = select.select([sentry_pidfd, stop_r], [], [])
        pidfd_kill(child_pidfd, signal.SIGKILL)  # harmless once the child is gone
    finally:
        for fd in (stop_r, child_pidfd):
            try:
                os.close(fd)
            except OSError:
                pass


# -- inside the Sentry -------------------------------------------------------------------


def isolate_fds(gofer_sock: Any, *keep: int) -> None:
    """stdin and stdout become /dev/null (stderr stays: a failure is reported there);
    every descriptor is closed but 0, 1, 2, `keep` and the Gofer connection's."""
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    fds = {0, 1, 2, *keep}
    if gofer_sock is not None and hasattr(gofer_sock, "fileno"):
        fds.add(gofer_sock.fileno())
    elif isinstance(gofer_sock, int):
        fds.add(gofer_sock)
    close_fds_except(fds)


@record
class SentryOutput:
    """The Sentry's files: the run's events (buffered) and, with debug, its log.

    emit and flush share one lock (blocking handlers emit from worker threads); log is
    None without debug. Closures, not methods: emit is called per event."""

    writer: EventWriter
    log_fh: TextIO | None
    emit: Callable[[dict[str, Any]], None]
    flush: Callable[[], None]
    log: Callable[..., None] | None

    def close(self) -> None:
        for fh in (self.writer, self.log_fh):
            try:
                if fh is not None:
                    fh.close()
            except BaseException:  # noqa: BLE001 - the Sentry is exiting
                pass


def open_output(run: RunRecord, debug: bool) -> SentryOutput:
    writer = EventWriter(run.events_path, buffered=True)
    log_fh: TextIO | None = None
    if debug:
        # for report_failure's traceback in the log: imported now, before the Sentry
        # confines itself (and only with --debug: ~1.5 ms of start-up otherwise)
        import traceback  # noqa: F401

        try:
            log_fh = open(run.log_path, "a", buffering=1)  # noqa: SIM115
        except BaseException:
            writer.close()
            raise
    lock = threading.Lock()

    def emit(ev: dict[str, Any]) -> None:
        with lock:
            writer.write(ev)

    def flush() -> None:
        with lock:
            writer.flush()
            if log_fh is not None:
                log_fh.flush()

    def log(msg: str, at: float | None = None) -> None:
        """One line of the debug log, stamped `at` (default: now)."""
        log_fh.write(f"{time.time() if at is None else at:.6f} {msg}\n")  # type: ignore[union-attr]

    return SentryOutput(writer, log_fh, emit, flush, log if log_fh is not None else None)


def report_failure(exc: BaseException, run: RunRecord, child_pidfd: int,
                   out: SentryOutput | None) -> int:
    """Call in the Sentry's `except` block: kill the sandbox (never leave the program
    unserved), write why to <run>/sentry.failed, the traceback to the debug log and one
    line to stderr. Returns the Sentry's exit status."""
    reason = f"the Sentry failed: {exc.__class__.__name__}: {exc}"
    pidfd_kill(child_pidfd, signal.SIGKILL)
    try:
        with open(run.file(FAILED), "w", encoding="utf-8") as fh:
            fh.write(reason + "\n")
        if out is not None and out.log_fh is not None:
            import traceback  # (imported by open_output already)

            out.log_fh.write(traceback.format_exc())
        os.write(2, f"sandboxctl: {reason}\n".encode())
    except BaseException:  # noqa: BLE001
        pass
    return EXIT_FAILED


__all__ = ["fork_sentry", "watch", "isolate_fds", "SentryOutput",
           "open_output", "report_failure", "EXIT_FAILED", "TERMINAL_SIGNALS"]
