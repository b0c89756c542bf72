"""The profile's `deny` and `readonly` globs, applied by the Sentry itself to a path a
call names, for calls the kernel resolves (execve, AF_UNIX bind/connect).

Such calls are not served through the Gofer: the kernel's layer (deny paths hidden,
read-only mounts) decides them. The Sentry adds what only it can: a refusal with the
rule's errno and an event naming the rule, for an absolute path a rule names, also a path
created after the sandbox started (which the kernel's layer does not hide). Refusing on
what was read is safe: a program that changes the bytes afterwards only gets refused for
a path it did not mean. Whatever is not refused here is left to the kernel (the caller
marks such handlers as observers).
"""

from __future__ import annotations

import errno as E
import json
import posixpath
from typing import Any

from .call import Call, Decision, Errno, SentryContext
from .dispatch_util import read_comm


def _rules(ctx: SentryContext, kind: str) -> Any:
    key = f"path-rules-{kind}"
    rs = ctx.extra.get(key)
    if rs is None:
        from ..gofer.policy import RuleSet

        rules = ctx.plan.gofer.deny if kind == "deny" else ctx.plan.gofer.readonly
        rs = ctx.extra.setdefault(key, RuleSet.build(rules))
    return rs


def normalize(path: str) -> str | None:
    """The lexical absolute form of `path` (as the kernel reads `//` and `..`), or None for
    a relative path (resolved by the kernel against the caller's working directory)."""
    if not path.startswith("/"):
        return None
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def refusal(ctx: SentryContext, call: Call, path: str, *, write: bool, op: str,
            shown: str | None = None) -> Decision | None:
    """Errno (and a file event) when a deny rule names `path`, or, for a call that
    creates or changes it (`write`), a readonly rule; else None."""
    g = ctx.plan.gofer
    if not g.deny and not (write and g.readonly):
        return None
    norm = normalize(path)
    if norm is None:
        return None
    kind, rule, err = "deny", None, 0
    rs = _rules(ctx, "deny")
    i = rs.match(norm)
    if i >= 0:
        rule = rs.rules[i]
        err = rule.errno or E.ENOENT
    elif write and g.readonly:
        rs = _rules(ctx, "readonly")
        i = rs.match(norm)
        if i >= 0:
            kind, rule, err = "readonly", rs.rules[i], E.EROFS
    if rule is None:
        return None
    if ctx.plan.sentry.audit.file_access:
        src = rule.source
        ctx.event({
            "pid": call.pid, "comm": read_comm(call.pid), "kind": "file",
            "syscall": call.name, "nr": call.nr, "args": list(call.args), "path": norm,
            "op": op, "action": "deny", "errno": err,
            "errno_name": E.errorcode.get(err, str(err)),
            "decoded": shown or f"{call.name}({json.dumps(path)})", "reason": kind,
            "rule": None if src is None else {"file": src.file, "line": src.line,
                                              "col": src.col, "text": src.text},
        })
    return Errno(err)


__all__ = ["refusal", "normalize"]
