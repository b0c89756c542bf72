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

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", help="profile file, built-in profile name, or a Plan (.json)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the command to run (after --); default: the profile's process.command")
    parser.add_argument("--debug", action="store_true", help="write the Sentry's log (sentry.log in the run directory)")
    parser.add_argument("--no-cache", action="store_true", help="compile the profile again even if a cached Plan matches")
    parser.add_argument("--platform", choices=("seccomp-notify", "ptrace"), default=None,
                        help="how trapped calls reach the Sentry (default: the profile's "
                        "platform, else seccomp-notify); ptrace works without user notification")
    parser.add_argument("--strace", nargs="?", const="log", default=None, metavar="-",
                        help="log system calls with decoded arguments, result and duration to "
                        "the run's strace.log, or to stderr with --strace=-; on ptrace every "
                        "call, on seccomp-notify only the calls that reach the Sentry")
    parser.add_argument("--strace-syscalls", default=None, metavar="A,B,C",
                        help="with --strace: only these system calls (e.g. openat,read)")
    parser.add_argument("--tty", choices=("auto", "always", "never"), default="auto",
                        help="give the program a pty: auto (when stdin and stdout are terminals), always, never")


def load_plan(ref: str, use_cache: bool = True):
    """A Plan from a compiled .json, a profile file, or a built-in profile name."""
    from ..engine.errors import SandboxctlError

    if ref.endswith(".json"):
        from ..engine.plan import Plan

        try:
            with open(ref) as fh:
                return Plan.from_json(fh.read())
        except OSError as exc:
            raise SandboxctlError(f"cannot read the plan {ref}: {exc.strerror}",
                                  hint="give a profile file, a built-in profile name, or a plan .json") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise SandboxctlError(f"{ref} is not a Plan written by `sandboxctl compile` ({exc})",
                                  hint="recompile it with this version of sandboxctl") from exc
    from ..engine.cache import compile_cached

    path, display = ref, None
    if not os.path.exists(ref):
        from ..engine.builtins import builtin_path, display_name

        p = builtin_path(ref)
        if p is not None:
            path, display = str(p), display_name(p)
    # Through the cache of compiled Plans: an unchanged profile skips YAML and JSON Schema.
    return compile_cached(path, display=display, check_filter=True, use_cache=use_cache)


def run(args: argparse.Namespace) -> int:
    from ..sentry.launch.launcher import run as launch

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    plan = load_plan(args.profile, use_cache=not args.no_cache)
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
    outcome = launch(plan, command, debug=args.debug, use_pty=use_pty, **strace_opts)
    if outcome.sentry_failure:
        sys.stderr.write(f"sandboxctl: {outcome.sentry_failure} (run {outcome.run_id})\n")
    return outcome.exit_code
