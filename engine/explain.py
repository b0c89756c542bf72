"""Why was a call refused, by which rule, and what is the smallest change that allows it.

Two entry points:
- `explain_run(run_dir, book)`: a recorded run's denials (events.jsonl + plan.json,
  docs/internals.md), one `Denial` per distinct refusal with its count, the rule
  (file:line and text), what the call is for, the risk of allowing it and a YAML snippet
  narrowed by the argument values seen -- or the advice not to, for critical calls.
- `explain_syscall` / `explain_path` / `explain_dest`: what a profile WOULD do with a
  call, a path or a destination, and why (hypothetical, from the Plan alone).
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from .plan import DefaultAction, Plan, SyscallRule
from .risk import Level, RiskBook

# Which constant family names an argument value, by syscall and index (for snippets).
_ARG_FAMILIES: dict[tuple[str, int], tuple[str, ...]] = {
    ("socket", 0): ("AF_",), ("socketpair", 0): ("AF_",), ("prctl", 0): ("PR_",),
    ("fcntl", 1): ("F_",), ("ioctl", 1): ("TC", "TIOC", "FIO"),
    ("setsockopt", 1): ("SOL_", "IPPROTO_"), ("getsockopt", 1): ("SOL_", "IPPROTO_"),
}
# At most this many distinct values seen at a narrowing index give one rule per value;
# more than that and the snippet allows the call without conditions.
MAX_NARROW_VALUES = 4


@dataclass(frozen=True)
class Denial:
    """One distinct refusal of a run (or of a hypothetical query)."""

    kind: str  # syscall | file | network
    subject: str  # syscall name, path, or host:port
    call: str  # as strace prints it (first example)
    count: int
    action: str  # deny | kill
    errno: str  # EPERM, ... ("" for kill)
    rule_where: str  # file:line:col, or "" when the default decided
    rule_text: str
    purpose: str
    risk: Level
    risk_why: str
    suggestion: str  # a YAML snippet to add to the profile ("" when advised against)
    advice: str  # one sentence: what to do (or why not)
    examples: tuple[str, ...] = ()
    # The refusing entry is in the profile that ran (not in one it extends): it has to go,
    # a profile cannot both allow and deny a call at the same level. file:line:col.
    remove_where: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["examples"] = list(self.examples)
        return d


# -- reading a run ---------------------------------------------------------------------

def load_run(run_dir: Path) -> tuple[Plan | None, list[dict[str, Any]], dict[str, Any]]:
    """The run's Plan (None if missing), its events and its status (sentry/runs.py)."""
    from ..sentry.runs import PLAN, read_events, read_status

    try:
        plan: Plan | None = Plan.from_json((run_dir / PLAN).read_text())
    except (OSError, ValueError, TypeError, KeyError):
        plan = None
    return plan, list(read_events(run_dir)), read_status(run_dir)


def is_denial(ev: dict[str, Any]) -> bool:
    """A refusal of any kind (syscall, file, network): its action is deny or kill."""
    return ev.get("action") in ("deny", "kill")


def _rule_where(rule: dict[str, Any] | None) -> str:
    if not rule:
        return ""
    return f"{rule.get('file', '?')}:{rule.get('line', 0)}:{rule.get('col', 0)}"


def _default_text(plan: Plan | None) -> tuple[str, str]:
    if plan is None:
        return "", "the default action"
    d = plan.seccomp.default
    where = d.source.where() if d.source else ""
    text = d.source.text if d.source and d.source.text else f"default: {d.action}"
    return where, text


