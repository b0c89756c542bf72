"""Build the host seccomp filter from a Plan with pyseccomp (libseccomp).

The filter is the kernel-side layer: allowed calls never leave the kernel, refused ones
get their errno there, and calls the Plan marks `trap` go to the Sentry, by user
notification (platform seccomp-notify) or by SECCOMP_RET_TRACE (platform ptrace).
Only the native x86_64 ABI is accepted: i386 (`int 0x80`) and x32 calls are killed,
so the filter cannot be sidestepped through another ABI.
"""

from __future__ import annotations

import io
import os

from .decide import decide, rule_matches  # noqa: F401  (here before engine/decide.py)
from .libseccomp import load as _load_pyseccomp
from .plan import ArgCond, DefaultAction, Plan

sc = _load_pyseccomp()

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Literal

    Platform = Literal["seccomp-notify", "ptrace"]
else:
    Platform = str

_OPS = {
    "eq": sc.EQ,
    "ne": sc.NE,
    "lt": sc.LT,
    "le": sc.LE,
    "gt": sc.GT,
    "ge": sc.GE,
    "masked_eq": sc.MASKED_EQ,
}

# SECCOMP_RET_TRACE carries 16 bits of data; the ptrace platform reads it back with
# PTRACE_GETEVENTMSG. We use it to say "this call was trapped by the Plan".
TRACE_DATA = 0x5C  # arbitrary marker


class FilterBuildError(Exception):
    """The Plan's rules cannot be expressed as a seccomp filter."""


def _action_value(action: str, errno: int, trap: bool, platform: Platform) -> int:
    if trap or action == "emulate":
        return sc.NOTIFY if platform == "seccomp-notify" else sc.TRACE(TRACE_DATA)
    if action == "allow":
        return sc.ALLOW
    if action == "log":
        return sc.LOG
    if action == "deny":
        return sc.ERRNO(errno)
    if action == "kill":
        return sc.KILL_PROCESS
    raise FilterBuildError(f"unknown action {action!r}")


def _arg(cond: ArgCond) -> sc.Arg:
    op = _OPS[cond.op]
    if cond.op == "masked_eq":
        return sc.Arg(cond.index, op, cond.mask, cond.value)
    return sc.Arg(cond.index, op, cond.value)


def build_filter(plan: Plan, platform: Platform | None = None) -> sc.SyscallFilter:
    """Return an unloaded libseccomp filter enforcing `plan.seccomp`."""
    platform = platform or plan.launch.platform
    seccomp = plan.seccomp
    if seccomp.arch != "x86_64":
        raise FilterBuildError(f"arch {seccomp.arch!r} is not supported (x86_64 only)")
    default: DefaultAction = seccomp.default
    flt = sc.SyscallFilter(_action_value(default.action, default.errno, default.trap, platform))
    # Another ABI than the native one: kill, never fall through to the default.
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    flt.set_attr(sc.Attr.CTL_NNP, 0)  # the launcher sets no_new_privs itself, in order
    try:
        # A binary tree over syscall numbers: an allowed call pays O(log n) comparisons,
        # not one per rule (libseccomp >= 2.5).
        flt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass
    default_value = _action_value(default.action, default.errno, default.trap, platform)
    for rule in seccomp.rules:
        value = _action_value(rule.action, rule.errno, rule.trap, platform)
        if value == default_value:
            # libseccomp refuses a rule equal to the default action (with or without
            # argument checks); it is implied. engine.compile keeps each syscall's rules
            # consistent with this (see compile.kernel_consistent).
            continue
        try:
            flt.add_rule(value, rule.nr, *(_arg(c) for c in rule.args))
        except OSError as exc:
            where = f" ({rule.source.where()})" if rule.source else ""
            raise FilterBuildError(
                f"cannot add rule for {rule.name}{where}: {exc.strerror or exc}"
            ) from exc
    return flt


def export_pfc(plan: Plan, platform: Platform | None = None) -> str:
    """The filter as libseccomp's pseudo-filter-code text."""
    flt = build_filter(plan, platform)
    import tempfile  # only for compile's output: not on apply's start-up path

    with tempfile.TemporaryFile() as fh:
        flt.export_pfc(fh)
        fh.seek(0)
        return fh.read().decode()


def export_bpf(plan: Plan, platform: Platform | None = None) -> bytes:
    """The filter as raw classic-BPF instructions (struct sock_filter[])."""
    return bpf_of(build_filter(plan, platform))


def bpf_of(flt: sc.SyscallFilter) -> bytes:
    """A built filter's classic-BPF program, as libseccomp would load it (exported to a
    memfd: no tempfile module, no file on disk)."""
    with os.fdopen(os.memfd_create("sandboxctl-bpf", os.MFD_CLOEXEC), "w+b") as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


__all__ = ["build_filter", "export_pfc", "export_bpf", "bpf_of", "rule_matches", "decide",
           "FilterBuildError", "TRACE_DATA", "io"]
