"""Validate a profile: the JSON Schema (profiles/schema.json), then the checks a schema
cannot express. Every problem becomes a Diagnostic at file:line:col with the document
path, what was expected, and a did-you-mean where a close name exists.

    check_document(doc)  -> diagnostics for one file's own document (before extends)
    check_resolved(res)  -> diagnostics for the merged profile (network, mounts across files)
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import constants, syscalls
from .errors import Diagnostic
from .extends import Resolved
from .groups import GroupCycle, expand, load_groups, profiles_dir
from .node import Loc, Node, path_str

UTS_FIELD_MAX = 64  # struct utsname fields are 65 bytes with the NUL

_PATTERN_WORDS = {
    "^/": "an absolute path (starting with /)",
    "^CAP_[A-Z_]+$": "a capability name such as CAP_NET_BIND_SERVICE",
    "^E[A-Z0-9]+$": "an errno name such as EPERM",
}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads((profiles_dir() / "schema.json").read_text())


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def _diag(loc: Loc, message: str, path: tuple | list | str = "", hint: str | None = None) -> Diagnostic:
    p = path if isinstance(path, str) else path_str(list(path))
    return Diagnostic(loc.file, loc.line, loc.col, message, p, hint)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return f"{value!r}"


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "null"}


def _did_you_mean(word: Any, choices: Any) -> str | None:
    if not isinstance(word, str):
        return None
    guess = syscalls.suggest(word, [str(c) for c in choices])
    return f"did you mean {guess!r}?" if guess else None


def _schema_diags(doc: Node) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for err in _validator().iter_errors(doc.plain()):
        path = list(err.absolute_path)
        node = doc.at(*path) or doc
        sch = err.schema if isinstance(err.schema, dict) else {}
        v = err.validator
        if v == "additionalProperties":
            allowed = sorted(sch.get("properties", {}))
            for key, child in node.items():
                if key in allowed:
                    continue
                out.append(_diag(child.source_loc(), f"unknown key {key!r}", path + [key],
                                 _did_you_mean(key, allowed) or
                                 (f"expected one of: {', '.join(allowed)}" if allowed else None)))
        elif v == "required":
            for key in sch.get("required", []):
                if isinstance(err.instance, dict) and key not in err.instance:
                    out.append(_diag(node.source_loc(), f"missing required key {key!r}", path))
        elif v == "propertyNames":
            names = sch.get("propertyNames", {}).get("enum", [])
            key = err.instance
            child = node.get(key) if isinstance(key, str) else None
            loc = child.source_loc() if child is not None else node.loc
            out.append(_diag(loc, f"unknown key {key!r}, expected one of: {', '.join(names)}",
                             path + [key], _did_you_mean(key, names)))
        elif v == "type":
            want = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            words = " or ".join(_TYPE_WORDS.get(w, w) for w in want)
            out.append(_diag(node.loc, f"expected {words}, got {_describe(err.instance)}", path))
        elif v == "enum":
            choices = err.validator_value
            out.append(_diag(node.loc, f"expected one of {', '.join(map(str, choices))}; got "
                             f"{_describe(err.instance)}", path, _did_you_mean(err.instance, choices)))
        elif v == "const":
            out.append(_diag(node.loc, f"expected {err.validator_value!r}, got {_describe(err.instance)}",
                             path, _did_you_mean(err.instance, [err.validator_value])))
        elif v == "pattern":
            words = _PATTERN_WORDS.get(err.validator_value) or f"text matching {err.validator_value}"
            out.append(_diag(node.loc, f"expected {words}, got {_describe(err.instance)}", path))
        elif v == "anyOf":
            words = sch.get("description") or "a valid value"
            out.append(_diag(node.loc, f"expected {words}, got {_describe(err.instance)}", path))
        elif v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
                    "exclusiveMaximum": "<"}[v]
            out.append(_diag(node.loc, f"expected a number {sign} {err.validator_value}, got "
                             f"{_describe(err.instance)}", path))
        elif v in ("minItems", "maxItems"):
            what = "at least" if v == "minItems" else "at most"
            out.append(_diag(node.loc, f"expected {what} {err.validator_value} items", path))
        elif v in ("minLength", "maxLength"):
            what = "at least" if v == "minLength" else "at most"
            out.append(_diag(node.loc, f"expected {what} {err.validator_value} characters, got "
                             f"{_describe(err.instance)}", path))
        else:
            out.append(_diag(node.loc, err.message, path))
    return out


# -- checks beyond the schema ------------------------------------------------------------

def _str(node: Node | None) -> str | None:
    return node.value if node is not None and isinstance(node.value, str) else None


def _check_errno(node: Node | None, path: list, out: list[Diagnostic]) -> None:
    name = _str(node)
    if node is None or name is None or not name.startswith("E") or not name[1:].isalnum():
        return
    if constants.errno_value(name) is None:
        out.append(_diag(node.loc, f"unknown errno name {name!r}", path,
                         _did_you_mean(name, constants.errno_names())))


def _check_name(node: Node, path: list, out: list[Diagnostic]) -> bool:
    name = _str(node)
    if name is None:
        return False
    if name.startswith("@"):
        groups = load_groups()
        if name[1:] not in groups:
            out.append(_diag(node.loc, f"unknown syscall group {name!r}", path,
                             _did_you_mean(name, ["@" + g for g in groups]) or
                             "list the groups with `sandboxctl syscalls`"))
            return False
        try:
            expand(name, groups)
        except GroupCycle as exc:
            out.append(_diag(node.loc, f"syscall group {name!r} includes itself: {exc}", path))
            return False
        return True
    if syscalls.number(name) is None:
        out.append(_diag(node.loc, f"unknown syscall {name!r} on {syscalls.ARCH}", path,
                         _did_you_mean(name, syscalls.all_names())))
        return False
    return True


def _check_args(args: Node | None, path: list, out: list[Diagnostic]) -> None:
    for i, cond in enumerate(args.seq() if args is not None else []):
        if not cond.is_map:
            continue
        for key in ("value", "mask"):
            n = cond.get(key)
            if n is None or isinstance(n.value, bool) or not isinstance(n.value, (str, int)):
                continue
            num, _, bad = constants.parse_arg_value(n.value)
            if num is not None and not -(2 ** 63) <= num < 2 ** 64:
                out.append(_diag(n.loc, f"argument {key} {n.value!r} does not fit in 64 bits",
                                 path + [i, key]))
            if bad is not None:
                out.append(_diag(n.loc, f"unknown constant {bad!r} in argument {key}",
                                 path + [i, key],
                                 _did_you_mean(bad, constants.ARG_CONSTANTS) or
                                 "use a number, or constants such as O_WRONLY|O_CREAT"))
        op = _str(cond.get("op")) or "eq"
        if op == "masked_eq" and cond.get("mask") is None:
            out.append(_diag(cond.loc, "op masked_eq needs a `mask`", path + [i]))
        if op != "masked_eq" and cond.get("mask") is not None:
            out.append(_diag(cond.get("mask").source_loc(), "`mask` is only used with op masked_eq",
                             path + [i, "mask"]))


def _check_syscalls(doc: Node, out: list[Diagnostic]) -> None:
    from .compile import SECTIONS

    # Unconditional entries per name at this level: (action, errno, via_group, loc, section)
    seen: dict[tuple[str, bool], tuple[str, Loc, str]] = {}
    for section in SECTIONS:
        sec = doc.at("syscalls", section)
        for i, item in enumerate(sec.seq() if sec is not None else []):
            path = ["syscalls", section, i]
            names: list[tuple[Node, list]] = []
            action = section
            has_args = False
            if isinstance(item.value, str):
                names.append((item, path))
            elif item.is_map:
                n, ns = item.get("name"), item.get("names")
                if n is None and ns is None:
                    out.append(_diag(item.loc, "a syscall entry needs `name` or `names`", path,
                                     "for example {name: socket, args: [...]}"))
                if n is not None:
                    names.append((n, path + ["name"]))
                for j, sub in enumerate(ns.seq() if ns is not None else []):
                    names.append((sub, path + ["names", j]))
                _check_errno(item.get("errno"), path + ["errno"], out)
                _check_args(item.get("args"), path + ["args"], out)
                action = _str(item.get("action")) or section
                has_args = bool(item.get("args") is not None and item.get("args").seq())
                if item.get("errno") is not None and action != "deny":
                    out.append(_diag(item.get("errno").source_loc(),
                                     f"`errno` only applies to denied calls, this entry is {action}",
                                     path + ["errno"]))
            for node, npath in names:
                if not _check_name(node, npath, out) or has_args:
                    continue
                name = node.value
                via = name.startswith("@")
                members = expand(name) if via else (name,)
                verdict = "allowed" if action in ("allow", "log") else action + "ed" if action == "kill" else "denied"
                clashes = []
                for m in members:
                    prev = seen.get((m, via))
                    if prev is not None and prev[0] != verdict:
                        clashes.append((m, prev))
                    elif prev is None:
                        seen[(m, via)] = (verdict, node.loc, section)
                if clashes:
                    m, (pv, ploc, _) = clashes[0]
                    more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
                    out.append(_diag(node.loc, f"syscall {m!r}{more} is both {pv} (line {ploc.line}) "
                                     f"and {verdict} here, at the same level", npath,
                                     "keep one entry; to make an exception to a group, name the call itself"))
    d = doc.at("syscalls", "default")
    if d is not None and d.is_map:
        _check_errno(d.get("errno"), ["syscalls", "default", "errno"], out)
        act = _str(d.get("action"))
        if d.get("errno") is not None and act not in (None, "deny"):
            out.append(_diag(d.get("errno").source_loc(),
                             f"`errno` only applies to action deny, the default is {act}",
                             ["syscalls", "default", "errno"]))


def _check_uname(doc: Node, out: list[Diagnostic]) -> None:
    u = doc.get("uname")
    for key, n in u.items() if u is not None else []:
        if isinstance(n.value, str) and len(n.value.encode()) > UTS_FIELD_MAX:
            out.append(_diag(n.loc, f"uname {key} is {len(n.value.encode())} bytes, the kernel's "
                             f"limit is {UTS_FIELD_MAX}", ["uname", key], "shorten it"))


def _check_caps(doc: Node, out: list[Diagnostic]) -> None:
    keep = doc.at("capabilities", "keep")
    for i, n in enumerate(keep.seq() if keep is not None else []):
        if isinstance(n.value, str) and n.value not in constants.CAPABILITIES:
            guess = _did_you_mean(n.value.upper() if n.value.upper().startswith("CAP_")
                                  else "CAP_" + n.value.upper(), constants.CAPABILITIES)
            out.append(_diag(n.loc, f"unknown capability {n.value!r}", ["capabilities", "keep", i],
                             guess or "names look like CAP_NET_BIND_SERVICE"))


def _check_env(doc: Node, out: list[Diagnostic]) -> None:
    env = doc.at("process", "env")
    for key, n in env.items() if env is not None else []:
        if "=" in key or not key:
            out.append(_diag(n.source_loc(), f"environment variable name {key!r} may not contain '='",
                             ["process", "env", key]))


def _check_mounts(doc: Node, out: list[Diagnostic]) -> None:
    ms = doc.at("filesystem", "mounts")
    for i, m in enumerate(ms.seq() if ms is not None else []):
        if not m.is_map:
            continue
        path = ["filesystem", "mounts", i]
        t = m.get("target")
        if t is not None and isinstance(t.value, str):
            if not t.value.startswith("/"):
                out.append(_diag(t.loc, f"mount target must be an absolute path in the sandbox, got {t.value!r}",
                                 path + ["target"], f"did you mean '/{t.value.lstrip('./')}'?"))
            elif ".." in t.value.split("/"):
                out.append(_diag(t.loc, "mount target may not contain '..'", path + ["target"]))
        mtype = _str(m.get("type")) or ("bind" if m.get("source") is not None else None)
        if mtype is None:
            out.append(_diag(m.loc, "a mount needs a `source` (bind) or a `type` (tmpfs, proc, dev)", path))
        elif mtype != "bind" and m.get("source") is not None:
            out.append(_diag(m.get("source").source_loc(), f"a {mtype} mount takes no `source`",
                             path + ["source"]))
        elif mtype == "bind" and m.get("source") is None:
            out.append(_diag(m.loc, "a bind mount needs a `source` (host path)", path))
        if m.get("size") is not None and mtype != "tmpfs":
            out.append(_diag(m.get("size").source_loc(), "`size` only applies to tmpfs mounts",
                             path + ["size"]))
    r = doc.at("filesystem", "root")
    if r is not None and r.is_map:
        ov = _str(r.get("overlay"))
        if ov == "dir" and r.get("upper_dir") is None:
            out.append(_diag(r.get("overlay").loc, "overlay: dir needs `upper_dir` (a host directory)",
                             ["filesystem", "root", "overlay"]))
        if r.get("upper_dir") is not None and ov != "dir":
            out.append(_diag(r.get("upper_dir").source_loc(), "`upper_dir` is only used with overlay: dir",
                             ["filesystem", "root", "upper_dir"]))
    for key in ("deny", "readonly"):
        rules = doc.at("filesystem", key)
        for i, n in enumerate(rules.seq() if rules is not None else []):
            if n.is_map:
                _check_errno(n.get("errno"), ["filesystem", key, i, "errno"], out)


def check_document(doc: Node) -> list[Diagnostic]:
    """Every problem in one file's own document."""
    out = _schema_diags(doc)
    bad = {(d.line, d.col) for d in out}
    sem: list[Diagnostic] = []
    for check in (_check_syscalls, _check_uname, _check_caps, _check_env, _check_mounts):
        try:
            check(doc, sem)
        except (AttributeError, TypeError, KeyError, ValueError):
            continue  # a shape the schema already reported
    out += [d for d in sem if (d.line, d.col) not in bad]
    return _sorted(out)


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen = set()
    out = []
    for d in sorted(diags, key=lambda d: (d.file, d.line, d.col, d.message)):
        k = (d.file, d.line, d.col, d.message)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return out


