"""Start the Gofer: one process per sandbox, serving the Sentry over a socketpair.

    handle, sock = start_gofer(plan, child_pid)

Call it once the sandboxed child has built its root (after pivot_root), before the
program runs. Or in two steps, as the launcher does: `early = spawn_gofer_early(plan)`
while the sandbox is still being built (the fork and steps 1-3 happen then, off the path
to the program's first file call), and `early.attach(child_pid)` while the child still
waits for its first call to be served; it returns a PendingGofer (ready() waits for
"ready"). The caller builds the Gofer's seccomp filter (gofer/confine.py) and forks it;
the Gofer then, in order:

1. PR_SET_PDEATHSIG(SIGKILL): it dies with the launcher;
2. opens its own /proc/<pid>/fd directory (host procfs) as an O_PATH descriptor: readlink
   there gives the canonical sandbox path of a descriptor, openat reopens an O_PATH one;
3. closes every descriptor but the socket, its fd directory, the ready pipe and the
   socket the child's namespaces come on;
4. receives the child's user and mount namespaces as descriptors (opened by attach),
   setns() into them, chdir("/") and chroot(".") (as nsenter does): it sees exactly the
   sandbox's tree, but it is not in the sandbox's pid namespace and the program cannot
   signal or trace it;
5. becomes the program's uid/gid with the program's capabilities (so the kernel answers
   permission questions as it would for the program), sets no_new_privs and loads its
   seccomp filter;
6. says "ready" on a pipe and serves until the Sentry closes the socket.

If the Gofer dies the launcher must kill the sandbox (the Sentry also kills the calling
process when the Gofer is gone).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading

from ..engine.errors import SandboxError
from ..engine.plan import Plan, SyntheticFile
from ..sentry.forking import fork_flushed
from ..sentry.launch.signals import reset_in_child

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000


class GoferHandle:
    """The launcher's handle on a running Gofer process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._status: int | None = None
        self._closing = False

    def kill(self) -> None:
        self._closing = True  # an exit we asked for: the watcher leaves the sandbox alone
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        """Wait for the Gofer to end; its wait status."""
        if self._status is None:
            _, self._status = os.waitpid(self.pid, 0)
        return self._status

    def close(self) -> None:
        """Kill the Gofer (if still running) and reap it."""
        self.kill()
        self.wait()

    def poll(self) -> int | None:
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._status = status
        return self._status


def _synthetic(plan: Plan) -> tuple[SyntheticFile, ...]:
    return tuple(plan.sentry.synthetic_files)


def start_gofer(plan: Plan, child_pid: int) -> tuple[GoferHandle, socket.socket]:
    """Fork the Gofer into `child_pid`'s user and mount namespaces; return its handle
    and the Sentry's end of the connection (SOCK_SEQPACKET), once it is ready."""
    return spawn_gofer(plan, child_pid).ready()


class PendingGofer:
    """A Gofer forked but maybe not ready yet (spawn_gofer). `sock` is the Sentry's end
    already: a request sent now is served once the Gofer is set up. `ready()` waits for
    that, and raises (after killing it) if it could not start."""

    def __init__(self, pid: int, sock: socket.socket, ready_r: int, targets: list[int],
                 error: str | None = None) -> None:
        self.sock, self.ready_r = sock, ready_r
        self.targets = targets  # pidfds the watcher kills if the Gofer dies (_watch_targets)
        self.error = error  # why attaching failed, if it did
        self.handle = GoferHandle(pid)  # to kill it with, ready or not

    def close(self) -> None:
        """Kill the Gofer, ready or not, and reap it."""
        if self.ready_r >= 0:
            os.close(self.ready_r)
            self.ready_r = -1
        for fd in self.targets:  # (not handed to a watcher yet)
            os.close(fd)
        self.targets = []
        self.handle.kill()
        self.handle.wait()

    def ready(self) -> tuple[GoferHandle, socket.socket]:
        msg = b""
        while True:
            chunk = os.read(self.ready_r, 1024)
            if not chunk:
                break
            msg += chunk  # until EOF: the Gofer closes the pipe right after "ready"
        os.close(self.ready_r)
        self.ready_r = -1
        handle = self.handle
        if msg != b"ready":
            handle.kill()
            handle.wait()
            self.sock.close()
            for fd in self.targets:
                os.close(fd)
            self.targets = []
            why = msg.decode(errors="replace") or self.error or "it died"
            raise SandboxError(f"the Gofer could not start: {why}",
                               hint="check that the sandbox process is alive and that this "
                                    "kernel has openat2 (Linux 5.6+)")
        targets, self.targets = self.targets, []
        _watch(handle, targets)
        return handle, self.sock


