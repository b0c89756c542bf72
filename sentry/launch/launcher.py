"""Launch a program in a sandbox described by a Plan, supervise it, clean up.

Processes (host view):

    supervisor  (`sandboxctl apply`: signals, pty relay, Sentry, Gofer, netstack, cgroups)
     └─ keeper  unshares user/mnt/uts/ipc/net/pid namespaces, writes its uid/gid maps,
        │       brings loopback up, forks init and moves it into the run's cgroups
        │       (through cgroup.procs descriptors the supervisor opened); if the
        │       supervisor dies it kills init and removes the cgroups (it is outside the
        │       pid namespace, so the program cannot see it)
        └─ init   pid 1 of the sandbox: hostname, builds the root and pivots into it,
           │      waits until the keeper has moved it into the cgroups, unshares the
           │      cgroup namespace, opens the pty; then only reaps; its exit kills
           │      everything left in the sandbox
           └─ program  cwd, rlimits, capabilities, no_new_privs, closes every other fd,
                       then load_and_exec (the Sentry's part: filter, report, execve)

Set-up errors in any of the three children come back over a pipe as one message and are
raised in the supervisor as the same exception type. The program's wait status comes back
over another pipe from init, so 128+N after signal N is exact. The program's host pid
comes with its listener report, as SCM_CREDENTIALS on a unix socket.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import struct
import sys

from ...engine.errors import HostError, SandboxctlError, SandboxError
from ...engine.plan import Plan
from ...engine.record import record
from ..forking import close_fds_except, fork_flushed
from . import cgroup, kernel, mnt, rlimits
from . import signals as sigs
from .host import check_host

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any, NoReturn
    import socket

    from .pty import Pty

# Imported where they are used, not here: socket, select and threading (the supervisor,
# after the keeper's fork), pty (only with a terminal), caps, uts, net and user (in the
# keeper and init, before pivot_root; the program finds them in sys.modules). Everything
# this module imports is on the path before the keeper's fork, which starts the
# sandbox's half of the start-up (docs/apply.md).

_ERRORS = {"HostError": HostError, "SandboxError": SandboxError}
_UCRED = struct.Struct("iII")


@record
class Outcome:
    """How a run ended: exit status and the signal, if any."""

    exit_code: int
    signal: int | None
    run_id: str | None
    sentry_failure: str | None = None


def _module_exists(name: str) -> bool:
    """Whether a submodule of sandboxctl can be imported (found, not imported). Not
    importlib.util.find_spec: importing importlib.util is ~1 ms of start-up."""
    from importlib.machinery import PathFinder

    parent, _, _ = name.rpartition(".")
    try:
        pkg = importlib.import_module(parent)
    except ImportError:
        return False
    return PathFinder.find_spec(name, getattr(pkg, "__path__", None)) is not None


# -- the children --------------------------------------------------------------------

@record
class _ChildSetup:
    """What the keeper, init and the program need from the supervisor."""

    plan: Plan
    argv: tuple[str, ...]
    root: mnt.RootRequest
    outer_uid: int
    outer_gid: int
    supervisor: int
    unshare_net: bool
    err_w: int
    status_w: int
    report_w: int
    pty_w: int | None  # socket the init sends the pty master over (None: no pty)
    cg_w: int  # keeper -> supervisor: why a cgroup could not be joined (EOF: joined)
    go_r: int  # keeper -> init: the cgroups are joined (or could not be)
    go_w: int
    cg_procs: tuple[tuple[int, str], ...] = ()  # the run's cgroup.procs (fd, directory),
    # opened by the supervisor
    cgroup_dirs: tuple[str, ...] = ()  # removed by the keeper if the supervisor is killed
    filter_bpf: bytes | None = None  # the program's filter, ready to load (None: build it)


def _fail(err_w: int, exc: BaseException) -> NoReturn:
    """Report a set-up error on the error pipe (as `type NUL message NUL hint`: after
    pivot_root nothing more can be imported, json included) and exit 125."""
    if isinstance(exc, SandboxctlError):
        kind = type(exc).__name__ if type(exc).__name__ in _ERRORS else "SandboxError"
        parts = (kind, exc.message, exc.hint or "")
    elif isinstance(exc, OSError):
        parts = ("SandboxError", f"sandbox set-up failed: {exc.strerror or exc}", "")
    else:
        parts = ("SandboxError", f"sandbox set-up failed: {exc!r}", "")
    try:
        os.write(err_w, "\0".join(p.replace("\0", " ") for p in parts).encode(errors="replace"))
    finally:
        os._exit(125)


def _keeper(s: _ChildSetup) -> NoReturn:
    """Host-side parent of the sandbox's init; lives exactly as long as the sandbox."""
    try:
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        os.setsid()  # off the user's terminal: its signals go to the supervisor only
        if s.outer_uid == 0:
            os.setgroups([])
        # Handles on the cgroups' parent directories: init's pivot_root moves this
        # process's root into the sandbox too (same mount namespace), where /sys is not.
        cg_parents = [(os.open(os.path.dirname(d), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
                       os.path.basename(d)) for d in s.cgroup_dirs]
        flags = (kernel.CLONE_NEWUSER | kernel.CLONE_NEWNS | kernel.CLONE_NEWUTS
                 | kernel.CLONE_NEWIPC | kernel.CLONE_NEWPID)
        if s.unshare_net:
            flags |= kernel.CLONE_NEWNET
        try:
            kernel.unshare(flags)
        except OSError as exc:
            raise HostError(f"cannot create the sandbox's namespaces ({exc.strerror})",
                            hint="namespaces may be disabled here (user.max_user_namespaces, "
                            "a container's seccomp policy); allow unshare(CLONE_NEWUSER) for "
                            "this user") from exc
        # After the credential change of unshare(): a pdeath signal set before is cleared.
        # SIGTERM, handled below: if the supervisor dies the keeper kills the sandbox and
        # removes its cgroups. (Init has SIGKILL as its own pdeath signal, for the keeper.)
        init_pid: list[int] = []
        orphaned: list[bool] = []

        def supervisor_gone(signum: int, frame: object) -> None:
            # (getppid() may still name the supervisor here: the signal comes when the
            # thread that forked us dies, and we are first handed to its other threads.)
            orphaned.append(True)
            for pid in init_pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if not init_pid:
                os._exit(125)

        signal.signal(signal.SIGTERM, supervisor_gone)
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != s.supervisor:
            os._exit(125)
        kernel.prctl(kernel.PR_SET_DUMPABLE, 1)
        from .user import write_maps

        write_maps(s.plan.launch.uid, s.plan.launch.gid, s.outer_uid, s.outer_gid)
        if s.unshare_net:
            from .net import loopback_up

            loopback_up()
        pid = os.fork()
        if pid == 0:
            _init(s)
        init_pid.append(pid)
        if os.getppid() != s.supervisor:  # gone between the fork and now
            supervisor_gone(signal.SIGTERM, None)
        # Init into the run's cgroups while it builds the root; it waits for "g" before it
        # starts anything. Through descriptors the supervisor opened (the kernel checks a
        # cgroup.procs write against the opener's credentials).
        problems = []
        for fd, name in s.cg_procs:
            try:
                os.write(fd, str(pid).encode())
            except OSError as exc:
                problems.append(f"{name} ({exc.strerror})")
            os.close(fd)
        try:
            os.write(s.go_w, b"g")
        except OSError:
            pass  # init is gone: its own error says why
        if problems:
            os.write(s.cg_w, ("sandboxctl: warning: resource limits not applied: cannot join "
                              + "; ".join(problems)).encode()[:4000])
        for fd in (s.err_w, s.status_w, s.report_w, s.pty_w, s.cg_w, s.go_r, s.go_w):
            if fd is not None:
                os.close(fd)
    except BaseException as exc:
        _fail(s.err_w, exc)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(125)
    if orphaned or os.getppid() != s.supervisor:
        # The supervisor was killed: nobody else will remove the (now empty) cgroups.
        for fd, name in reversed(cg_parents):
            cgroup.rmdir_retry(name, dir_fd=fd, timeout=10.0)  # nobody waits for us
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _init(s: _ChildSetup) -> NoReturn:
    """pid 1 of the sandbox."""
    try:
        for fd in (*(fd for fd, _ in s.cg_procs), s.go_w, s.cg_w):  # the keeper's, not init's
            os.close(fd)
        sigs.reset_in_child()
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
        # while the keeper moves this process into the run's cgroups (a v1 memory join
        # waits ~10-20 ms for an RCU grace period), and before pivot_root hides the host's
        # tree
        _import_child_side(s.plan, s.filter_bpf is not None)
        # (before build_root: after pivot_root this package may not be found)
        from . import caps, uts

        if s.pty_w is not None:
            import socket

            from .pty import attach_in_child, open_in_sandbox  # noqa: F401 (the program's)

        uts.set_names(s.plan.launch.hostname, s.plan.launch.domainname)
        mnt.build_root(s.root)
        # in the run's cgroups now (the keeper said so): a cgroup namespace rooted there
        if os.read(s.go_r, 1) != b"g":
            raise SandboxError("the supervisor went away during set-up")
        kernel.unshare(kernel.CLONE_NEWCGROUP)
        slave = None
        if s.pty_w is not None:
            master, slave = open_in_sandbox()
            sk = socket.socket(fileno=s.pty_w)
            socket.send_fds(sk, [b"m"], [master])
            sk.close()
            os.close(master)
        pid = os.fork()
        if pid == 0:
            _program(s, slave)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        close_fds_except({0, 1, 2, s.status_w})
        caps.drop_to(())
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        kernel.prctl(kernel.PR_SET_DUMPABLE, 0)
    except BaseException as exc:
        _fail(s.err_w, exc)
    status = None
    while True:  # reap every child; report the program's status, then end the sandbox
        try:
            child, st = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if child == pid:
            status = st
            break
    try:
        os.write(s.status_w, struct.pack("i", status if status is not None else -1))
    finally:
        os._exit(0)


def _import_child_side(plan: Plan, have_bpf: bool = False) -> None:
    """Import what init and the program's process run where this package, the standard
    library and libseccomp may not be reachable (while the root is built, after
    pivot_root). Done by init (the program is its fork) before it builds the root, not by
    the supervisor before the fork. With the filter ready as BPF (`have_bpf`, the usual
    case) that is seccomp_child, and glob if a `deny` rule has wildcards; otherwise
    pyseccomp and the filter code too (~3-5 ms). Nothing here starts a process
    (engine.libseccomp keeps pyseccomp from running `ldconfig -p`), which would take pid
    2 in the sandbox's pid namespace."""
    from .. import seccomp_child

    if any(mnt.has_wildcards(r.glob) for r in plan.gofer.deny):
        import glob  # noqa: F401  (mnt matches these while it builds the root)

    if not have_bpf:  # the program builds its filter: pyseccomp and engine.filter
        seccomp_child.prepare_build()

    if plan.launch.platform == "ptrace":
        from .. import platform_ptrace  # noqa: F401


def _program(s: _ChildSetup, slave: int | None) -> NoReturn:
    plan = s.plan
    try:
        from . import caps  # (imported by init before pivot_root: from sys.modules)

        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
        if slave is not None:
            from .pty import attach_in_child  # (likewise)

            attach_in_child(slave)
        else:
            os.setsid()
        close_fds_except({0, 1, 2, s.report_w, s.err_w})
        try:
            os.chdir(plan.launch.cwd)
        except OSError as exc:
            raise SandboxError(f"the working directory {plan.launch.cwd} is not usable in the "
                               f"sandbox ({exc.strerror})",
                               hint="set process.cwd to a directory that exists in the sandbox") from exc
        rlimits.apply(plan.launch.rlimits)
        caps.drop_to(plan.launch.capabilities)
        if plan.launch.no_new_privs:
            kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
    except BaseException as exc:
        _fail(s.err_w, exc)
    from ..seccomp_child import load_and_exec  # (imported by init before pivot_root)

    os.close(s.err_w)  # set-up is done: EOF tells the supervisor
    load_and_exec(plan, list(s.argv), dict(plan.launch.env), s.report_w, bpf=s.filter_bpf)


def _rmtree_force(path: str) -> None:
    """Remove a tree the sandbox wrote (overlay work dirs are mode 000)."""
    import shutil

    def fix(func: Any, p: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        try:
            func(p)
        except OSError:
            pass

    for _ in range(2):
        shutil.rmtree(path, onerror=fix)
        if not os.path.lexists(path):
            return


# -- the supervisor ------------------------------------------------------------------

def _read_error(err_r: int) -> SandboxctlError | None:
    chunks = []
    while True:
        data = os.read(err_r, 65536)
        if not data:
            break
        chunks.append(data)
    if not chunks:
        return None
    parts = b"".join(chunks).decode(errors="replace").split("\0")
    if len(parts) != 3:
        return SandboxError("sandbox set-up failed: " + " ".join(parts))
    kind, message, hint = parts
    return _ERRORS.get(kind, SandboxError)(message or "sandbox set-up failed", hint=hint or None)


def _recv_report(sock: socket.socket) -> tuple[int, int] | None:
    """(listener fd number, the program's host pid), or None if it closed without one."""
    import socket

    data, anc, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(_UCRED.size))
    if not data:
        return None
    pid = None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = _UCRED.unpack(payload[:_UCRED.size])[0]
    if pid is None:
        raise SandboxError("the sandboxed process reported without credentials")
    return int(data.strip()), pid


_SENTRY_MODULES = ("supervisor", "platform_notify", "call", "confine", "dispatch", "decode",
                   "table")
_GOFER_MODULES = ("process", "policy", "confine", "sys", "server")


def _warm_imports(plan: Plan) -> None:
    # (no pyseccomp: the Sentry's and the Gofer's filters come as BPF from the cache,
    # sentry/confine.py and gofer/confine.py; built only when the cache has none)
    names = [f"sandboxctl.sentry.{m}" for m in _SENTRY_MODULES]
    if plan.gofer.mediation == "gofer":
        names += [f"sandboxctl.gofer.{m}" for m in _GOFER_MODULES]
    if plan.launch.platform == "ptrace":  # python-ptrace (~100 ms) for the tracing Sentry
        names += ["ptrace.debugger", "ptrace.syscall", "ptrace.func_call"]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # The Sentry's syscall table (~18 ms to build, then cached in this process): here it
    # overlaps the sandbox's set-up; start_sentry would otherwise build it after.
    from ..supervisor import warm

    warm()


def _decode(status: int) -> tuple[int, int | None]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return 1, None


class _Session:
    """Everything the supervisor holds for one run, released by close() in reverse."""

    def __init__(self) -> None:
        self.cleanups: list[Any] = []

    def on_close(self, fn: Any) -> None:
        self.cleanups.append(fn)

    def close(self) -> None:
        while self.cleanups:
            fn = self.cleanups.pop()
            try:
                fn()
            except Exception:  # cleanup goes on
                pass


def run(plan: Plan, argv: list[str] | tuple[str, ...], *, debug: bool = False,
        use_pty: bool | None = None, strace: str | None = None,
        strace_syscalls: frozenset[str] | None = None,
        filter_bpf: bytes | None = None) -> Outcome:
    """Run `argv` (or the plan's command) in a sandbox; return when everything is gone.
    `filter_bpf`: the program's seccomp-notify filter as exported by libseccomp for this
    Plan (engine.cache.compile_cached_with_filter), loaded as it is; None: the program
    builds it."""
    argv = tuple(argv) or tuple(plan.launch.command)
    if not argv:
        raise SandboxError("no command to run",
                           hint="give one after `--` or set process.command in the profile")
    check_host(plan.launch.platform)
    rlimits.check(plan.launch.rlimits)
    gofer_ok = plan.gofer.mediation == "gofer" and _module_exists("sandboxctl.gofer.process")
    synthetic = plan.sentry.synthetic_files
    if not gofer_ok:
        synthetic = synthetic + plan.gofer.synthetic_files
    root = mnt.prepare(plan.gofer, synthetic)
    if not gofer_ok and not root.direct:
        root = root._replace(direct=True)
    # (What the program's process runs after pivot_root is imported by init, in
    # parallel with this process: see _import_child_side.)
    from ..runs import new_run

    session = _Session()
    if root.upper_base is not None and not plan.gofer.root.keep_upper:
        session.on_close(lambda: _rmtree_force(root.upper_base))  # type: ignore[arg-type]
    try:
        return _supervise(plan, argv, root, debug, use_pty, session, new_run,
                          strace=strace, strace_syscalls=strace_syscalls, filter_bpf=filter_bpf)
    finally:
        session.close()


def _supervise(plan: Plan, argv: tuple[str, ...], root: mnt.RootRequest, debug: bool,
               use_pty: bool | None, session: _Session, new_run: Any,
               strace: str | None = None,
               strace_syscalls: frozenset[str] | None = None,
               filter_bpf: bytes | None = None) -> Outcome:
    cg = cgroup.create(plan.launch.resources, os.urandom(3).hex())
    session.on_close(cg.cleanup)
    for w in cg.warnings:
        print(w, file=sys.stderr)
    if use_pty is None:
        use_pty = os.isatty(0) and os.isatty(1)
    # The C module's sockets before the keeper's fork (socket.py and its imports come
    # after it); wrapped as socket.socket objects once the keeper is running.
    import _socket

    pty: Pty | None = None
    pty_parent = pty_child = None
    if use_pty:
        pty_parent, pty_child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        session.on_close(pty_parent.close)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    cg_r, cg_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    # the run's cgroup.procs files, opened here (the keeper joins init through them)
    cg_procs: tuple[tuple[int, str], ...] = ()
    for path in cg.procs_files:
        try:
            cg_procs += ((os.open(path, os.O_WRONLY | os.O_CLOEXEC), os.path.dirname(path)),)
        except OSError as exc:
            print(f"sandboxctl: warning: resource limits not applied: cannot join "
                  f"{os.path.dirname(path)} ({exc.strerror})", file=sys.stderr)
    rep_parent, rep_child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    rep_parent.setsockopt(_socket.SOL_SOCKET, _socket.SO_PASSCRED, 1)
    for fd in (err_r, status_r):
        session.on_close(lambda fd=fd: os.close(fd))
    session.on_close(rep_parent.close)
    setup = _ChildSetup(
        plan=plan, argv=argv, root=root,
        outer_uid=os.geteuid(), outer_gid=os.getegid(), supervisor=os.getpid(),
        unshare_net=plan.network.mode != "passthrough", err_w=err_w, status_w=status_w,
        report_w=rep_child.fileno(), pty_w=pty_child.fileno() if pty_child else None,
        cg_w=cg_w, go_r=go_r, go_w=go_w, cg_procs=cg_procs,
        cgroup_dirs=tuple(cg.dirs),
        filter_bpf=filter_bpf if plan.launch.platform != "ptrace" else None)
    # Joining a cgroup v1 memory controller waits ~10-20 ms in the kernel (an RCU grace
    # period): the keeper joins init as soon as it has forked it, while init builds the
    # root, in a process of its own (no GIL to share with this one's imports).
    keeper = fork_flushed()
    if keeper == 0:
        try:
            os.close(err_r)
            os.close(status_r)
            os.close(cg_r)
            rep_parent.close()
            if pty_parent is not None:
                pty_parent.close()
        except BaseException as exc:
            _fail(err_w, exc)
        _keeper(setup)
    keeper_fd = os.pidfd_open(keeper)
    session.on_close(lambda: os.close(keeper_fd))

    def kill_sandbox() -> None:
        try:
            signal.pidfd_send_signal(keeper_fd, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(keeper, 0)
        except ChildProcessError:
            pass

    session.on_close(kill_sandbox)
    os.close(err_w)
    os.close(status_w)
    os.close(cg_w)
    os.close(go_r)
    os.close(go_w)
    for fd, _ in cg_procs:
        os.close(fd)
    rep_child.close()
    if pty_child is not None:
        pty_child.close()
    import select
    import socket

    rep_parent = socket.socket(fileno=rep_parent.detach())
    session.on_close(rep_parent.close)
    if pty_parent is not None:
        pty_parent = socket.socket(fileno=pty_parent.detach())
        session.on_close(pty_parent.close)
    # While the sandbox sets itself up (on another CPU if there is one): the run record,
    # and the modules the Sentry and the Gofer import, so their forks start warm.
    run_rec = new_run(plan, list(argv))
    # a run that fails to start still gets its status.json (exit_code null)
    session.on_close(lambda: None if run_rec.status.get("ended") else run_rec.finish(None))
    _warm_imports(plan)
    if not gc.isenabled():
        # `sandboxctl apply` starts with the collector off (cli/main.py): the imports are
        # done, so their objects go out of its view for good and it runs again for the
        # Sentry, the Gofer and the supervision loop, which are forks of this process.
        gc.freeze()
        gc.enable()
    # The Sentry (seccomp-notify) is forked now, while the sandbox still builds itself: it
    # sets itself up and confines itself meanwhile, and is handed the listener once the
    # program reports it. With a Gofer, it gets its end of the connection now, and the
    # Gofer is forked right after it (it joins the program's namespaces once told to).
    use_gofer = plan.gofer.mediation == "gofer" and _module_exists("sandboxctl.gofer.process")
    gofer_conn = None
    early = None
    early_gofer = None
    if plan.launch.platform != "ptrace":
        from ..supervisor import fork_sentry_early

        if use_gofer:
            from ...gofer.process import connection  # type: ignore[import-not-found]

            gofer_conn = connection()
            session.on_close(gofer_conn[1].close)
            session.on_close(gofer_conn[0].close)
        early = fork_sentry_early(plan, run_rec, gofer_sock=gofer_conn[0] if gofer_conn else None,
                                  debug=debug, strace=strace, strace_syscalls=strace_syscalls)
        if gofer_conn is not None:
            # The Gofer too: forked now, it sets up what it can outside the sandbox and
            # waits for the program's pid (EarlyGofer.attach, after the hand-over).
            from ...gofer.process import spawn_gofer_early  # type: ignore[import-not-found]

            early_gofer = spawn_gofer_early(plan, gofer_conn)
            session.on_close(lambda: early_gofer.cancel() if early_gofer.waiting else None)
            # the Sentry's end is the Sentry's alone: with no copy here, the Gofer reads EOF
            # and ends by itself as soon as the Sentry does
            gofer_conn[0].close()
        session.on_close(lambda: early.cancel() if early.ctl.fileno() >= 0 else None)
    # the keeper's word on the join: nothing (joined), a warning, or EOF if it failed (its
    # error then comes on err_r)
    chunks = []
    while chunk := os.read(cg_r, 4096):
        chunks.append(chunk)
    os.close(cg_r)
    if chunks:
        print(b"".join(chunks).decode(errors="replace"), file=sys.stderr)

    # 1. set-up: an error, or the program's report (listener fd number + host pid)
    error: SandboxctlError | None = None
    report = None
    open_fds = {err_r, rep_parent.fileno(), keeper_fd}
    if pty_parent is not None:
        open_fds.add(pty_parent.fileno())
    while error is None and report is None:
        ready, _, _ = select.select(list(open_fds), [], [])
        if pty_parent is not None and pty_parent.fileno() in ready:
            _, fds, _, _ = socket.recv_fds(pty_parent, 16, 1)
            open_fds.discard(pty_parent.fileno())
            if fds:
                from .pty import Pty

                pty = Pty.adopt(fds[0], 0)
                session.on_close(pty.close)
        if err_r in ready:
            error = _read_error(err_r)
            open_fds.discard(err_r)
        if rep_parent.fileno() in ready and error is None:
            report = _recv_report(rep_parent)
            if report is None:
                break  # the program ended before it loaded its filter (e.g. not found)
        if keeper_fd in ready and error is None and report is None:
            if err_r in open_fds:
                error = _read_error(err_r)
            break
    if error is not None:
        raise error
    sentry = None
    sp: sigs.SignalPipe | None = None
    if report is not None:
        listener_fdnum, child_pid = report
        pending_gofer = None
        # -- netstack (issue 5): user-space network for mode "netstack".
        if plan.network.mode == "netstack":
            if _module_exists("sandboxctl.netstack.setup"):
                from ...netstack.setup import attach  # type: ignore[import-not-found]

                net_handle = attach(plan.network, child_pid, run_rec)
                session.on_close(net_handle.close)
            else:
                print("sandboxctl: warning: network mode netstack is not available in this "
                      "build; the sandbox has loopback only", file=sys.stderr)
        # -- Gofer (issue 4): serves the sandbox's files from inside its namespaces. It
        # sets itself up (~5 ms) while the program starts: a request sent meanwhile waits
        # in the connection; its readiness is checked after.
        if use_gofer and early is None:  # ptrace: the Sentry is forked with the Gofer's socket
            from ...gofer.process import spawn_gofer  # type: ignore[import-not-found]

            pending_gofer = spawn_gofer(plan, child_pid)
            session.on_close(pending_gofer.close)
        # The program runs as soon as the Sentry serves its execve: from then on a signal
        # to sandboxctl is the program's. So the relay is installed before the Sentry is
        # handed the listener (forked before it, the Sentry and the Gofer reset the
        # signal set-up in their children anyway).
        sp = sigs.install((signal.SIGWINCH,) if use_pty else ())
        session.on_close(sp.close)
        if early_gofer is not None:
            # before the hand-over: the program is still blocked in its first call, so the
            # Gofer's view of it (namespaces, pidfds) is taken before it runs anything
            pending_gofer = early_gofer.attach(child_pid)
            session.on_close(pending_gofer.close)
        if early is not None:
            sentry = early.hand_over(child_pid, listener_fdnum)
        else:
            from ..supervisor import start_sentry

            sentry = start_sentry(plan, child_pid, listener_fdnum, run_rec,
                                  gofer_sock=pending_gofer.sock if pending_gofer else None,
                                  debug=debug, strace=strace, strace_syscalls=strace_syscalls)
        session.on_close(lambda: sentry.kill() if sentry.wait(0) is None else None)
        if pending_gofer is not None:
            pending_gofer.ready()  # raises if it could not start
        try:
            program_fd: int | None = os.pidfd_open(child_pid)
            session.on_close(lambda: os.close(program_fd))  # type: ignore[arg-type]
        except ProcessLookupError:
            program_fd = None
    else:
        program_fd = None

    # 2. supervise: relay the pty, forward signals, wait for the program's status.
    # (The relay is installed once the Gofer and the netstack are forked, which must not
    # inherit its wakeup fd: a signal before that ends the set-up instead.)
    if sp is None:  # the program ended before it loaded its filter: no Sentry was started
        sp = sigs.install((signal.SIGWINCH,) if use_pty else ())
        session.on_close(sp.close)
    if pty is not None:
        pty.raw()
        session.on_close(pty.restore)
    status: int | None = None
    sentry_fd = sentry.pidfd if sentry is not None else None
    stdin_open = pty is not None
    master_open = pty is not None
    keeper_done = False
    status_open = True  # until the status came, or EOF: a pipe at EOF stays readable
    while True:
        fds = [sp.fd]
        if status_open:
            fds.append(status_r)
        if not keeper_done:
            fds.append(keeper_fd)
        if sentry_fd is not None:
            fds.append(sentry_fd)
        if stdin_open:
            fds.append(pty.host_fd)  # type: ignore[union-attr]
        if master_open:
            fds.append(pty.master)  # type: ignore[union-attr]
        ready, _, _ = select.select(fds, [], [])
        if sp.fd in ready:
            for sig in sp.read():
                if sig == signal.SIGWINCH and pty is not None:
                    pty.copy_size()
                elif program_fd is not None and sig != signal.SIGCHLD:
                    try:
                        signal.pidfd_send_signal(program_fd, sig)
                    except OSError:
                        pass
        if master_open and pty.master in ready:  # type: ignore[union-attr]
            master_open = pty.to_host(1)  # type: ignore[union-attr]
        if stdin_open and pty.host_fd in ready:  # type: ignore[union-attr]
            stdin_open = pty.from_host(1)  # type: ignore[union-attr]
        if status_open and status_r in ready:
            data = os.read(status_r, 4)
            if len(data) == 4:
                status = struct.unpack("i", data)[0]
            status_open = False
        if keeper_fd in ready:
            keeper_done = True
        if sentry_fd is not None and sentry_fd in ready:
            # The Sentry ends by itself once no sandboxed task is left; any other end is a
            # failure, and then nothing may run unsupervised.
            sentry.wait(0)  # type: ignore[union-attr]
            if sentry.failed() is not None:  # type: ignore[union-attr]
                kill_sandbox()
            sentry_fd = None
        if keeper_done:
            # everything in the sandbox is gone; take what is still in the pipes
            while master_open and select.select([pty.master], [], [], 0)[0]:  # type: ignore[union-attr]
                master_open = pty.to_host(1)  # type: ignore[union-attr]
            if status_open and select.select([status_r], [], [], 0)[0]:
                data = os.read(status_r, 4)
                if len(data) == 4:
                    status = struct.unpack("i", data)[0]
            break
    kill_sandbox()
    failure = None
    if sentry is not None:
        sentry.wait(timeout=5)
        failure = sentry.failed()
    if status is None or status < 0:
        code, sig = (137, signal.SIGKILL) if failure else (125, None)
        if failure is None and status is None:
            failure = "the sandbox ended before the program reported its status"
    else:
        code, sig = _decode(status)
    run_rec.finish(code, sig)
    return Outcome(code, sig, run_rec.id, failure)
