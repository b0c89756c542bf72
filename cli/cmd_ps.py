"""List sandbox runs (newest last): id, start time, profile, command, exit status and the
number of refused calls.

examples:
  sandboxctl ps
  sandboxctl ps --json
  sandboxctl ps -n 5
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    parser.add_argument("-n", "--last", type=int, metavar="N", help="only the N newest runs")


def _exit_text(st: dict) -> str:
    if st.get("killed_by"):
        kb = st["killed_by"]
        return f"killed ({kb.get('syscall', '?')})"
    if st.get("signal"):
        import signal

        try:
            return signal.Signals(st["signal"]).name
        except ValueError:
            return f"signal {st['signal']}"
    if st.get("exit_code") is None:
        return "running" if not st.get("ended") else "?"
    return str(st["exit_code"])


def run(args: argparse.Namespace) -> int:
    import time

    from ..sentry.runs import list_runs, read_events, read_status

    rows = []
    runs = list_runs()
    if args.last:
        runs = runs[-args.last:]
    for d in runs:
        st = read_status(d)
        denials = sum(1 for e in read_events(d) if e.get("action") in ("deny", "kill"))
        rows.append({
            "id": st.get("run", d.name), "started": st.get("started"),
            "profile": st.get("profile_name") or st.get("profile"),
            "command": st.get("command") or [], "exit_code": st.get("exit_code"),
            "signal": st.get("signal"), "killed_by": (st.get("killed_by") or {}).get("syscall"),
            "exit": _exit_text(st), "denials": denials, "dir": str(d),
        })
    if args.json:
        from .output import print_json

        print_json(rows)
        return 0
    from .output import print_table

    def when(t) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "?"

    print_table(None, ["RUN", "STARTED", "PROFILE", "COMMAND", "EXIT", "DENIALS"],
                [(r["id"], when(r["started"]), r["profile"], " ".join(r["command"]), r["exit"],
                  r["denials"]) for r in rows],
                styles=["cyan", None, None, None, None, "red"])
    return 0
