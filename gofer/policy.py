"""Path rules: `deny` and `readonly` globs over canonical sandbox paths, synthetic files.

Glob syntax: `*` and `?` match within one path component, `[...]` a character class,
`**` any number of components (also none). A rule matches a path when it matches the path
or any of its ancestors, so denying `/secret` hides `/secret/a/b` too. The Gofer checks the
canonical path (symlinks expanded, `..` applied) before it touches the file.
"""

from __future__ import annotations

import re

from ..engine.plan import GoferConfig, PathRule, SyntheticFile
from ..engine.record import record

# What a refusal names as its reason (wire protocol: Reply.rule_kind)
RULE_NONE = 0
RULE_DENY = 1
RULE_READONLY = 2
RULE_MAGICLINK = 3
RULE_SYNTHETIC = 4


def glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                i += 2
                if i < n and glob[i] == "/":  # "**/" : zero or more whole components
                    out.append("(?:[^/]*/)*")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = glob.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _literal_dir(glob: str) -> str:
    """"/srv/secret" for "/srv/secret/**", "/home" for "/home/*/.ssh": the deepest
    directory every match lies under."""
    cut = len(glob)
    for ch in "*?[":
        k = glob.find(ch)
        if k >= 0:
            cut = min(cut, k)
    lit = glob[:cut]
    if cut < len(glob):
        lit = lit[:lit.rfind("/")] if "/" in lit else ""
    return lit.rstrip("/") or "/"


def _normalize_glob(glob: str) -> str:
    glob = glob.rstrip("/") or "/"
    return glob


@record
class RuleSet:
    """One ordered list of glob rules compiled to a single regex with a group per rule."""

    rules: tuple[PathRule, ...]
    regex: re.Pattern[str] | None
    prefixes: tuple[str, ...] = ()  # the literal directory each glob starts with

    @classmethod
    def build(cls, rules: tuple[PathRule, ...]) -> "RuleSet":
        if not rules:
            return cls((), None)
        parts = [f"(?P<r{i}>{glob_to_regex(_normalize_glob(r.glob))})" for i, r in enumerate(rules)]
        # "(?:/.*)?": a rule also matches everything under what it names, in one match
        rx = re.compile("(?:" + "|".join(parts) + r")(?:/.*)?\Z", re.DOTALL)
        return cls(tuple(rules), rx, tuple(_literal_dir(r.glob) for r in rules))

    def may_match_under(self, path: str) -> bool:
        """Could a rule match something under directory `path`? (Its literal directory
        is inside `path`, or `path` is inside the part of the tree its wildcards span.)"""
        d = path.rstrip("/")
        for p in self.prefixes:
            if p == "/" or (p + "/").startswith(d + "/") or (d + "/").startswith(p + "/"):
                return True
        return False

    def match(self, path: str) -> int:
        """Index of the first rule matching `path` or one of its ancestors; -1 if none."""
        rx = self.regex
        if rx is None:
            return -1
        m = rx.match(path)
        if m is None:
            return -1
        return int(m.lastgroup[1:]) if m.lastgroup else -1  # type: ignore[index]


@record
class Policy:
    """The Gofer's path rules and synthetic files, compiled."""

    deny: RuleSet
    readonly: RuleSet
    synthetic: dict[str, SyntheticFile]

    @classmethod
    def from_config(cls, cfg: GoferConfig,
                    extra_synthetic: tuple[SyntheticFile, ...] = ()) -> "Policy":
        synth = {f.path: f for f in (*extra_synthetic, *cfg.synthetic_files)}
        return cls(RuleSet.build(cfg.deny), RuleSet.build(cfg.readonly), synth)

    def rule(self, kind: int, index: int) -> PathRule | None:
        if kind == RULE_DENY and 0 <= index < len(self.deny.rules):
            return self.deny.rules[index]
        if kind == RULE_READONLY and 0 <= index < len(self.readonly.rules):
            return self.readonly.rules[index]
        return None


__all__ = ["RULE_NONE", "RULE_DENY", "RULE_READONLY", "RULE_MAGICLINK", "RULE_SYNTHETIC",
           "glob_to_regex", "RuleSet", "Policy"]
