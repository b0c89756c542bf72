"""Syscall groups (`@default`, `@file-io`, ...): data in profiles/groups.yaml, expanded here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .builtins import profiles_dir  # (also imported from here)
from .errors import Diagnostic, ProfileError




@dataclass(frozen=True)
class Group:
    """A named set of syscalls from profiles/groups.yaml."""

    name: str
    description: str
    members: tuple[str, ...]  # syscall names and "@group" references, as written


@lru_cache(maxsize=4)
def load_groups(path: str | None = None) -> dict[str, Group]:
    """Every group defined in groups.yaml, by name (without the @)."""
    file = Path(path) if path else profiles_dir() / "groups.yaml"
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ProfileError([Diagnostic(str(file), 1, 1, f"cannot read the syscall groups: {exc.strerror}",
                                       hint="reinstall sandboxctl")]) from None
    # Parsing YAML costs ~50 ms; keep the parsed table next to the Plan cache.
    from .cache import cache_dir

    import hashlib  # here, not at the top: `apply` imports this module but never comes here

    cached = str(cache_dir() / f"groups-{hashlib.sha256(data).hexdigest()[:32]}.json")
    from .cache import read_trusted, write_private

    raw = read_trusted(cached)
    if raw is not None:
        try:
            table = json.loads(raw)
            return {n: Group(n, g["description"], tuple(g["syscalls"])) for n, g in table.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    out = _parse_groups(file, data)
    write_private(cached, json.dumps({g.name: {"description": g.description,
                                               "syscalls": list(g.members)}
                                      for g in out.values()}).encode())
    return out


def _parse_groups(file: Path, data: bytes) -> dict[str, Group]:
    from .yamlload import load_text

    root = load_text(data.decode("utf-8", "replace"), str(file))
    table = root.get("groups")
    if table is None or not table.is_map:
        raise ProfileError([Diagnostic(str(file), 1, 1, "groups.yaml needs a `groups:` mapping")])
    out: dict[str, Group] = {}
    for name, node in table.items():
        calls = node.get("syscalls")
        desc = node.get("description")
        out[name] = Group(
            name,
            str(desc.value) if desc is not None else "",
            tuple(str(n.value) for n in (calls.seq() if calls is not None else [])),
        )
    return out


class GroupCycle(Exception):
    def __init__(self, chain: list[str]) -> None:
        super().__init__(" -> ".join("@" + c for c in chain))
        self.chain = chain


def expand(name: str, groups: dict[str, Group] | None = None) -> tuple[str, ...]:
    """The syscall names in group `name` (with or without @), nested groups expanded,
    in first-mention order without repeats. KeyError for an unknown group."""
    groups = groups if groups is not None else load_groups()
    out: list[str] = []
    seen: set[str] = set()

    def walk(g: str, chain: list[str]) -> None:
        if g in chain:
            raise GroupCycle(chain + [g])
        for m in groups[g].members:
            if m.startswith("@"):
                walk(m[1:], chain + [g])
            elif m not in seen:
                seen.add(m)
                out.append(m)

    walk(name.lstrip("@"), [])
    return tuple(out)


__all__ = ["Group", "GroupCycle", "load_groups", "expand", "profiles_dir"]