def connection() -> tuple[socket.socket, socket.socket]:
    """A Sentry-Gofer connection (the Sentry's end, the Gofer's end), made before either
    is forked: the launcher forks the Sentry with its end before the Gofer exists."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)


def spawn_gofer(plan: Plan, child_pid: int,
                conn: tuple[socket.socket, socket.socket] | None = None) -> PendingGofer:
    """Fork the Gofer (start_gofer without the wait): the launcher starts the Sentry
    while the Gofer sets itself up (setns, chroot, its filter: ~5 ms). `conn` is the
    connection() to serve (default: a new one)."""
    return spawn_gofer_early(plan, conn).attach(child_pid)


class EarlyGofer:
    """A Gofer forked before the sandbox's child is known (spawn_gofer_early): set up as
    far as it can be outside the sandbox's namespaces, it waits for the child's pid."""

    def __init__(self, pid: int, sock: socket.socket, ready_r: int, go: socket.socket) -> None:
        self.pid, self.sock, self.ready_r, self.go = pid, sock, ready_r, go

    @property
    def waiting(self) -> bool:
        """Not attached nor cancelled yet."""
        return self.go.fileno() >= 0

    def attach(self, child_pid: int) -> PendingGofer:
        """Point the Gofer at the child: it joins its namespaces and gets ready."""
        # Everything about the child is read here, while it still waits to be served (call
        # this before its first call is answered): once the program runs, its /proc
        # entries may no longer be open to this user (an unreadable binary makes it
        # non-dumpable). The namespaces go to the Gofer as descriptors.
        fds: list[int] = []
        error = None
        targets: list[int] = []
        try:
            targets = _watch_targets(child_pid)
            for kind in ("user", "mnt"):
                fds.append(os.open(f"/proc/{child_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
            socket.send_fds(self.go, [b"ns"], fds)
        except OSError as exc:  # the child or the Gofer is gone; ready() says so
            error = f"cannot reach the sandbox process {child_pid} ({exc.strerror or exc})"
        finally:
            for fd in fds:
                os.close(fd)
            self.go.close()
        pending = PendingGofer(self.pid, self.sock, self.ready_r, targets, error)
        self.ready_r = -1  # the PendingGofer's now
        return pending

    def cancel(self) -> None:
        """No sandbox to serve: end the Gofer (it has nothing of a sandbox yet) and reap it."""
        self.go.close()
        if self.ready_r >= 0:
            os.close(self.ready_r)
            self.ready_r = -1
        GoferHandle(self.pid).close()


def spawn_gofer_early(plan: Plan,
                      conn: tuple[socket.socket, socket.socket] | None = None) -> EarlyGofer:
    """Fork the Gofer now; EarlyGofer.attach(child_pid) later points it at the sandbox."""
    from . import confine
    from .policy import Policy

    policy = Policy.from_config(plan.gofer, _synthetic(plan))
    flt = confine.filter_bpf()  # made here, loaded by the Gofer once set up
    sentry_end, gofer_end = conn if conn is not None else connection()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go, gofer_go = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    pid = fork_flushed()  # (the child freezes the heap it inherits)
    if pid == 0:
        code = 1
        try:
            reset_in_child()  # (the Gofer then ignores the terminal's signals itself)
            sentry_end.close()
            os.close(ready_r)
            go.close()
            _gofer_main(plan, policy, gofer_go, gofer_end, ready_w, flt)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported on the ready pipe
            try:
                os.write(ready_w, f"{exc.__class__.__name__}: {exc}".encode()[:1000])
            except OSError:
                pass
        finally:
            os._exit(code)
    gofer_end.close()
    os.close(ready_w)
    gofer_go.close()
    return EarlyGofer(pid, sentry_end, ready_r, go)


def _watch_targets(child_pid: int) -> list[int]:
    """pidfds of the child and, if it is the sandbox's init's child, of that init (its
    pid namespace dies with it)."""
    targets = [os.pidfd_open(child_pid)]
    try:
        with open(f"/proc/{child_pid}/status") as fh:
            ppid = next(int(l.split()[1]) for l in fh if l.startswith("PPid:"))
        if ppid > 1 and _same_ns(f"/proc/{ppid}/ns/pid", f"/proc/{child_pid}/ns/pid") \
                and not _same_ns(f"/proc/{ppid}/ns/pid", "/proc/self/ns/pid"):
            targets.append(os.pidfd_open(ppid))  # the sandbox's init
    except (OSError, StopIteration, ValueError):
        pass
    return targets


def _watch(handle: GoferHandle, targets: list[int]) -> None:
    """Nothing runs unsupervised: if the Gofer dies before it is closed, SIGKILL the
    program and the sandbox's init (`targets`, pidfds owned from now on). Not when it
    ended on EOF: the Sentry closes its end once no sandboxed task is left, and init may
    still be about to report the program's status."""
    try:
        gofer_fd = os.pidfd_open(handle.pid)
    except OSError:
        for fd in targets:
            os.close(fd)
        return

    def run() -> None:
        try:
            select.select([gofer_fd], [], [])
            if not handle._closing and not _ended_on_eof(gofer_fd):
                for fd in targets:
                    try:
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
                    except OSError:
                        pass
        finally:
            for fd in (gofer_fd, *targets):
                os.close(fd)

    threading.Thread(target=run, name="gofer-watch", daemon=True).start()


