"""The last step in the sandboxed child: load the Plan's host filter and exec.

    load_and_exec(plan, argv, env, report_fd)   # never returns

Order: build the filter; resolve the command through PATH in the sandbox's env; predict
the listener fd (the lowest free descriptor: the kernel installs the listener there,
O_CLOEXEC, so execve closes it and it never reaches the program); write that number to
`report_fd` and close it; load the filter; execve. The execve itself is trapped: the
Sentry takes the listener with pidfd_getfd, records the exec, and lets it run.
If the exec fails: a message on stderr and exit 127 (not found) or 126 (not runnable).
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Mapping, NoReturn, Sequence

# Imported here, not in load_and_exec: the child runs after pivot_root, where this
# package and libseccomp may not exist; the launcher imports this module beforehand.
from ..engine.libseccomp import load as _load_pyseccomp

pyseccomp = _load_pyseccomp()

from ..engine.filter import build_filter  # noqa: E402 (after pyseccomp, loaded fast)
from ..engine.plan import Plan

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
                  report_fd: int) -> NoReturn:
    if plan.launch.platform == "ptrace":  # reports -1 (no listener); see platform_ptrace
        from .platform_ptrace import child_load_and_exec

        child_load_and_exec(plan, argv, dict(env), report_fd)
    try:
        if not argv:
            _die("no command to run (give one after `--` or set process.command)", 127)
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


__all__ = ["load_and_exec", "resolve_command", "lowest_free_fd", "DEFAULT_PATH"]
