"""A pseudo-terminal for an interactive program. The sandbox's init opens it on the
sandbox's own devpts and sends the master to the supervisor (SCM_RIGHTS), which relays it
to its own terminal (put in raw mode, restored afterwards); the program gets the slave as
stdin/stdout/stderr and as its controlling terminal, in a session of its own, so it never
holds the host's terminal (no TIOCSTI into the user's shell)."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import termios
import tty


TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


def open_in_sandbox(ptmx: str = "/dev/ptmx") -> tuple[int, int]:
    """A new pty from the sandbox's own devpts (run inside the sandbox after pivot_root):
    the program's `tty` is /dev/pts/N of its own tree. Returns (master, slave)."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    return master, slave


class Pty:
    """The supervisor's side: the master (received from the sandbox) and the host tty."""

    def __init__(self, master: int, host_fd: int, saved: list | None = None) -> None:
        self.master = master
        self.host_fd = host_fd  # the terminal we relay (stdin)
        self._saved = saved

    @classmethod
    def adopt(cls, master: int, host_fd: int = 0) -> "Pty":
        p = cls(master, host_fd)
        try:
            p._saved = termios.tcgetattr(host_fd)
            # The program's terminal starts with the user's settings (echo, erase...).
            termios.tcsetattr(master, termios.TCSANOW, p._saved)
        except termios.error:
            p._saved = None
        p.copy_size()
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
        try:
            os.close(self.master)
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