def explain_run(run_dir: Path, book: RiskBook) -> list[Denial]:
    plan, events, _ = load_run(run_dir)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for ev in events:
        if not is_denial(ev):
            continue
        kind = ev.get("kind", "syscall")
        if kind == "file":
            # One row per path rule (its fix is the same for every path it hides);
            # refusals without a rule, one row per path.
            rule_at = _rule_where(ev.get("rule"))
            key = (kind, "", rule_at) if rule_at else (kind, ev.get("path", "?"), "")
        elif kind == "network":
            key = (kind, f"{ev.get('host') or ev.get('dest')}:{ev.get('port')}",
                   ev.get("protocol", ""))
        else:
            key = (kind, ev.get("syscall", "?"), _rule_where(ev.get("rule")))
        groups.setdefault(key, []).append(ev)
    out = []
    for key, evs in groups.items():
        kind = key[0]
        if kind == "file":
            out.append(_file_denial(evs, plan, book))
        elif kind == "network":
            out.append(_net_denial(evs, plan, book))
        else:
            out.append(_syscall_denial(evs, plan, book))
    return out


# -- suggestions -----------------------------------------------------------------------

def _symbol(name: str, index: int, value: int) -> str | int:
    """A constant name for `value` the profile format accepts, or the number."""
    from .constants import ARG_CONSTANTS

    prefixes = _ARG_FAMILIES.get((name, index))
    if not prefixes:
        return value
    for sym, v in ARG_CONSTANTS.items():
        if v == value and sym.startswith(prefixes):
            return sym
    return value


def suggest_syscall(name: str, arg_sets: Iterable[Iterable[int]], book: RiskBook,
                    rule: SyscallRule | DefaultAction | None = None) -> tuple[str, str]:
    """(YAML snippet, advice) allowing `name` for the argument values seen, narrowed at
    the indexes risk.yaml marks as selecting what the call does."""
    sr = book.syscall(name)
    if name.startswith("syscall_"):
        # A number newer than the engine's syscall table (see compile.unknown_call_rules):
        # no profile can name it, so there is nothing to add.
        return ("", f"{name} is newer than the syscall table this sandboxctl knows; it is "
                "refused with ENOSYS in every profile that allows by default, and a profile "
                "cannot allow it until sandboxctl (libseccomp) learns its name")
    seen = [tuple(a) for a in arg_sets]
    entries: list[str] = []
    narrowed_on = None
    for idx in sr.narrow:
        values = sorted({a[idx] for a in seen if len(a) > idx})
        if 0 < len(values) <= MAX_NARROW_VALUES:
            narrowed_on = (idx, values)
            break
    if narrowed_on is not None:
        idx, values = narrowed_on
        for v in values:
            entries.append(f"    - {{name: {name}, args: [{{index: {idx}, op: eq, "
                           f"value: {_symbol(name, idx, v)}}}]}}")
    else:
        entries.append(f"    - {name}")
    snippet = "syscalls:\n  allow:\n" + "\n".join(entries) + "\n"
    if sr.risk == "critical":
        commented = "".join(f"# {line}\n" for line in snippet.splitlines())
        return (commented,
                f"do not allow {name}: {sr.why}; if the program cannot work without it, "
                "it needs a stronger boundary than this sandbox (a virtual machine)")
    how = (f"allows {name} only for the values seen" if narrowed_on is not None
           else f"allows {name}")
    return snippet, f"add this to the profile: it {how}"


def _plan_rule(plan: Plan | None, where: str) -> SyscallRule | None:
    if plan is None or not where:
        return None
    for r in plan.seccomp.rules:
        if r.source is not None and r.source.where() == where:
            return r
    return None


def _syscall_denial(evs: list[dict[str, Any]], plan: Plan | None, book: RiskBook) -> Denial:
    ev = evs[0]
    name = ev.get("syscall") or "?"
    sr = book.syscall(name)
    where = _rule_where(ev.get("rule"))
    text = (ev.get("rule") or {}).get("text", "")
    if not where:
        where, text = _default_text(plan)
        text = text + " (the default action)" if text else "the default action"
    examples = tuple(dict.fromkeys(e.get("decoded") or _decode(name, e.get("args", ()))
                                   for e in evs))
    snippet, advice = suggest_syscall(name, (e.get("args", ()) for e in evs), book)
    remove = ""
    rule = ev.get("rule") or {}
    # Only an entry naming this call alone is removed; a group entry (`- "@ipc"`) or a
    # `names:` list stays, and the allow entry written by name beats it at the same level.
    alone = "@" not in text and "names" not in text
    if plan is not None and rule and rule.get("file") == plan.profile_file \
            and sr.risk != "critical" and alone and snippet:
        remove = where
        advice = f"remove the entry at {where} ({text.strip()}) and {advice}"
    return Denial("syscall", name, examples[0], len(evs), ev.get("action", "deny"),
                  ev.get("errno_name") or (_errno.errorcode.get(ev.get("errno") or 0, "")
                                           if ev.get("action") == "deny" else ""),
                  where, text, purpose_of(name, book), sr.risk, sr.why,
                  snippet, advice, examples[:5], remove)


