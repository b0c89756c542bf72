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
    from .output import is_tty, print_table

    def when(t) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "?"

    table = [(r["id"], when(r["started"]), r["profile"] or "", " ".join(r["command"]), r["exit"],
              str(r["denials"])) for r in rows]
    if not is_tty():
        print_table(None, ["RUN", "STARTED", "PROFILE", "COMMAND", "EXIT", "DENIALS"], table)
        return 0
    from rich.table import Table

    from .output import console

    con = console()
    # The run id is what people copy: never wrapped or cut. On a narrow terminal the
    # command gives way first, then STARTED and PROFILE are left out.
    names = ["RUN", "STARTED", "PROFILE", "COMMAND", "EXIT", "DENIALS"]
    short = [(r[0], when_short(rows[i]["started"]), r[2][:16], r[3], r[4], r[5])
             for i, r in enumerate(table)]

    def width(c: int) -> int:
        return max([len(names[c])] + [len(r[c]) for r in short]) + 3  # padding + border

    for cols in ((0, 1, 2, 3, 4, 5), (0, 2, 3, 4, 5), (0, 3, 4, 5)):
        room = con.width - sum(width(c) for c in cols if c != 3) - 4
        if room >= 8:
            break
    room = max(5, room)
    t = Table(show_lines=False)
    for c in cols:
        t.add_column(names[c], no_wrap=True, style={0: "cyan", 5: "red"}.get(c),
                     justify="right" if c == 5 else "left")
    for r in short:
        cmd = r[3] if len(r[3]) <= room else r[3][: room - 1] + "…"
        cells = (r[0], r[1], r[2], cmd, r[4], r[5])
        t.add_row(*(cells[c] for c in cols))
    con.print(t)
    return 0


def when_short(t) -> str:
    import time

    return time.strftime("%m-%d %H:%M:%S", time.localtime(t)) if t else "?"
