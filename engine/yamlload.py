"""Load a profile file into a positioned Node tree (ruamel.yaml's composer, positions kept).

Refused with a clear, positioned error: non-UTF-8 bytes, empty documents, tabs used for
indentation, duplicate keys, anchors/aliases and merge keys (`<<`), several documents in
one file, and a top level that is not a mapping. Profiles are reviewed in diffs: every
value must be spelled out where it applies (use `extends` to share).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import Diagnostic, ProfileError
from .node import Loc, Node

_T = "tag:yaml.org,2002:"


def _tag_name(tag: Any) -> str:
    return str(getattr(tag, "value", tag) or "")


class _Builder:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()
        self.diags: list[Diagnostic] = []
        self.seen: set[int] = set()

    def loc(self, mark: Any) -> Loc:
        line = mark.line
        text = self.lines[line].strip() if 0 <= line < len(self.lines) else ""
        return Loc(self.file, line + 1, mark.column + 1, text)

    def err(self, loc: Loc, message: str, path: str = "", hint: str | None = None) -> None:
        self.diags.append(Diagnostic(loc.file, loc.line, loc.col, message, path, hint))

    def build(self, n: Any, path: str, key_loc: Loc | None = None) -> Node:
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        loc = self.loc(n.start_mark)
        tag = _tag_name(n.tag)
        local_tag = tag if tag.startswith("!") and not tag.startswith("!!") else None
        if id(n) in self.seen or getattr(n, "anchor", None):
            if id(n) in self.seen:
                self.err(key_loc or loc, "aliases (*name) are not supported in profiles", path,
                         "write the value out, or share it through `extends`")
                return Node(None, loc, key_loc)
            else:
                self.err(loc, f"anchors (&{_tag_name(n.anchor)}) are not supported in profiles",
                         path, "write the value out, or share it through `extends`")
        self.seen.add(id(n))
        if isinstance(n, MappingNode):
            out: dict[str, Node] = {}
            for k, v in n.value:
                kloc = self.loc(k.start_mark)
                ktag = _tag_name(k.tag)
                if ktag == _T + "merge":
                    self.err(kloc, "merge keys (<<) are not supported in profiles", path,
                             "write the keys out, or share them through `extends`")
                    continue
                if isinstance(k, (MappingNode, SequenceNode)):
                    self.err(kloc, "a key must be a plain string", path)
                    continue
                key = str(k.value)
                sub = f"{path}.{key}" if path else key
                if key in out:
                    first = out[key].key_loc
                    self.err(kloc, f"duplicate key {key!r}", sub,
                             f"first defined at line {first.line}" if first else None)
                    continue
                out[key] = self.build(v, sub, kloc)
            return Node(out, loc, key_loc, local_tag)
        if isinstance(n, SequenceNode):
            items = [self.build(v, f"{path}[{i}]") for i, v in enumerate(n.value)]
            return Node(items, loc, key_loc, local_tag)
        return Node(_scalar(tag, n.value), loc, key_loc, local_tag)


def _scalar(tag: str, text: str) -> Any:
    if tag == _T + "null":
        return None
    if tag == _T + "bool":
        return text.lower() in ("true", "yes", "on")
    if tag == _T + "int":
        t = text.replace("_", "")
        try:
            return int(t, 0)
        except ValueError:
            try:
                return int(t, 10)
            except ValueError:
                return text
    if tag == _T + "float":
        t = text.lower().replace("_", "")
        if t in (".inf", "+.inf"):
            return math.inf
        if t == "-.inf":
            return -math.inf
        if t == ".nan":
            return math.nan
        try:
            return float(t)
        except ValueError:
            return text
    return text


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ProfileError([Diagnostic(
            file, line, col, f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x})",
            hint="save the profile as UTF-8")]) from None


def load_text(text: str, file: str) -> Node:
    """Parse YAML text into a Node tree; raise ProfileError listing every problem."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    if text.startswith("\ufeff"):
        text = text[1:]
    yaml = YAML(typ="rt")
    try:
        docs = list(yaml.compose_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        hint = None
        lines = text.splitlines()
        if "\t" in problem or (mark and 0 <= mark.line < len(lines) and "\t" in lines[mark.line]):
            problem = "a tab character; YAML indentation must use spaces"
            if mark and 0 <= mark.line < len(lines):
                tab = lines[mark.line].find("\t")
                if tab >= 0:
                    col = tab + 1
            hint = "replace the tabs with spaces"
        raise ProfileError([Diagnostic(file, line, col, f"invalid YAML: {problem}", hint=hint)]) from None
    except (YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise ProfileError([Diagnostic(file, 1, 1, f"invalid YAML: {exc}")]) from None
    docs = [d for d in docs if d is not None]
    if not docs:
        raise ProfileError([Diagnostic(
            file, 1, 1, "the profile is empty",
            hint="start from `apiVersion: sandboxctl/v1`, `kind: SandboxProfile` (see `sandboxctl profiles`)")])
    b = _Builder(file, text)
    if len(docs) > 1:
        loc = b.loc(docs[1].start_mark)
        raise ProfileError([Diagnostic(file, loc.line, loc.col,
                                       "a profile file holds one YAML document, found several",
                                       hint="split the documents into separate files")])
    try:
        root = b.build(docs[0], "")
    except RecursionError:
        raise ProfileError([Diagnostic(file, 1, 1, "the document is nested too deeply")]) from None
    if b.diags:
        raise ProfileError(b.diags)
    if not root.is_map:
        raise ProfileError([Diagnostic(file, root.loc.line, root.loc.col,
                                       "the profile must be a mapping (key: value lines)",
                                       hint="start from `apiVersion: sandboxctl/v1`")])
    return root


def load_file(path: str | Path, display: str | None = None) -> Node:
    """Read and parse a profile file. `display` is the file name used in positions."""
    p = Path(path)
    name = display or str(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ProfileError([Diagnostic(name, 1, 1, "no such profile file",
                                       hint="check the path, or list built-in profiles with `sandboxctl profiles`")]) from None
    except IsADirectoryError:
        raise ProfileError([Diagnostic(name, 1, 1, "this is a directory, not a profile file")]) from None
    except OSError as exc:
        raise ProfileError([Diagnostic(name, 1, 1, f"cannot read the profile: {exc.strerror}")]) from None
    return load_text(_decode(data, name), name)


__all__ = ["load_text", "load_file"]
