"""Run a command under the Sentry only: no namespaces, no new root, no Gofer.

For tests and benchmarks of the user-space layer, and a reference for how the launcher
wires the pieces (fork → child: load_and_exec; parent: new_run, start_sentry, reap,
wait for the Sentry, finish). `sandboxctl apply` does the same inside namespaces.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..engine.plan import Plan
from .runs import RunRecord, new_run

PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1


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


def run_direct(plan: Plan, argv: Sequence[str], env: Mapping[str, str] | None = None,
               *, debug: bool = False, stdin: int | None = None, stdout: int | None = None,
               stderr: int | None = None) -> DirectResult:
    from .confine import drop_capabilities
    from .seccomp_child import load_and_exec
    from .supervisor import start_sentry

    env = dict(os.environ if env is None else env)
    run = new_run(plan, list(argv))
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
            for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
                if fd is not None:
                    os.dup2(fd, target)
            # the program gets exactly stdin, stdout and stderr (and the report pipe
            # until the exec); whatever the caller leaked stays out
            for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
                if fd > 2 and fd != w:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            # No capability survives into the program (the launcher cuts them to the
            # profile's list; here: none), so the capability-less Sentry may read it.
            drop_capabilities()
            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            load_and_exec(plan, argv, env, w)
        finally:
            os._exit(126)
    os.close(w)
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
    _, status = os.waitpid(pid, 0)
    failed = None
    if handle is not None:
        handle.wait()
        failed = handle.failed()
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    run.finish(code, sig)
    return DirectResult(run, code, sig, failed)


__all__ = ["run_direct", "DirectResult"]
