"""Check profiles: the schema, names (syscalls, groups, errno, capabilities), mounts,
network settings and the `extends` chain. Every problem is reported at once, at
file:line:col with a did-you-mean where one is close. Exit status 2 if any profile is
invalid.

examples:
  sandboxctl validate profiles/default.yaml
  sandboxctl validate profiles/examples/*.yaml
  sandboxctl validate default python-script        # built-in profiles by name
  sandboxctl validate --json my-profile.yaml | jq '.[0].errors'
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profiles", nargs="+", metavar="PROFILE",
                        help="profile files to check (or built-in profile names)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-cache", action="store_true",
                        help="ignore the cache of profiles already compiled")


def run(args: argparse.Namespace) -> int:
    import os

    from ..engine.cache import compile_cached
    from ..engine.errors import ProfileError
    from ..engine.extends import builtin_path, display_name

    results = []
    for path in args.profiles:
        target, display = path, None
        if not os.path.exists(path) and builtin_path(path) is not None:
            target, display = str(builtin_path(path)), display_name(builtin_path(path))  # type: ignore[arg-type]
        try:
            plan = compile_cached(target, display=display, use_cache=not args.no_cache,
                                  check_filter=True)
            results.append({"file": path, "valid": True, "errors": [],
                            "rules": len(plan.seccomp.rules)})
        except ProfileError as exc:
            results.append({"file": path, "valid": False, "rules": 0, "errors": [
                {"file": d.file, "line": d.line, "col": d.col, "message": d.message,
                 "path": d.path, "hint": d.hint, "severity": d.severity}
                for d in exc.diagnostics]})
    if args.json:
        from .output import print_json

        print_json(results)
    else:
        _render(results)
    return 0 if all(r["valid"] for r in results) else 2


def _render(results: list[dict]) -> None:
    from .output import is_tty

    tty = is_tty()
    if tty:
        from .output import console

        con = console()
    for r in results:
        if r["valid"]:
            line = f"{r['file']}: ok ({r['rules']} seccomp rules)"
            con.print(f"[green]✓[/] {line}") if tty else sys.stdout.write(line + "\n")
            continue
        n = len(r["errors"])
        head = f"{r['file']}: {n} error{'s' if n != 1 else ''}"
        con.print(f"[bold red]✗[/] {head}") if tty else sys.stdout.write(head + "\n")
        for e in r["errors"]:
            at = f" (at {e['path']})" if e["path"] else ""
            where = f"{e['file']}:{e['line']}:{e['col']}"
            if tty:
                from rich.markup import escape

                con.print(f"  [bold]{escape(where)}[/]: [red]error[/]: {escape(e['message'])}"
                          f"[dim]{escape(at)}[/]")
                if e["hint"]:
                    con.print(f"      [yellow]hint:[/] {escape(e['hint'])}")
            else:
                sys.stdout.write(f"{where}: error: {e['message']}{at}\n")
                if e["hint"]:
                    sys.stdout.write(f"    hint: {e['hint']}\n")