# -- checks on the merged profile --------------------------------------------------------

def _local(items: list[Node], i: int) -> int:
    """The index of merged list item i in the file that wrote it (lists append parent
    items first, so each file's items are contiguous)."""
    f = items[i].loc.file
    return i - sum(1 for it in items[:i] if it.loc.file != f)

def _check_network(root: Node, out: list[Diagnostic]) -> None:
    net = root.get("network")
    if net is None or not net.is_map:
        return
    mode = _str(net.get("mode")) or "none"
    for key in ("egress", "publish", "dns"):
        n = net.get(key)
        if n is not None and n.seq() and mode == "none":
            out.append(_diag(n.source_loc(), f"network `{key}` rules contradict mode none",
                             ["network", key], "set network.mode: netstack, or remove the rules"))
        elif n is not None and n.seq() and mode == "passthrough" and key in ("egress", "publish"):
            out.append(_diag(n.source_loc(), f"network `{key}` rules need mode netstack; "
                             "passthrough uses the host's network as it is",
                             ["network", key], "set network.mode: netstack"))
    eg = net.get("egress")
    egs = eg.seq() if eg is not None else []
    for i, e in enumerate(egs):
        if not e.is_map:
            continue
        path = ["network", "egress", _local(egs, i)]
        has_c, has_h = e.get("cidr") is not None, e.get("host") is not None
        if has_c == has_h:
            out.append(_diag(e.loc, "an egress rule needs exactly one of `cidr` or `host`", path))
        c = _str(e.get("cidr"))
        if c is not None:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                out.append(_diag(e.get("cidr").loc, f"{c!r} is not an address or CIDR block",
                                 path + ["cidr"], "for example 10.0.0.0/8 or 127.0.0.1"))
    for key in ("address", "gateway"):
        n = net.get(key)
        if isinstance(n.value if n else None, str):
            try:
                (ipaddress.ip_interface if key == "address" else ipaddress.ip_address)(n.value)
            except ValueError:
                out.append(_diag(n.loc, f"{n.value!r} is not an IP address", ["network", key]))
    seen: dict[int, Loc] = {}
    pb = net.get("publish")
    pbs = pb.seq() if pb is not None else []
    for i, p in enumerate(pbs):
        h = _str(p.get("host")) if p.is_map else None
        if h is None:
            continue
        port = h.rpartition(":")[2]
        if port.isdigit() and not 1 <= int(port) <= 65535:
            out.append(_diag(p.get("host").loc, f"host port {port} is out of range 1-65535",
                             ["network", "publish", _local(pbs, i), "host"]))
        elif port.isdigit() and int(port) in seen:
            out.append(_diag(p.get("host").loc, f"host port {port} is already published "
                             f"(line {seen[int(port)].line})", ["network", "publish", _local(pbs, i), "host"]))
        elif port.isdigit():
            seen[int(port)] = p.get("host").loc


