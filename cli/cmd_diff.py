"""Say what changed between two profiles, and how much riskier it got.

Both profiles are resolved (extends, groups, defaults) and compiled to Plans first, so
the diff shows what will be enforced, not how the YAML text moved. OLD and NEW are
profile files, built-in profile names (default), or git revisions written REV:path
(as `git show` takes them).

examples:
  sandboxctl diff profiles/app.yaml profiles/app-new.yaml
  sandboxctl diff HEAD~1:profiles/app.yaml profiles/app.yaml
  sandboxctl diff origin/main:profiles/app.yaml HEAD:profiles/app.yaml --format markdown
  sandboxctl diff old.yaml new.yaml --fail-on high     # exit 1 if a change is high or critical
"""

from __future__ import annotations

import argparse

LEVELS = ("info", "low", "medium", "high", "critical")
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD", help="profile file, built-in name or REV:path")
    parser.add_argument("new", metavar="NEW", help="profile file, built-in name or REV:path")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                        help="table (rich on a terminal, tab-separated when piped), markdown "
                             "(a pull-request comment) or json")
    parser.add_argument("--fail-on", choices=LEVELS, default=None, metavar="LEVEL",
                        help="exit 1 when any change reaches LEVEL "
                             "(info, low, medium, high, critical)")
    parser.add_argument("--min-risk", choices=LEVELS, default="info", metavar="LEVEL",
                        help="show only changes at LEVEL or above (the exit status still "
                             "counts every change)")


def run(args: argparse.Namespace) -> int:
    from ..engine.compile import compile_profile
    from ..engine.diff import diff_plans, load_side, max_risk, parse_side, reaches
    from ..engine.risk import level_rank, load_risk

    old_side, new_side = parse_side(args.old), parse_side(args.new)
    old, old_loc = load_side(old_side, compile_profile)
    new, new_loc = load_side(new_side, compile_profile)
    changes = diff_plans(old, new, load_risk(), old_loc, new_loc)
    shown = [c for c in changes if level_rank(c.risk) >= level_rank(args.min_risk)]
    top = max_risk(changes)
    if args.format == "json":
        from .output import print_json

        print_json({"old": args.old, "new": args.new, "max_risk": top,
                    "changes": [c.to_dict() for c in shown]})
    elif args.format == "markdown":
        import sys

        sys.stdout.write(render_markdown(args.old, args.new, shown, top))
    else:
        _print_table(args.old, args.new, shown, top)
    if args.fail_on and reaches(changes, args.fail_on):
        return 1
    return 0


def _summary(changes, top) -> str:
    if not changes:
        return "no changes"
    counts = {}
    for c in changes:
        counts[c.risk] = counts.get(c.risk, 0) + 1
    parts = [f"{counts[lv]} {lv}" for lv in reversed(LEVELS) if lv in counts]
    plural = "s" if len(changes) != 1 else ""
    return f"{len(changes)} change{plural} ({', '.join(parts)}); highest risk: {top}"


def _arrow(before: str, after: str) -> str:
    return f"{before or '—'} → {after or '—'}"


def _lines(c) -> str:
    return " / ".join(x for x in (c.old_where, c.new_where) if x)


def _print_table(old: str, new: str, changes, top) -> None:
    from .output import console, is_tty, print_table

    rows = [(c.risk, c.what, c.subject, c.change, _arrow(c.before, c.after), c.why,
             c.old_where, c.new_where) for c in changes]
    rows = [tuple(x.replace("\n", "\\n").replace("\t", " ") for x in r) for r in rows]
    cols = ("risk", "what", "subject", "change", "before → after", "why", "old line", "new line")
    if not is_tty():
        print_table(f"sandboxctl diff {old} {new}: {_summary(changes, top)}", cols, rows)
        return
    from rich.table import Table

    table = Table(title=f"{old} → {new}", caption=_summary(changes, top), show_lines=True)
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*r, style=_STYLE.get(r[0]))
    console().print(table)


def _md(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def render_markdown(old: str, new: str, changes, top) -> str:
    """A pull-request comment: a summary line and one table row per change."""
    out = [f"### sandboxctl diff: `{old}` → `{new}`", "", f"**{_summary(changes, top)}**", ""]
    if changes:
        out.append("| risk | what | subject | change | before → after | why | old line | new line |")
        out.append("|---|---|---|---|---|---|---|---|")
        for c in changes:
            risk = f"**{c.risk}**" if c.risk in ("critical", "high") else c.risk
            out.append("| " + " | ".join(_md(x) for x in (
                risk, c.what, f"`{c.subject}`", c.change, _arrow(c.before, c.after), c.why,
                c.old_where, c.new_where)) + " |")
        out.append("")
    return "\n".join(out) + "\n"
