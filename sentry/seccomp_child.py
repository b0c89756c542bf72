"""The last step in the sandboxed child: load the Plan's host filter and exec.

    load_and_exec(plan, argv, env, report_fd, bpf=None)   # never returns

With `bpf` (the filter libseccomp generated for this Plan, exported when the Plan was
compiled and kept in the Plan cache: engine.cache.compile_cached_with_filter) the filter
is loaded as it is, with one seccomp(2) call; without, it is built here with libseccomp
(call prepare_build() first, before pivot_root).

Order: build the filter (if needed); resolve the command through PATH in the sandbox's
env; predict the listener fd (the lowest free descriptor: the kernel installs the
listener there, O_CLOEXEC, so execve closes it and it never reaches the program); write
that number to `report_fd` and close it; load the filter; execve. The execve itself is trapped: the
Sentry takes the listener with pidfd_getfd, records the exec, and lets it run.
If the exec fails: a message on stderr and exit 127 (not found) or 126 (not runnable).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

# The child runs after pivot_root, where this package and libseccomp may not exist: the
# launcher imports this module (and, if the filter is to be built here, prepare_build's
# modules) beforehand.
from ..engine.plan import Plan

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Mapping, NoReturn, Sequence

NR_SECCOMP = 317  # x86_64
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def prepare_build() -> None:
    """Import what building the filter here needs (pyseccomp, engine.filter): call it
    where the modules can still be found, before pivot_root."""
    from ..engine.filter import build_filter  # noqa: F401
    from ..engine.libseccomp import load

    load()


def load_bpf(bpf: bytes, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, prog) for classic-BPF `bpf` (struct
    sock_filter[], 8 bytes each, as libseccomp exports it); the return value (the
    listener with SECCOMP_FILTER_FLAG_NEW_LISTENER)."""
    if not bpf or len(bpf) % 8:
        raise ValueError("not a classic-BPF program")
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    r = _libc.syscall(NR_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(e)}")
    return r

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def resolve_command(cmd: str, env: Mapping[str, str]) -> str | None:
    """execvp's search, done before the filter is loaded: a path with a slash is used
    as given; otherwise the first executable regular file in PATH."""
    if "/" in cmd:
        return cmd
    for d in (env.get("PATH") or DEFAULT_PATH).split(":"):
        cand = os.path.join(d or ".", cmd)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def lowest_free_fd(assume_closed: int) -> int:
    """The descriptor the kernel will hand out next, once `assume_closed` is closed
    (probed with fstat: no /proc needed in the sandbox)."""
    fd = 0
    while fd != assume_closed and _is_open(fd):
        fd += 1
    return fd


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _die(msg: str, code: int) -> NoReturn:
    try:
        os.write(2, f"sandboxctl: {msg}\n".encode(errors="replace"))
    finally:
        os._exit(code)


def load_and_exec(plan: Plan, argv: Sequence[str], env: Mapping[str, str],
                  report_fd: int, bpf: bytes | None = None) -> NoReturn:
    if plan.launch.platform == "ptrace":  # reports -1 (no listener); see platform_ptrace
        from .platform_ptrace import child_load_and_exec

        child_load_and_exec(plan, argv, dict(env), report_fd)
    try:
        if not argv:
            _die("no command to run (give one after `--` or set process.command)", 127)
        flt = pyseccomp = None
        if bpf is None:
            from ..engine.filter import build_filter
            from ..engine.libseccomp import load

            pyseccomp = load()
            flt = build_filter(plan, "seccomp-notify")
            try:
                # a binary search over syscall numbers instead of a linear chain: allowed
                # calls (never named by a rule) pass in O(log rules) comparisons
                flt.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)
            except (OSError, AttributeError):
                pass  # older libseccomp: the linear filter is just as correct
        path = resolve_command(argv[0], env)
        if path is None:
            _die(f"{argv[0]}: command not found in the sandbox", 127)
        env_list = {k: v for k, v in env.items()}
        predicted = lowest_free_fd(report_fd)
        os.write(report_fd, f"{predicted}\n".encode())
        os.close(report_fd)
        if flt is None:
            actual = load_bpf(bpf, SECCOMP_FILTER_FLAG_NEW_LISTENER)  # type: ignore[arg-type]
        else:
            flt.load()
            actual = _notify_fd(pyseccomp, flt)
        if actual >= 0 and actual != predicted:
            # Something took the predicted slot: move the listener there (still CLOEXEC).
            os.dup2(actual, predicted, inheritable=False)
            os.close(actual)
    except SystemExit:
        raise
    except BaseException as exc:  # anything before exec: the child must not go on
        _die(f"cannot load the sandbox's seccomp filter: {exc}", 126)
    try:
        os.execve(path, list(argv), env_list)
    except OSError as exc:
        code = 127 if exc.errno in (_errno.ENOENT, _errno.ENOTDIR) else 126
        _die(f"{argv[0]}: cannot run: {exc.strerror}", code)
    _die("execve returned", 126)  # pragma: no cover


def _notify_fd(pyseccomp, flt) -> int:
    lib = getattr(pyseccomp, "_libseccomp", None)
    raw = getattr(flt, "_filter", None)
    if lib is None or raw is None or not hasattr(lib, "seccomp_notify_fd"):
        return -1
    return int(lib.seccomp_notify_fd(raw))


__all__ = ["load_and_exec", "load_bpf", "prepare_build", "resolve_command", "lowest_free_fd", "DEFAULT_PATH"]