def purpose_of(name: str, book: RiskBook) -> str:
    """One line on what a syscall is for: risk.yaml's `purpose`, else the description of
    the first group (groups.yaml) that names it directly."""
    sr = book.syscall(name)
    if sr.purpose:
        return sr.purpose
    try:
        from .groups import load_groups

        for g in load_groups().values():
            if name in g.members:
                return f"{g.description} (@{g.name})"
    except Exception:  # the groups file is a nicety here
        pass
    return f"the {name} system call"


def _decode(name: str, args: Any) -> str:
    try:
        from ..sentry.decode import decode

        return decode(name, tuple(args))
    except Exception:  # decoding is a nicety; never fail explain on it
        return f"{name}({', '.join(hex(a) for a in args)})"


def _file_denial(evs: list[dict[str, Any]], plan: Plan | None, book: RiskBook) -> Denial:
    ev = evs[0]
    path = ev.get("path", "?")
    paths = list(dict.fromkeys(str(e.get("path", "?")) for e in evs))
    subject = path if len(paths) == 1 else f"{path} (+{len(paths) - 1} more paths)"
    where = _rule_where(ev.get("rule"))
    text = (ev.get("rule") or {}).get("text", "")
    ops = sorted({str(e.get("op", "open")) for e in evs})
    examples = tuple(dict.fromkeys(e.get("decoded") or f"{e.get('op', 'open')} {e.get('path')}"
                                   for e in evs))
    snippet, advice = suggest_path(plan, path, ops, book)
    secret = any(book.is_secret_glob(p) for p in paths)
    return Denial("file", subject, examples[0], len(evs), ev.get("action", "deny"),
                  ev.get("errno_name", ""), where, text,
                  f"{'/'.join(ops)} a file", "high" if secret else "medium",
                  "the path may hold secrets" if secret else
                  "the program sees more of the host's files", snippet, advice, examples[:5])


def suggest_path(plan: Plan | None, path: str, ops: list[str], book: RiskBook) -> tuple[str, str]:
    """The smallest profile change that makes `path` usable."""
    if plan is None:
        return "", "check filesystem.deny and filesystem.mounts for this path"
    deny_idx = _match_rules(plan.gofer.deny, path)
    if deny_idx >= 0:
        rule = plan.gofer.deny[deny_idx]
        rest = [r.glob for r in plan.gofer.deny if r.glob != rule.glob]
        snippet = ("filesystem:\n  deny: !replace\n"
                   + "".join(f"    - {g}\n" for g in rest) if rest else
                   "filesystem:\n  deny: !replace []\n")
        if book.is_secret_glob(rule.glob):
            return ("".join(f"# {ln}\n" for ln in snippet.splitlines()),
                    f"do not expose {rule.glob}: it hides secrets; give the program a copy "
                    "of what it needs through a read-only mount instead")
        return snippet, f"the path rule {rule.glob} hides it; replace the deny list without it"
    ro_idx = _match_rules(plan.gofer.readonly, path)
    if ro_idx >= 0:
        rule = plan.gofer.readonly[ro_idx]
        rest = [r.glob for r in plan.gofer.readonly if r.glob != rule.glob]
        snippet = "filesystem:\n  readonly: !replace\n" + "".join(f"    - {g}\n" for g in rest) \
            if rest else "filesystem:\n  readonly: !replace []\n"
        return snippet, f"the path rule {rule.glob} makes it read-only"
    parent = str(Path(path).parent)
    writes = any(o in ("write", "create", "unlink", "rename", "mkdir") for o in ops)
    snippet = (f"filesystem:\n  mounts:\n    - {{source: {parent}, target: {parent}, "
               f"readonly: {'false' if writes else 'true'}}}\n")
    return snippet, f"mount the directory {parent} into the sandbox"


