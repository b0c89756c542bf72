"""Small helpers handlers share (kept apart from dispatch.py to avoid import cycles)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any, Callable


class Deferred(Exception):
    """Raised by a handler serving on the loop thread (its memory's `may_defer` is true)
    that found its call would block (a FIFO open): the platform runs `resume()` on a
    worker and applies the Decision it returns. `resume` must not read the caller's
    memory again (what it needs was read once, before)."""

    def __init__(self, resume: Callable[[], Any]) -> None:
        super().__init__("deferred")
        self.resume = resume


def defers(fn: Callable) -> Callable:
    """Mark a `may_block` handler that raises Deferred only when it would block: the
    notify platform then serves it on the loop thread (no hand-off to a worker)."""
    fn.can_defer = True  # type: ignore[attr-defined]
    return fn


def read_comm(pid: int) -> str:
    """The task's command name (/proc/<pid>/comm), "?" if it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/comm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return "?"
    try:
        return os.read(fd, 64).decode(errors="replace").strip()
    finally:
        os.close(fd)


__all__ = ["read_comm", "Deferred", "defers"]
