"""Output for people and machines: rich on a terminal, plain text when piped, JSON on request.

Import this module lazily (rich costs start-up time); commands that print nothing
but a program's output (apply) never import it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence


def is_tty(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def console(stderr: bool = False):  # -> rich.console.Console
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, soft_wrap=not is_tty(stream))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                styles: Sequence[str | None] | None = None) -> None:
    """A rich table on a terminal; tab-separated plain text (with a header) when piped."""
    rows = [["" if c is None else str(c) for c in r] for r in rows]
    if not is_tty():
        out = sys.stdout
        if title:
            out.write(f"# {title}\n")
        out.write("\t".join(columns) + "\n")
        for r in rows:
            out.write("\t".join(r) + "\n")
        return
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for i, c in enumerate(columns):
        table.add_column(c, style=(styles[i] if styles else None))
    for r in rows:
        table.add_row(*r)
    console().print(table)


def error(message: str, hint: str | None = None) -> None:
    """One error line on stderr (red on a terminal)."""
    if is_tty(sys.stderr):
        c = console(stderr=True)
        c.print(f"[bold red]error:[/] {message}")
        if hint:
            c.print(f"[yellow]hint:[/] {hint}")
    else:
        sys.stderr.write(f"sandboxctl: error: {message}\n")
        if hint:
            sys.stderr.write(f"sandboxctl: hint: {hint}\n")
