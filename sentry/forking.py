"""What every fork of the runtime does around the fork itself.

    pid = fork_flushed()           # Python's stdio buffers are written once, not twice
    if pid == 0:
        close_fds_except({0, 1, 2, report_w})   # nothing the parent held leaks on

Only `os` and `sys`: the program's process calls close_fds_except after pivot_root, where
this package may not exist (the function is loaded by then, nothing more is imported).
"""

from __future__ import annotations

import os
import sys
from typing import Collection


def fork_flushed() -> int:
    """os.fork() after flushing sys.stdout and sys.stderr, so that output buffered before
    the fork is not written by both processes."""
    sys.stdout.flush()
    sys.stderr.flush()
    return os.fork()


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
