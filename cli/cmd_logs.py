"""Print a run's events: execs, refused calls (with the rule that refused them), kills.

RUN is a run id, a unique part of one, or omitted for the latest run.

examples:
  sandboxctl logs                 # the latest run
  sandboxctl logs 20261122-063012-3f9a
  sandboxctl logs --json | jq .
  sandboxctl logs --denials       # refusals and kills only
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", metavar="RUN", help="run id (default: the latest run)")
    parser.add_argument("--json", action="store_true", help="print events as JSON lines, as recorded")
    parser.add_argument("--denials", action="store_true", help="only refused and killed calls")
    parser.add_argument("--sentry-log", action="store_true",
                        help="print the Sentry's debug log (runs started with --debug)")


def format_event(ev: dict) -> str:
    """One line: time, pid/comm, what happened, and the rule."""
    import time

    t = ev.get("time")
    ts = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}" if t else "?"
    who = f"{ev.get('pid', '?')}/{ev.get('comm', '?')}"
    action = ev.get("action", "?")
    what = ev.get("decoded") or ev.get("syscall") or ev.get("kind")
    if action == "deny" and ev.get("errno_name"):
        result = f"= -{ev['errno_name']}"
    elif action == "kill":
        result = "= KILLED"
    else:
        result = f"[{action}]"
    rule = ev.get("rule")
    if rule:
        where = f"  rule {rule['file']}:{rule['line']}:{rule['col']}"
        if rule.get("text"):
            where += f" ({rule['text'].strip()})"
    elif ev.get("kind") == "syscall":
        where = "  (the profile's default)"
    else:
        where = ""
    note = f"  note: {ev['note']}" if ev.get("note") else ""
    return f"{ts} {who:<20} {ev.get('kind', '?'):<7} {what} {result}{where}{note}"


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..engine.errors import SandboxctlError
    from ..sentry.runs import SENTRY_LOG, find_run, read_events, read_status

    d = find_run(args.run)
    if args.sentry_log:
        try:
            sys.stdout.write((d / SENTRY_LOG).read_text())
        except FileNotFoundError:
            raise SandboxctlError(f"run {d.name} has no Sentry log",
                                  hint="start the run with `sandboxctl apply --debug`") from None
        return 0
    out = sys.stdout
    for ev in read_events(d):
        if args.denials and ev.get("action") not in ("deny", "kill"):
            continue
        out.write((json.dumps(ev, sort_keys=True) if args.json else format_event(ev)) + "\n")
    if not args.json:
        st = read_status(d)
        kb = st.get("killed_by")
        if kb:
            out.write(f"# run {d.name}: killed by the Sentry at {kb.get('decoded') or kb.get('syscall')}\n")
        elif st.get("exit_code") is not None or st.get("signal"):
            sig = st.get("signal")
            out.write(f"# run {d.name}: exit {st.get('exit_code') if sig is None else 128 + sig}\n")
    return 0
