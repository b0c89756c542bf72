"""Resolve `extends`: load the chain of profiles a file builds on and merge it.

Merge rules (docs/profile-format.md):
- mappings merge key by key, recursively;
- lists append: the parent's items first, then the child's;
- scalars: the child's value wins;
- a value tagged `!replace` in the child replaces the parent's value whole.
`extends` names a built-in profile (`default`, `python-script`) or a file path relative to
the extending file (`./base.yaml`, `../common/base.yaml`). A cycle is an error showing
the chain. Every merged value keeps the file, line and column it was written at, and its
`depth` (0 for the file asked for, 1 for what it extends, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

# builtin_path and display_name live in .builtins (apply needs them without this
# module's imports) and are imported from here too
from .builtins import builtin_path, display_name, profiles_dir
from .errors import Diagnostic, ProfileError
from .node import Loc, Node

REPLACE_TAG = "!replace"


@dataclass(frozen=True)
class Resolved:
    """A profile with its extends chain merged."""

    root: Node  # the merged document
    file: str  # the file asked for, as displayed
    path: Path  # its absolute host path
    chain: tuple[str, ...]  # displayed files, the asked-for file first
    documents: tuple[Node, ...]  # each file's own document, same order as chain
    paths: tuple[Path, ...] = ()  # each file's absolute host path, same order as chain


def builtin_names() -> list[str]:
    """Names `extends` and `compile_builtin` accept: default.yaml and examples/*.yaml."""
    d = profiles_dir()
    names = [p.stem for p in sorted(d.glob("*.yaml")) if p.stem not in ("groups", "risk")]
    names += [p.stem for p in sorted((d / "examples").glob("*.yaml"))]
    return names


def with_depth(node: Node, depth: int) -> Node:
    if isinstance(node.value, dict):
        value: Any = {k: with_depth(v, depth) for k, v in node.value.items()}
    elif isinstance(node.value, list):
        value = [with_depth(v, depth) for v in node.value]
    else:
        value = node.value
    return Node(value, node.loc, node.key_loc, node.tag, depth)


def merge(parent: Node, child: Node) -> Node:
    """Merge `child` over `parent` by the rules above."""
    if child.tag == REPLACE_TAG:
        return child
    if parent.is_map and child.is_map:
        out = dict(parent.value)
        for k, v in child.value.items():
            out[k] = merge(out[k], v) if k in out else v
        return Node(out, child.loc, child.key_loc, child.tag, child.depth)
    if parent.is_seq and child.is_seq:
        return Node(parent.value + child.value, child.loc, child.key_loc, child.tag, child.depth)
    return child


def _target(ref: Node, base: Path, display_base: str) -> tuple[Path, str]:
    name = ref.value
    if not isinstance(name, str) or not name:
        raise ProfileError([Diagnostic(ref.loc.file, ref.loc.line, ref.loc.col,
                                       "`extends` must be a built-in profile name or a relative file path",
                                       "extends", "for example `extends: default`")])
    if "/" in name or name.endswith((".yaml", ".yml")):
        p = Path(name)
        if p.is_absolute():
            return p.resolve(), name
        full = (base.parent / p).resolve()
        shown = os.path.normpath(os.path.join(os.path.dirname(display_base), name))
        return full, shown
    found = builtin_path(name)
    if found is None:
        from .syscalls import suggest

        guess = suggest(name, builtin_names())
        raise ProfileError([Diagnostic(
            ref.loc.file, ref.loc.line, ref.loc.col,
            f"unknown built-in profile {name!r} in `extends`", "extends",
            f"did you mean {guess!r}?" if guess else
            f"built-in profiles: {', '.join(builtin_names())}; a file path needs ./")])
    return found.resolve(), display_name(found)


def resolve(path: str | Path, display: str | None = None,
            check: Callable[[Node], list[Diagnostic]] | None = None) -> Resolved:
    """Load `path` and everything it extends; merge. `check(document)` is run on every
    file's own document before merging (validation); all diagnostics are raised together."""
    from .yamlload import load_file

    first = Path(path).resolve()
    shown = display or str(path)
    chain_paths: list[Path] = []
    chain_names: list[str] = []
    docs: list[Node] = []
    diags: list[Diagnostic] = []
    cur, cur_name = first, shown
    while True:
        if cur in chain_paths:
            loop = chain_names[chain_paths.index(cur):] + [cur_name]
            ref = docs[-1].get("extends")
            loc = ref.loc if ref is not None else Loc(cur_name, 1, 1)
            raise ProfileError([Diagnostic(loc.file, loc.line, loc.col,
                                           "`extends` makes a cycle: " + " -> ".join(loop),
                                           "extends", "remove one of the `extends` in the chain")])
        doc = load_file(cur, cur_name)
        if check is not None:
            diags.extend(check(doc))
        chain_paths.append(cur)
        chain_names.append(cur_name)
        docs.append(doc)
        ref = doc.get("extends")
        if ref is None:
            break
        if len(docs) > 32:
            raise ProfileError([Diagnostic(ref.loc.file, ref.loc.line, ref.loc.col,
                                           "`extends` chain is longer than 32 profiles", "extends")])
        try:
            cur, cur_name = _target(ref, cur, cur_name)
        except ProfileError as exc:
            raise ProfileError(diags + list(exc.diagnostics)) from None
    if diags:
        raise ProfileError(diags)
    merged: Node | None = None
    for depth in range(len(docs) - 1, -1, -1):
        d = with_depth(docs[depth], depth)
        d = Node({k: v for k, v in d.value.items() if k != "extends"}, d.loc, d.key_loc, d.tag, depth)
        merged = d if merged is None else merge(merged, d)
    assert merged is not None
    return Resolved(merged, shown, first, tuple(chain_names), tuple(docs), tuple(chain_paths))


def apply_overrides(res: Resolved, overrides: Mapping[str, Any]) -> Resolved:
    """Replace values by dotted path: {"process.command": ["sh"], "platform": "ptrace"}.
    Each value replaces whatever the profile had at that path (no list appending)."""
    root = res.root
    for dotted in sorted(overrides):
        loc = Loc("<override>", 1, 1, f"{dotted}={overrides[dotted]!r}")
        root = _set(root, dotted.split("."), _to_node(overrides[dotted], loc), loc)
    return Resolved(root, res.file, res.path, res.chain, res.documents, res.paths)


def _to_node(value: Any, loc: Loc) -> Node:
    if isinstance(value, Mapping):
        return Node({str(k): _to_node(v, loc) for k, v in value.items()}, loc, loc, depth=-1)
    if isinstance(value, (list, tuple)):
        return Node([_to_node(v, loc) for v in value], loc, loc, depth=-1)
    return Node(value, loc, loc, depth=-1)


def _set(node: Node, keys: list[str], value: Node, loc: Loc) -> Node:
    if not keys:
        return value
    base = dict(node.value) if node.is_map else {}
    child = base.get(keys[0]) or Node({}, loc, loc, depth=-1)
    base[keys[0]] = _set(child, keys[1:], value, loc)
    return Node(base, node.loc, node.key_loc, node.tag, node.depth)


__all__ = ["Resolved", "resolve", "merge", "apply_overrides", "builtin_names", "builtin_path",
           "display_name", "REPLACE_TAG"]
