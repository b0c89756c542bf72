"""The positioned document tree: every value of a profile with the file:line:col it came from.

The loader (engine/yamlload.py) builds it; `extends` merges it; validation and the compiler
read it, so every diagnostic and every compiled rule can point back at the profile text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass(frozen=True)
class Loc:
    """A position in a profile file (1-based line and column) and that line's text."""

    file: str
    line: int
    col: int
    text: str = ""

    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Node:
    """One value of the document.

    `value` is dict[str, Node] for a mapping, list[Node] for a sequence, or a plain
    scalar (str, int, float, bool, None). `loc` is where the value starts; `key_loc`
    where its key is (for mapping members); `tag` a local tag such as `!replace`.
    `depth` is how far up the extends chain the value was written (0 = the file asked for).
    """

    value: Any
    loc: Loc
    key_loc: Loc | None = None
    tag: str | None = None
    depth: int = 0

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def get(self, key: str) -> "Node | None":
        if isinstance(self.value, dict):
            return self.value.get(key)
        return None

    def at(self, *path: str | int) -> "Node | None":
        node: Node | None = self
        for p in path:
            if node is None:
                return None
            if isinstance(p, int):
                if not isinstance(node.value, list) or p >= len(node.value):
                    return None
                node = node.value[p]
            else:
                node = node.get(p)
        return node

    def items(self) -> Iterator[tuple[str, "Node"]]:
        if isinstance(self.value, dict):
            yield from self.value.items()

    def seq(self) -> list["Node"]:
        return list(self.value) if isinstance(self.value, list) else []

    def plain(self) -> Any:
        """The value as plain Python data (for JSON Schema and hashing)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def source_loc(self) -> Loc:
        """Where a person would look for this value: its key if it has one."""
        return self.key_loc or self.loc


def path_str(path: tuple[str | int, ...] | list[str | int]) -> str:
    """`syscalls.allow[2].name` from ("syscalls", "allow", 2, "name")."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


__all__ = ["Loc", "Node", "path_str", "field"]
