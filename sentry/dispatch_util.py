"""Small helpers handlers share (kept apart from dispatch.py to avoid import cycles)."""

from __future__ import annotations

import os


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


__all__ = ["read_comm"]
