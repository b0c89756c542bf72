"""A pseudo-terminal for an interactive program: the supervisor keeps the master and relays
it to its own terminal (put in raw mode, restored afterwards); the program gets the slave
as stdin/stdout/stderr and as its controlling terminal, in a session of its own, so it
never holds the host's terminal (no TIOCSTI into the user's shell)."""

from __future__ import annotations

import errno
import fcntl
import os
import termios
import tty
from dataclasses import dataclass, field


@dataclass
class Pty:
    master: int
    slave: int
    host_fd: int  # the terminal we relay (stdin)
    _saved: list | None = None
    _pending: bytearray = field(default_factory=bytearray)  # program output not yet written

    @classmethod
    def open(cls, host_fd: int = 0) -> "Pty":
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        p = cls(master, slave, host_fd)
        p.copy_size()
        try:
            p._saved = termios.tcgetattr(host_fd)
            # The program's terminal starts with the user's settings (echo, erase...).
            termios.tcsetattr(slave, termios.TCSANOW, p._saved)
        except termios.error:
            p._saved = None
        return p

    def copy_size(self) -> None:
        try:
            size = fcntl.ioctl(self.host_fd, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    def raw(self) -> None:
        if self._saved is not None:
            tty.setraw(self.host_fd, termios.TCSANOW)

    def restore(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(self.host_fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass

    def from_host(self, out_fd: int) -> bool:
        """Copy what the user typed to the program; False at end of input."""
        try:
            data = os.read(self.host_fd, 65536)
        except OSError:
            return False
        if not data:
            return False
        _write_all(self.master, data)
        return True

    def to_host(self, out_fd: int) -> bool:
        """Copy the program's output to `out_fd`; False once the slave side is closed."""
        try:
            data = os.read(self.master, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        _write_all(out_fd, data)
        return True

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[n:]


def attach_in_child(slave: int) -> None:
    """In the program's process: new session, the slave as controlling terminal and 0/1/2."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