def _ended_on_eof(gofer_fd: int) -> bool:
    """Whether the Gofer exited with status 0, which it does only when the Sentry's end
    of the connection closed (the Sentry is done, or gone: then the Sentry's own watcher
    acts). Looked at without reaping it (WNOWAIT: GoferHandle.wait reaps)."""
    try:
        info = os.waitid(os.P_PIDFD, gofer_fd, os.WEXITED | os.WNOWAIT)
    except OSError:
        return False
    return info is not None and info.si_code == os.CLD_EXITED and info.si_status == 0


def _same_ns(a: str, b: str) -> bool:
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _gofer_main(plan: Plan, policy, go: socket.socket, sock: socket.socket, ready_w: int,
                flt: Any) -> None:
    from . import confine
    from . import sys as gsys
    from .server import FileServer

    confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
                signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    keep_caps = confine.cap_mask(tuple(plan.launch.capabilities))
    fd_dir = os.open(f"/proc/{os.getpid()}/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    keep = {sock.fileno(), fd_dir, ready_w, go.fileno()}
    for fd in _fds(fd_dir):  # stdio too: nothing of the launcher's stays open here
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    # the child's namespaces, as descriptors the launcher opened (EarlyGofer.attach)
    ufd, mfd = _receive_ns(go)
    go.close()
    mine = os.stat("/proc/self/ns/user")
    theirs = os.fstat(ufd)
    if (theirs.st_dev, theirs.st_ino) != (mine.st_dev, mine.st_ino):
        gsys.setns(ufd, CLONE_NEWUSER)
    gsys.setns(mfd, CLONE_NEWNS)
    os.close(ufd)
    os.close(mfd)
    os.chdir("/")
    os.chroot(".")
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    # tmpfs mounts are the sandbox's alone (every change to them is a call the Sentry sees):
    # cached like the root; binds, proc and dev are not
    server = FileServer(root_fd, fd_dir, policy, cache_root=plan.gofer.root.cache == "exclusive",
                        mounts=tuple(m.target for m in plan.gofer.mounts if m.type != "tmpfs"))
    confine.become(plan.launch.uid, plan.launch.gid, keep_caps)
    confine.load_filter(flt)
    os.write(ready_w, b"ready")
    os.close(ready_w)
    server.serve(sock)


def _receive_ns(go: socket.socket) -> tuple[int, int]:
    """The child's user and mount namespace descriptors from the launcher
    (EarlyGofer.attach); EOF (cancelled, or the child was gone): exit quietly."""
    try:
        _, fds, _, _ = socket.recv_fds(go, 16, 2)
    except OSError:
        fds = []
    if len(fds) != 2:
        os._exit(0)  # cancelled: no sandbox to serve (ready() reads EOF)
    return fds[0], fds[1]


def _fds(fd_dir: int) -> list[int]:
    """Open descriptors, listed through the O_PATH fd directory (no /proc after chroot)."""
    dup = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd_dir)
    try:
        return [int(n) for n in os.listdir(dup) if n.isdigit() and int(n) != dup]
    finally:
        os.close(dup)


__all__ = ["start_gofer", "spawn_gofer", "spawn_gofer_early", "EarlyGofer", "connection", "PendingGofer", "GoferHandle"]
