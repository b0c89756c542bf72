"""List the built-in profiles (usable as `extends: NAME` and `sandboxctl compile NAME`).

examples:
  sandboxctl profiles
  sandboxctl profiles --json
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def run(args: argparse.Namespace) -> int:
    from ..engine.extends import builtin_names, builtin_path, display_name
    from ..engine.yamlload import load_file

    rows = []
    for name in builtin_names():
        p = builtin_path(name)
        assert p is not None
        doc = load_file(p, display_name(p))
        desc = doc.at("metadata", "description")
        ext = doc.get("extends")
        rows.append({"name": name, "file": display_name(p),
                     "extends": ext.value if ext is not None else None,
                     "description": desc.value if desc is not None else ""})
    if args.json:
        from .output import print_json

        print_json(rows)
        return 0
    from .output import print_table

    print_table("built-in profiles", ["name", "extends", "file", "description"],
                [[r["name"], r["extends"] or "", r["file"], r["description"]] for r in rows])
    return 0