def _match_rules(rules, path: str) -> int:
    if not rules:
        return -1
    from ..gofer.policy import RuleSet

    return RuleSet.build(tuple(rules)).match(path)


def _net_denial(evs: list[dict[str, Any]], plan: Plan | None, book: RiskBook) -> Denial:
    ev = evs[0]
    dest, port = ev.get("dest", "?"), ev.get("port", 0)
    proto = ev.get("protocol", "tcp")
    host = ev.get("host")
    where = _rule_where(ev.get("rule"))
    text = (ev.get("rule") or {}).get("text", "")
    if not where and plan is not None:
        src = plan.network.source
        where = src.where() if src else ""
        text = f"network mode {plan.network.mode}: only the egress rules are reachable"
        near = ev.get("near")
        if near:
            text += (f"; {near.get('file')}:{near.get('line')} `{near.get('text', '').lstrip('- ')}`"
                     " matches the address but not this port or protocol")
    snippet, advice, risk, why = suggest_dest(plan, host or dest, dest, port, proto, book)
    call = ev.get("decoded") or f"connect({host or dest}:{port}/{proto})"
    return Denial("network", f"{host or dest}:{port}", call, len(evs), ev.get("action", "deny"),
                  ev.get("errno_name", ""), where, text, f"connect to {host or dest} port {port}",
                  risk, why, snippet, advice, (call,))


def suggest_dest(plan: Plan | None, name: str, dest: str, port: int, proto: str,
                 book: RiskBook) -> tuple[str, str, Level, str]:
    try:
        ip = ipaddress.ip_address(dest)
        target = f"cidr: {ip}/{32 if ip.version == 4 else 128}"
        internal = book.is_internal(str(ip))
    except ValueError:
        target = f"host: {name}"
        internal = False
    proto_s = proto if proto in ("tcp", "udp") else "any"
    lines = ["network:"]
    if plan is None or plan.network.mode == "none":
        lines.append("  mode: netstack")
    lines.append("  egress:")
    lines.append(f"    - {{{target}, ports: [{port}], protocol: {proto_s}}}")
    v = book.network_verdict("egress_internal" if internal else "egress_host")
    return "\n".join(lines) + "\n", "allow this one destination and port", v.risk, v.why


# -- hypothetical queries ----------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """What a profile would do with a call, a path or a destination."""

    query: str
    kind: str  # syscall | file | network
    outcome: str  # allow | deny EPERM | kill | emulate | log | hidden | read-only | ...
    allowed: bool
    rule_where: str
    rule_text: str
    why: str
    purpose: str = ""
    risk: str = ""
    risk_why: str = ""
    suggestion: str = ""
    advice: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_arg(text: str) -> int:
    """`2`, `0x10`, `AF_INET`, `O_WRONLY|O_CREAT`."""
    from .constants import ARG_CONSTANTS
    from .errors import SandboxctlError

    total = 0
    for part in text.split("|"):
        part = part.strip()
        if part in ARG_CONSTANTS:
            total |= ARG_CONSTANTS[part]
            continue
        try:
            total |= int(part, 0)
        except ValueError:
            raise SandboxctlError(f"cannot read the argument {part!r} as a number or a constant.",
                                  hint="write a number (2, 0x10) or a constant such as AF_INET") from None
    return total


