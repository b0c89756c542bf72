"""`sandboxctl`: parse, call the engine or the runtime, render. Nothing else lives here.

Each command is a module `sandboxctl.cli.cmd_<name>` with two functions:

    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int          # the exit status

Modules keep heavy imports (rich, jsonschema, pyroute2, ptrace) inside run(), so
`sandboxctl --help` and `sandboxctl apply` start fast.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import NoReturn
    import argparse

from ..engine.errors import SandboxctlError

# name -> (module, one-line help). The order is the order in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "apply": ("cmd_apply", "run a command in the sandbox a profile describes"),
    "validate": ("cmd_validate", "check profiles and report every error at file:line:col"),
    "compile": ("cmd_compile", "print the Plan and the seccomp filter a profile compiles to"),
    "diff": ("cmd_diff", "say what got riskier between two profiles (files or git revisions)"),
    "explain": ("cmd_explain", "why was a call denied, which rule did it, what to change"),
    "learn": ("cmd_learn", "run a command under a recording profile and write a minimal profile"),
    "syscalls": ("cmd_syscalls", "print the syscall table, groups and what the Sentry implements"),
    "profiles": ("cmd_profiles", "list the built-in profiles"),
    "ps": ("cmd_ps", "list sandbox runs"),
    "logs": ("cmd_logs", "print a run's events"),
}


def _load(name: str):
    module, _ = COMMANDS[name]
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith(module):
            return None
        raise


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    import argparse

    _Formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="sandboxctl",
        description="Run untrusted code behind two layers of isolation, described by one YAML profile.",
        epilog="examples:\n  sandboxctl apply profiles/default.yaml -- uname -a\n"
        "  sandboxctl validate profiles/examples/*.yaml\n"
        "  sandboxctl explain            # the latest run's denials\n\n"
        "`sandboxctl COMMAND --help` shows each command's options and examples.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version="sandboxctl 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text),
                           formatter_class=_Formatter)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def _exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown (~20-40 ms of freeing every
    module's objects). Only for `apply`, which has released everything it made by now."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code & 0xFF)


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if from_command_line and argv[:1] == ["apply"]:
        # A short-lived process: no collector passes during start-up (the imports make
        # thousands of objects); the launcher freezes them before it forks the Sentry.
        gc.disable()
    only = argv[0] if argv and argv[0] in COMMANDS else None
    args = None
    if only == "apply":
        # the common `apply` command lines without argparse (~5 ms of start-up)
        mod = _load("apply")
        args = mod.parse_fast(argv[1:]) if mod is not None else None
        if args is not None:
            args._module = mod
    if args is None:
        # Build only the sub-parser that is asked for: start-up cost matters for apply.
        parser = build_parser(only)
        args = parser.parse_args(argv)
        mod = getattr(args, "_module", None)
        if mod is None:
            parser.print_help()
            return 0 if not argv else 2
    try:
        code = int(mod.run(args) or 0)
    except SandboxctlError as exc:
        from .output import error

        error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    if from_command_line and only == "apply":
        _exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
