"""Run a command in the sandbox a profile describes, and exit with its status.

The command after `--` replaces the profile's process.command. Nothing is printed but the
program's own output; set-up problems are one message and a hint. With a terminal on
stdin and stdout the program gets a pty of its own (so a shell is interactive).

examples:
  sandboxctl apply profiles/default.yaml -- uname -a
  sandboxctl apply profiles/default.yaml -- bash          # an interactive shell
  sandboxctl apply default -- cat /proc/version            # a built-in profile by name
  sandboxctl compile profiles/default.yaml > plan.json && sandboxctl apply plan.json -- true
  sandboxctl apply --platform ptrace default -- uname -a   # trap by ptrace (docs/platforms.md)
  sandboxctl apply --strace=- --strace-syscalls openat,read default -- cat /etc/hostname
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

from ..engine.record import record

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any
    import argparse


@record
class _Option:
    """One option of `apply`. add_arguments gives these to argparse; parse_fast reads
    the common command lines with the same table, without argparse."""

    flag: str
    kind: str  # "flag" (store_true), "value", "choice", "optional" (nargs="?")
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    const: str | None = None  # "optional": the value when none is given
    metavar: str | None = None


_OPTIONS = (
    _Option("--debug", "flag", False, "write the Sentry's log (sentry.log in the run directory)"),
    _Option("--no-cache", "flag", False, "compile the profile again even if a cached Plan matches"),
    _Option("--platform", "choice", None,
            "how trapped calls reach the Sentry (default: the profile's platform, else "
            "seccomp-notify); ptrace works without user notification",
            choices=("seccomp-notify", "ptrace")),
    _Option("--strace", "optional", None,
            "log system calls with decoded arguments, result and duration to the run's "
            "strace.log, or to stderr with --strace=-; on ptrace every call, on "
            "seccomp-notify only the calls that reach the Sentry", const="log", metavar="-"),
    _Option("--strace-syscalls", "value", None,
            "with --strace: only these system calls (e.g. openat,read)", metavar="A,B,C"),
    _Option("--tty", "choice", "auto",
            "give the program a pty: auto (when stdin and stdout are terminals), always, never",
            choices=("auto", "always", "never")),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import argparse

    parser.add_argument("profile", help="profile file, built-in profile name, or a Plan (.json)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the command to run (after --); default: the profile's process.command")
    for o in _OPTIONS:
        kw: dict[str, Any] = {"help": o.help}
        if o.kind == "flag":
            kw["action"] = "store_true"
        else:
            kw["default"] = o.default
            if o.choices:
                kw["choices"] = o.choices
            if o.kind == "optional":
                kw.update(nargs="?", const=o.const)
            if o.metavar:
                kw["metavar"] = o.metavar
        parser.add_argument(o.flag, **kw)


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def parse_fast(argv: list[str]) -> SimpleNamespace | None:
    """The arguments of `apply` for the common command lines, without argparse (its
    import, its parser and gettext's lookups are ~5 ms of every run's start-up):
    `[OPTION...] PROFILE [-- COMMAND...]` and `[OPTION...] PROFILE COMMAND...` with a
    COMMAND that does not start with "-" and holds no "--". Options are the exact names
    of _OPTIONS (`--opt=V` or `--opt V`; --strace only as `--strace=V`). Anything else
    (help, abbreviations, a bad choice, options after the profile) gives None, and the
    caller asks argparse, which also words the errors. The result is the one argparse
    gives (tests compare the two)."""
    opts = {o.flag: o for o in _OPTIONS}
    ns: dict[str, Any] = {_dest(o.flag): o.default for o in _OPTIONS}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        o = opts.get(name)
        if o is None:
            return None
        if o.kind == "flag":
            if eq:
                return None
            ns[_dest(name)] = True
            i += 1
            continue
        if not eq:
            if o.kind == "optional" or i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            value = argv[i + 1]
            i += 1
        if o.choices and value not in o.choices:
            return None
        ns[_dest(name)] = value
        i += 1
    if i >= len(argv):
        return None  # no profile: argparse says so
    profile, rest = argv[i], argv[i + 1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
        if "--" in rest:
            return None
    elif rest and (rest[0].startswith("-") or "--" in rest):
        return None
    return SimpleNamespace(profile=profile, command=list(rest), **ns)


def load_plan(ref: str, use_cache: bool = True):
    """A Plan from a compiled .json, a profile file, or a built-in profile name."""
    return load_plan_and_filter(ref, use_cache)[0]


def load_plan_and_filter(ref: str, use_cache: bool = True):
    """load_plan, and the program's seccomp-notify filter as classic BPF when it is known
    (from a profile, through the Plan cache; None for a Plan .json: the program then
    builds it with libseccomp)."""
    from ..engine.errors import SandboxctlError

    if ref.endswith(".json"):
        from ..engine.plan import Plan

        try:
            with open(ref) as fh:
                return Plan.from_json(fh.read()), None
        except OSError as exc:
            raise SandboxctlError(f"cannot read the plan {ref}: {exc.strerror}",
                                  hint="give a profile file, a built-in profile name, or a plan .json") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise SandboxctlError(f"{ref} is not a Plan written by `sandboxctl compile` ({exc})",
                                  hint="recompile it with this version of sandboxctl") from exc
    from ..engine.cache import compile_cached_with_filter

    path, display = ref, None
    if not os.path.exists(ref):
        from ..engine.builtins import builtin_file, display_name

        p = builtin_file(ref)
        if p is not None:
            path, display = p, display_name(p)
    # Through the cache of compiled Plans: an unchanged profile skips YAML and JSON Schema.
    return compile_cached_with_filter(path, display=display, check_filter=True,
                                      use_cache=use_cache)


def run(args: argparse.Namespace) -> int:
    from ..sentry.launch.launcher import run as launch

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    plan, filter_bpf = load_plan_and_filter(args.profile, use_cache=not args.no_cache)
    if getattr(args, "platform", None) and args.platform != plan.launch.platform:
        plan = plan._replace(launch=plan.launch._replace(platform=args.platform))
    strace_syscalls = None
    if getattr(args, "strace_syscalls", None):  # (sentry.strace: imported only when asked)
        from ..sentry.strace import parse_syscall_list

        strace_syscalls = parse_syscall_list(args.strace_syscalls)
    strace_opts = {"strace": getattr(args, "strace", None), "strace_syscalls": strace_syscalls}
    use_pty = {"auto": None, "always": True, "never": False}[args.tty]
    if use_pty and not os.isatty(0):
        use_pty = False
    outcome = launch(plan, command, debug=args.debug, use_pty=use_pty, filter_bpf=filter_bpf,
                     **strace_opts)
    if outcome.sentry_failure:
        sys.stderr.write(f"sandboxctl: {outcome.sentry_failure} (run {outcome.run_id})\n")
    return outcome.exit_code