def explain_syscall(plan: Plan, name: str, args: list[str], book: RiskBook) -> Answer:
    from .errors import SandboxctlError
    from .decide import decide
    from .syscalls import all_names, number, suggest

    nr = number(name)
    if nr is None:
        guess = suggest(name, all_names())
        raise SandboxctlError(f"{name!r} is not an x86_64 system call.",
                              hint=f"did you mean {guess}?" if guess else "see `sandboxctl syscalls`")
    values = [parse_arg(a) for a in args][:6]
    full = tuple(values + [0] * (6 - len(values)))
    call = _decode(name, full[:max(len(values), 1)] if values else ())
    if not values:
        call = f"{name}(...)"
    rule = decide(plan, nr, full)
    sr = book.syscall(name)
    if isinstance(rule, DefaultAction):
        where = rule.source.where() if rule.source else ""
        text = (rule.source.text if rule.source and rule.source.text else f"default: {rule.action}")
        by = "the default action"
    else:
        where = rule.source.where() if rule.source else ""
        text = rule.source.text if rule.source else rule.name
        by = "the rule"
    action = rule.action
    outcome = f"deny {_errno.errorcode.get(rule.errno, rule.errno)}" if action == "deny" else action
    allowed = action in ("allow", "log", "emulate")
    handler = getattr(rule, "handler", None)
    if action == "emulate":
        why = f"{call}: implemented by the Sentry ({handler or 'handler'}), per {by}"
    elif action == "allow" and getattr(rule, "trap", False) and handler in _OBSERVERS:
        why = f"{call}: {outcome}, decided by {by}; {_OBSERVERS[handler]}"
    else:
        why = f"{call}: {outcome}, decided by {by}"
    snippet = advice = ""
    if not allowed:
        snippet, advice = suggest_syscall(name, [full] if values else [], book)
    return Answer(call, "syscall", outcome, allowed, where, text, why, purpose_of(name, book), sr.risk,
                  sr.why, snippet, advice)


# Handlers of allowed calls the Sentry only looks at before the kernel runs them
_OBSERVERS = {
    "execve": "the Sentry records the path and argv first (audit.exec), then the kernel runs it",
    "fd_meta": "the Sentry's attribute cache forgets the file first (root cache: exclusive), "
               "then the kernel runs it",
    "observe": "the Sentry evaluated the rules in order first, then the kernel runs it",
}


def explain_path(plan: Plan, path: str, book: RiskBook) -> Answer:
    import posixpath

    path = posixpath.normpath(path)
    g = plan.gofer
    i = _match_rules(g.deny, path)
    if i >= 0:
        r = g.deny[i]
        snippet, advice = suggest_path(plan, path, ["open"], book)
        return Answer(path, "file", f"hidden ({_errno.errorcode.get(r.errno, r.errno)})", False,
                      r.source.where() if r.source else "", (r.source.text if r.source else r.glob),
                      f"{path} matches the path rule {r.glob}", "", "", "", snippet, advice)
    mount = None
    for m in g.mounts:
        t = m.target.rstrip("/") or "/"
        if path == t or path.startswith(t.rstrip("/") + "/"):
            if mount is None or len(t) > len(mount.target.rstrip("/")):
                mount = m
    if mount is not None:
        src = mount.source_loc
        where, text = (src.where(), src.text) if src else ("", "")
        if mount.type == "bind":
            host = (mount.source or "").rstrip("/") + path[len(mount.target.rstrip("/")):]
            desc = f"bind mount of {mount.source} at {mount.target}, host file {host}"
        else:
            desc = f"{mount.type} mount at {mount.target}"
        writable = not mount.readonly
    else:
        root = g.root
        src = root.source_loc
        where, text = (src.where(), src.text) if src else ("", "")
        desc = f"the root ({root.source}, overlay {root.overlay})"
        writable = not root.readonly or root.overlay != "none"
        if root.readonly and root.overlay != "none":
            desc += "; writes go to the overlay, not the host"
    j = _match_rules(g.readonly, path)
    if j >= 0:
        r = g.readonly[j]
        return Answer(path, "file", "read-only", True, r.source.where() if r.source else where,
                      r.source.text if r.source else r.glob,
                      f"visible through {desc}; the path rule {r.glob} makes it read-only")
    outcome = "read-write" if writable else "read-only"
    return Answer(path, "file", outcome, True, where, text, f"visible through {desc}")


