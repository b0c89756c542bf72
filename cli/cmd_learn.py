"""Run a command under a recording profile and write a minimal profile for it.

The command runs in the sandbox with every call allowed and recorded (the calls that
break the sandbox model stay refused). If it used the network it runs again, with the
destinations it asked for allowed, until it asks for no new ones -- so a command with
side effects may run more than once. The learned profile allows the calls seen (narrowed
by argument where safe), the directories written and the destinations used; critical
calls are left commented out with the reason. It is checked to compile before it is
written.

examples:
  sandboxctl learn -o app.yaml -- python3 app.py
  sandboxctl learn -o pipeline.yaml -- sh -c 'seq 100 | sort -r | head -n 3'
  sandboxctl learn -o client.yaml -- curl -s http://127.0.0.1:8080/
  sandboxctl apply app.yaml          # then run it under what was learned
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="write the learned profile here (default: standard output)")
    parser.add_argument("--name", help="metadata.name of the learned profile")
    parser.add_argument("--rounds", type=int, default=4,
                        help="at most this many recording runs (default 4)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")


def run(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from ..engine.compile import compile_profile
    from ..engine.errors import SandboxctlError
    from ..engine.learn import learn
    from ..engine.risk import load_risk

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SandboxctlError("learn needs a command to run.",
                              hint="for example: sandboxctl learn -o app.yaml -- python3 app.py")

    def progress(msg: str) -> None:
        sys.stderr.write(f"sandboxctl: learn: {msg}\n")
        sys.stderr.flush()

    # Without -o the profile goes to standard output: the command's own output goes to
    # standard error meanwhile, so the two do not mix.
    saved = None
    if not args.output:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    try:
        result = learn(command, load_risk(), name=args.name, max_rounds=max(1, args.rounds),
                       progress=progress)
    finally:
        if saved is not None:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    if not result.observed.calls:
        raise SandboxctlError(
            f"nothing was recorded: {command[0]} did not run in the sandbox "
            f"(exit status {result.exit_code}), so no profile was written.",
            hint="check that the command exists and runs: sandboxctl apply default -- "
                 + " ".join(command))
    out_dir = os.path.dirname(os.path.abspath(args.output)) if args.output else None
    fd, tmp = tempfile.mkstemp(prefix=".learned-", suffix=".yaml", dir=out_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result.profile_text)
        compile_profile(tmp, display=args.output or "<learned>")
        if args.output:
            os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not args.output:
        sys.stdout.write(result.profile_text)
    n_calls = len(result.observed.calls)
    progress(f"{n_calls} distinct calls, {len(result.observed.dests)} destinations, "
             f"{result.rounds} run{'s' if result.rounds != 1 else ''} "
             f"({', '.join(result.run_ids)}); last exit status {result.exit_code}"
             + (f"; wrote {args.output}" if args.output else ""))
    if result.exit_code != 0:
        progress("the command failed while recording: the profile covers only what it did "
                 "before failing")
    return 0
