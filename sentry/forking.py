"""What every fork of the runtime does around the fork itself.

    pid = fork_flushed()           # stdio buffers written once; the child freezes its heap
    if pid == 0:
        close_fds_except({0, 1, 2, report_w})   # nothing the parent held leaks on

Only `gc`, `os` and `sys`: the program's process calls close_fds_except after pivot_root, where
this package may not exist (the function is loaded by then, nothing more is imported).
"""

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Collection


def fork_flushed() -> int:
    """os.fork() after flushing sys.stdout and sys.stderr, so that output buffered before
    the fork is not written by both processes. In the child, everything inherited from
    the parent's heap is frozen (gc.freeze): the collector must never run the parent's
    finalizers there (a socket's close, a python-ptrace object's PTRACE_DETACH), least of
    all under the child's own seccomp filter (the Sentry, the Gofer)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        gc.freeze()
    return pid


def open_fds() -> list[int]:
    return [int(n) for n in os.listdir("/proc/self/fd")]


def close_fds_except(keep: Collection[int]) -> None:
    """Close every open descriptor of this process that is not in `keep`."""
    for fd in open_fds():
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor listdir itself used


__all__ = ["fork_flushed", "open_fds", "close_fds_except"]
