"""Why was a call refused, which rule did it, and what is the smallest change that allows it.

With no argument: the latest run's denials; with a RUN id (or a unique prefix): that
run's. Each distinct denial shows the call as strace prints it, how many times it
happened, the rule (file:line and its text), what the call is for, the risk of allowing
it, and a YAML snippet to add to the profile -- or the advice not to, for critical calls.

With --profile: what that profile WOULD do with a syscall (and its arguments), a path
or a host:port, and why.

examples:
  sandboxctl explain                       # the latest run
  sandboxctl explain 20261122-063012-3f9a  # one run
  sandboxctl explain --profile app.yaml socket AF_INET SOCK_STREAM
  sandboxctl explain --profile app.yaml /etc/shadow
  sandboxctl explain --profile app.yaml example.com:443
  sandboxctl explain --json
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="RUN|SYSCALL|PATH|HOST:PORT",
                        help="a run id (default: the latest run); with --profile a syscall, "
                             "a path or a host:port")
    parser.add_argument("args", nargs="*", metavar="ARG",
                        help="with --profile and a syscall: its arguments (numbers or "
                             "constants such as AF_INET, O_WRONLY|O_CREAT)")
    parser.add_argument("--profile", "-p", metavar="PROFILE",
                        help="answer for this profile (a file, a built-in name or a compiled "
                             "Plan .json) instead of a recorded run")
    parser.add_argument("--udp", action="store_true", help="with HOST:PORT: a UDP destination")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--apply", metavar="PROFILE",
                        help="merge the suggestions into PROFILE (in place, after checking the "
                             "result compiles); critical calls are never added")


def run(args: argparse.Namespace) -> int:
    from ..engine.risk import load_risk

    book = load_risk()
    if args.profile:
        return _hypothetical(args, book)
    from ..engine.errors import SandboxctlError

    if args.args:
        raise SandboxctlError("arguments after the run id need --profile.",
                              hint="for example: sandboxctl explain --profile app.yaml socket AF_INET")
    from ..engine.explain import explain_run, load_run
    from ..sentry.runs import find_run

    t = args.target or ""
    if t.startswith("/") or ":" in t:
        raise SandboxctlError(f"{t!r} is a question about a profile, not a run id.",
                              hint=f"add the profile: sandboxctl explain --profile PROFILE {t}")
    run_dir = find_run(args.target)
    denials = explain_run(run_dir, book)
    _, _, status = load_run(run_dir)
    if args.apply:
        _apply(args.apply, denials)
    if args.json:
        from .output import print_json

        print_json({"run": run_dir.name, "status": status,
                    "denials": [d.to_dict() for d in denials]})
        return 0
    _print_run(run_dir.name, status, denials)
    return 0


def _apply(profile: str, denials) -> None:
    import os
    import tempfile

    from ..engine.compile import compile_profile
    from ..engine.explain import merge_snippets

    with open(profile, encoding="utf-8") as fh:
        text = fh.read()
    lines = set()
    for den in denials:
        if den.remove_where:
            file, line, _col = den.remove_where.rsplit(":", 2)
            if os.path.exists(file) and os.path.samefile(file, profile):
                lines.add(int(line))
    merged = merge_snippets(text, [d.suggestion for d in denials], lines)
    d = os.path.dirname(os.path.abspath(profile))
    fd, tmp = tempfile.mkstemp(prefix=".explain-", suffix=".yaml", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(merged)
        compile_profile(tmp, display=profile)  # raises ProfileError: the file is left as it was
        os.replace(tmp, profile)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sys.stderr.write(f"sandboxctl: wrote the suggestions into {profile}\n")


def _hypothetical(args: argparse.Namespace, book) -> int:
    from ..engine.errors import SandboxctlError
    from ..engine.explain import explain_dest, explain_path, explain_syscall

    if not args.target:
        raise SandboxctlError("--profile needs something to ask about.",
                              hint="give a syscall (socket AF_INET), a path (/etc/passwd) or host:port")
    from .cmd_apply import load_plan  # a profile file, a built-in name, or a Plan .json

    plan = load_plan(args.profile)
    t = args.target
    if t.startswith("/"):
        ans = explain_path(plan, t, book)
    elif ":" in t:
        ans = explain_dest(plan, t, book, "udp" if args.udp else "tcp")
    else:
        ans = explain_syscall(plan, t, args.args, book)
    if args.json:
        from .output import print_json

        print_json(ans.to_dict())
        return 0
    out = sys.stdout
    verdict = "allowed" if ans.allowed else "refused"
    out.write(f"{ans.query}: {verdict} ({ans.outcome})\n")
    out.write(f"  why:  {ans.why}\n")
    if ans.rule_where or ans.rule_text:
        out.write(f"  rule: {ans.rule_where}  {ans.rule_text}\n")
    if ans.purpose:
        out.write(f"  for:  {ans.purpose}\n")
    if ans.risk and not ans.allowed:
        out.write(f"  risk if allowed: {ans.risk}: {ans.risk_why}\n")
    if ans.advice:
        out.write(f"  {ans.advice}\n")
    if ans.suggestion:
        out.write(_indent(ans.suggestion))
    return 0


def _indent(snippet: str) -> str:
    return "".join(f"    {ln}\n" for ln in snippet.splitlines())


def _print_run(run_id: str, status: dict, denials) -> None:
    out = sys.stdout
    cmd = " ".join(status.get("command") or [])
    ended = status.get("exit_code")
    sig = status.get("signal")
    how = f"exit {ended}" if ended is not None else (f"signal {sig}" if sig else "running")
    out.write(f"run {run_id}: {cmd} ({how}); profile {status.get('profile', '?')}\n")
    if not denials:
        out.write("no denials recorded in this run\n")
        return
    n = sum(d.count for d in denials)
    out.write(f"{len(denials)} distinct denial{'s' if len(denials) != 1 else ''}, {n} in all\n")
    for i, d in enumerate(denials, 1):
        what = d.action + (f" {d.errno}" if d.errno else "")
        out.write(f"\n{i}. {d.call}  ×{d.count}  → {what}\n")
        for ex in d.examples[1:3]:
            out.write(f"   also: {ex}\n")
        rule = d.rule_where + (f"  {d.rule_text}" if d.rule_text else "")
        out.write(f"   rule: {rule or 'the default action'}\n")
        out.write(f"   for:  {d.purpose}\n")
        out.write(f"   risk if allowed: {d.risk}: {d.risk_why}\n")
        out.write(f"   {d.advice}\n")
        if d.suggestion:
            out.write(_indent(d.suggestion))
