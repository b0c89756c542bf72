"""Print the x86_64 syscall table with the groups each call belongs to and what the
Sentry does with it, or the syscall groups (profiles/groups.yaml), or one group expanded.

examples:
  sandboxctl syscalls                   # every call: number, groups, Sentry status
  sandboxctl syscalls --groups          # the groups, with their sizes
  sandboxctl syscalls --group file-io   # the calls of @file-io, nested groups expanded
  sandboxctl syscalls --json | jq '.[] | select(.status == "emulated")'
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", metavar="G", help="list the calls of group G (with or without @)")
    parser.add_argument("--groups", action="store_true", help="list the groups")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _sentry_rows() -> dict[str, tuple[str, str, str, str]]:
    try:
        from ..sentry.table import handler_table
    except ImportError:
        return {}
    try:
        return {row[0]: tuple(row) for row in handler_table()}  # type: ignore[misc]
    except Exception:  # the Sentry's table is another part's data; show groups regardless
        return {}


def run(args: argparse.Namespace) -> int:
    from ..engine import syscalls
    from ..engine.errors import SandboxctlError
    from ..engine.groups import expand, load_groups

    groups = load_groups()
    if args.group:
        name = args.group.lstrip("@")
        if name not in groups:
            guess = syscalls.suggest(name, list(groups))
            raise SandboxctlError(f"no syscall group named @{name}",
                                  hint=f"did you mean @{guess}?" if guess else
                                  "list them with `sandboxctl syscalls --groups`")
        names = expand(name, groups)
        rows = [{"name": n, "nr": syscalls.number(n)} for n in names]
        if args.json:
            from .output import print_json

            print_json({"group": name, "description": groups[name].description, "syscalls": rows})
            return 0
        from .output import print_table

        print_table(f"@{name}: {groups[name].description}", ["nr", "name"],
                    [[r["nr"], r["name"]] for r in rows])
        return 0
    if args.groups:
        grows = [{"group": "@" + g.name, "size": len(expand(g.name, groups)),
                  "includes": [m for m in g.members if m.startswith("@")],
                  "description": g.description} for g in groups.values()]
        if args.json:
            from .output import print_json

            print_json(grows)
            return 0
        from .output import print_table

        print_table("syscall groups", ["group", "calls", "includes", "description"],
                    [[r["group"], r["size"], " ".join(r["includes"]), r["description"]] for r in grows])
        return 0
    member_of: dict[str, list[str]] = {}
    for g in groups:
        for n in expand(g, groups):
            member_of.setdefault(n, []).append("@" + g)
    sentry = _sentry_rows()
    rows = []
    for n in syscalls.all_names():
        s = sentry.get(n)
        rows.append({"nr": syscalls.number(n), "name": n, "groups": member_of.get(n, []),
                     "status": s[1] if s else "", "handler": s[2] if s else "",
                     "note": s[3] if s else ""})
    if args.json:
        from .output import print_json

        print_json(rows)
        return 0
    from .output import print_table

    cols = ["nr", "name", "groups"] + (["sentry", "handler", "note"] if sentry else [])
    print_table("x86_64 syscalls", cols,
                [[r["nr"], r["name"], " ".join(r["groups"])] +
                 ([r["status"], r["handler"], r["note"]] if sentry else []) for r in rows])
    return 0