def explain_dest(plan: Plan, dest: str, book: RiskBook, protocol: str = "tcp") -> Answer:
    from .errors import SandboxctlError

    host, sep, port_s = dest.rpartition(":")
    if not sep or not port_s.isdigit():
        raise SandboxctlError(f"cannot read {dest!r} as host:port.",
                              hint="write it as example.com:443 or 10.0.0.5:5432")
    host = host.strip("[]")
    port = int(port_s)
    n = plan.network
    where = n.source.where() if n.source else ""
    text = n.source.text if n.source else f"mode: {n.mode}"
    if n.mode == "none":
        snippet, advice, risk, why = suggest_dest(plan, host, host, port, protocol, book)
        return Answer(dest, "network", "deny", False, where, text,
                      "network mode none: the sandbox has no network at all", "", risk, why,
                      snippet, advice)
    if n.mode == "passthrough":
        return Answer(dest, "network", "allow", True, where, text,
                      "network mode passthrough: the host's network, egress rules are not enforced")
    from ..netstack.egress import EgressPolicy, resolve_host

    try:
        ipaddress.ip_address(host)
        addrs = [host]
    except ValueError:
        addrs = sorted(resolve_host(host))
    policy = EgressPolicy(n.egress, resolve=True)
    for r in n.egress:
        if r.host and r.host.rstrip(".").lower() == host.rstrip(".").lower():
            policy.bind(host, addrs)
    for a in addrs:
        v = policy.decide(a, port, protocol)
        if v.allowed and v.rule is not None:
            src = v.rule.source
            return Answer(dest, "network", "allow", True, src.where() if src else where,
                          src.text if src else str(v.rule), f"{a}:{port}/{protocol} matches an egress rule")
    snippet, advice, risk, why = suggest_dest(plan, host, addrs[0] if addrs else host, port,
                                              protocol, book)
    return Answer(dest, "network", "deny", False, where, text,
                  f"no egress rule allows {host}:{port}/{protocol}" +
                  ("" if addrs else f" ({host} does not resolve)"), "", risk, why, snippet, advice)


# -- applying suggestions ----------------------------------------------------------------

def merge_snippets(profile_text: str, snippets: Iterable[str],
                   remove_lines: Iterable[int] = ()) -> str:
    """The profile text with the YAML snippets merged in (comments and order kept):
    mappings merge key by key, list items are appended unless already there, and a value
    tagged !replace replaces. Commented-out snippets (critical calls) are ignored."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(profile_text)
    if doc is None:
        doc = CommentedMap()

    def key_of(item: Any) -> str:
        return json.dumps(item, sort_keys=True, default=str)

    def merge(dst: Any, src: Any) -> Any:
        if isinstance(src, dict) and isinstance(dst, dict):
            for k, v in src.items():
                dst[k] = merge(dst[k], v) if k in dst else v
            return dst
        tag = getattr(getattr(src, "tag", None), "value", None)
        if isinstance(src, list) and isinstance(dst, list) and tag != "!replace":
            have = {key_of(x) for x in dst}
            for item in src:
                if key_of(item) not in have:
                    dst.append(item)
                    have.add(key_of(item))
            return dst
        return src

    drop = set(remove_lines)
    sc = doc.get("syscalls") if isinstance(doc, dict) else None
    for section in ("deny", "kill", "log"):
        seq = sc.get(section) if isinstance(sc, dict) else None
        if not isinstance(seq, list) or not drop:
            continue
        for i in range(len(seq) - 1, -1, -1):
            try:
                line = seq.lc.item(i)[0] + 1
            except (AttributeError, KeyError, TypeError):
                continue
            if line in drop:
                del seq[i]
        if not seq:
            del sc[section]
    for snippet in snippets:
        if not snippet.strip() or all(ln.lstrip().startswith("#") or not ln.strip()
                                      for ln in snippet.splitlines()):
            continue
        merge(doc, yaml.load(snippet))
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


__all__ = ["Denial", "Answer", "explain_run", "explain_syscall", "explain_path", "explain_dest",
           "suggest_syscall", "suggest_path", "suggest_dest", "load_run", "parse_arg", "merge_snippets",
           "purpose_of"]
