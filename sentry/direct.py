"""Run a command under the Sentry only: no namespaces, no new root, no Gofer.

For tests and benchmarks of the user-space layer, and a reference for how the launcher
wires the pieces (fork → child: load_and_exec; parent: new_run, start_sentry, reap,
wait for the Sentry, finish). `sandboxctl apply` does the same inside namespaces.
platform_ptrace.run_direct_ptrace is the same on platform ptrace: both fork the program
with fork_program and finish with wait_program.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from ..engine.plan import Plan
from .forking import close_fds_except, fork_flushed
from .launch import kernel
from .runs import RunRecord, new_run

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Callable, Mapping, Sequence
    from .supervisor import SentryHandle


@dataclass(frozen=True)
class DirectResult:
    run: RunRecord
    exit_code: int | None
    signal: int | None
    sentry_failed: str | None

    @property
    def status(self) -> int:
        """The shell's view: the code, or 128+N after signal N."""
        return self.exit_code if self.exit_code is not None else 128 + (self.signal or 0)


def fork_program(plan: Plan, argv: Sequence[str], env: Mapping[str, str] | None,
                 exec_program: Callable[[dict[str, str], int], None], *,
                 stdin: int | None, stdout: int | None,
                 stderr: int | None) -> tuple[RunRecord, int, int]:
    """Start the run's record and fork the program with a report pipe. The child dies
    with this process (PDEATHSIG), takes `stdin`/`stdout`/`stderr` where given, then calls
    exec_program(env, report_w), which does not return (status 126 if it does or raises).
    Returns the run, the child's pid and the pipe's read end (the write end is closed)."""
    env = dict(os.environ if env is None else env)
    run = new_run(plan, list(argv))
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = fork_flushed()
    if pid == 0:
        try:
            os.close(r)
            kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
            for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
                if fd is not None:
                    os.dup2(fd, target)
            exec_program(env, w)
        finally:
            os._exit(126)
    os.close(w)
    return run, pid, r


def wait_program(run: RunRecord, pid: int, handle: SentryHandle | None) -> DirectResult:
    """Reap the program, then wait for its Sentry (if one was started); finish the run."""
    _, status = os.waitpid(pid, 0)
    failed = None
    if handle is not None:
        handle.wait()
        failed = handle.failed()
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    run.finish(code, sig)
    return DirectResult(run, code, sig, failed)


def run_direct(plan: Plan, argv: Sequence[str], env: Mapping[str, str] | None = None,
               *, debug: bool = False, stdin: int | None = None, stdout: int | None = None,
               stderr: int | None = None) -> DirectResult:
    from .confine import drop_capabilities
    from .seccomp_child import load_and_exec
    from .supervisor import start_sentry

    def exec_program(env: dict[str, str], report_w: int) -> None:
        # the program gets exactly stdin, stdout and stderr (and the report pipe
        # until the exec); whatever the caller leaked stays out
        close_fds_except({0, 1, 2, report_w})
        # No capability survives into the program (the launcher cuts them to the
        # profile's list; here: none), so the capability-less Sentry may read it.
        drop_capabilities()
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        load_and_exec(plan, argv, env, report_w)

    run, pid, r = fork_program(plan, argv, env, exec_program, stdin=stdin, stdout=stdout,
                               stderr=stderr)
    data = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    handle = None
    if data.strip():
        handle = start_sentry(plan, pid, int(data), run, debug=debug)
    return wait_program(run, pid, handle)


__all__ = ["run_direct", "DirectResult", "fork_program", "wait_program"]
