"""Signals in the supervisor: catch the ones a user sends to `sandboxctl apply` and hand
them to the sandboxed program; restore everything the children must not inherit."""

from __future__ import annotations

import os
import signal

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)


class SignalPipe:
    """Forwarded signals (and SIGWINCH, SIGCHLD) arrive as bytes on `fd`."""

    def __init__(self, fd: int, w: int, old: dict[int, object]) -> None:
        self.fd = fd
        self._w = w
        self._old = old

    def read(self) -> list[int]:
        try:
            return list(os.read(self.fd, 256))
        except BlockingIOError:
            return []

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        os.close(self.fd)
        os.close(self._w)


def _noop(signum: int, frame: object) -> None:
    pass


def install(extra: tuple[int, ...] = ()) -> SignalPipe:
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    old = {}
    for sig in FORWARDED + extra:
        old[sig] = signal.signal(sig, _noop)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return SignalPipe(r, w, old)


def reset_in_child() -> None:
    """Default dispositions and an empty mask: Python ignores SIGPIPE and SIGXFSZ, and an
    ignored signal stays ignored across execve."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