def _check_mount_overlap(root: Node, out: list[Diagnostic]) -> None:
    ms = root.at("filesystem", "mounts")
    seen: dict[str, Loc] = {}
    items = ms.seq() if ms is not None else []
    for i, m in enumerate(items):
        t = _str(m.get("target")) if m.is_map else None
        if t is None or not t.startswith("/"):
            continue
        norm = posixpath.normpath(t)
        if norm in seen:
            first = seen[norm]
            out.append(_diag(m.get("target").loc, f"mount target {norm} is already mounted at "
                             f"{first.file}:{first.line}", ["filesystem", "mounts", _local(items, i), "target"],
                             "remove one, or replace the inherited list with `mounts: !replace [...]`"))
        else:
            seen[norm] = m.get("target").loc


def _check_sources(res: Resolved, out: list[Diagnostic]) -> None:
    """Bind sources (relative to their profile's folder) must exist on the host."""
    from .compile import profile_dirs

    dirs = profile_dirs(res)
    ms = res.root.at("filesystem", "mounts")
    items = ms.seq() if ms is not None else []
    for i, m in enumerate(items):
        s = _str(m.get("source")) if m.is_map else None
        if s is None:
            continue
        full = Path(s) if s.startswith("/") else dirs.get(m.loc.file, Path.cwd()) / s
        if not full.exists():
            out.append(_diag(m.get("source").loc, f"mount source {str(full)!r} does not exist on the host",
                             ["filesystem", "mounts", _local(items, i), "source"],
                             "a relative source is relative to the profile file's folder"))


def check_resolved(res: Resolved) -> list[Diagnostic]:
    """Problems of the merged profile that no single file shows."""
    out: list[Diagnostic] = []
    for check in (_check_network, _check_mount_overlap):
        try:
            check(res.root, out)
        except (AttributeError, TypeError, KeyError, ValueError):
            continue
    try:
        _check_sources(res, out)
    except (AttributeError, TypeError, KeyError, ValueError, OSError):
        pass
    return _sorted(out)


__all__ = ["check_document", "check_resolved", "schema", "UTS_FIELD_MAX"]
