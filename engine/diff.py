"""Compare two resolved profiles (their Plans) and rate each change by risk.

`diff_plans(old, new, book)` returns one `Change` per difference a reviewer should see:
syscall rules (with argument conditions), the default action, mounts and the root,
path rules, network mode, egress and publish rules, capabilities, uname, ids,
no_new_privs, rlimits, resources, platform, mediation and audit switches. Each change
says whether it widened or narrowed what the sandbox allows, its risk (from
profiles/risk.yaml, see engine/risk.py), one sentence why, and where it came from in each
file. Comparing Plans, not YAML text, means `extends`, groups and defaults are resolved
and a reordering or reformatting of the file shows no change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Literal, Sequence

from .plan import ArgCond, EgressRule, Mount, PathRule, Plan, Rlimit, Source, SyscallRule
from .risk import LEVELS, Level, RiskBook, highest, level_rank, lower

ChangeKind = Literal["added", "removed", "widened", "narrowed", "changed"]

ALLOWISH = ("allow", "log", "emulate")


@dataclass(frozen=True)
class Change:
    """One row of a diff."""

    what: str  # syscall, args, default action, mount, root, path rule, network mode, ...
    subject: str  # the syscall name, the mount target, the capability, ...
    change: ChangeKind
    before: str
    after: str
    risk: Level
    why: str
    old_where: str = ""
    new_where: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def rank(self) -> int:
        return level_rank(self.risk)


def _where(src: Source | None, fallback: str = "") -> str:
    return src.where() if src is not None else fallback


# -- syscalls ---------------------------------------------------------------------------

def _cond_text(c: ArgCond) -> str:
    value = c.symbol or (hex(c.value) if c.value > 9 else str(c.value))
    if c.op == "masked_eq":
        return f"arg{c.index} & {hex(c.mask)} == {value}"
    ops = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
    return f"arg{c.index} {ops[c.op]} {value}"


def _action_text(action: str, errno: int) -> str:
    if action == "deny":
        import errno as _errno

        return f"deny {_errno.errorcode.get(errno, errno)}"
    return action


def _args_key(args: tuple[ArgCond, ...]) -> tuple:
    return tuple(sorted((c.index, c.op, c.value, c.mask) for c in args))


@dataclass(frozen=True)
class _Policy:
    """How one plan treats one syscall: conditional rules, then the unconditional outcome."""

    conds: tuple[SyscallRule, ...]  # rules with args, before the first unconditional one
    uncond_action: str
    uncond_errno: int
    uncond_handler: str | None
    uncond_is_default: bool
    uncond_source: Source | None

    def key(self) -> tuple:
        return (tuple((_args_key(r.args), r.action, r.errno if r.action == "deny" else 0)
                      for r in self.conds),
                self.uncond_action, self.uncond_errno if self.uncond_action == "deny" else 0,
                # which handler emulates a call matters; one that only looks at an allowed
                # call before the kernel runs it (execve, fd_meta, observe) does not change
                # what is permitted
                self.uncond_handler if self.uncond_action == "emulate" else None)

    def allowed_conds(self) -> set[tuple]:
        return {_args_key(r.args) for r in self.conds if r.action in ALLOWISH}

    def denied_conds(self) -> set[tuple]:
        return {_args_key(r.args) for r in self.conds if r.action not in ALLOWISH}

    def uncond_allowed(self) -> bool:
        return self.uncond_action in ALLOWISH

    def any_allowed(self) -> bool:
        return self.uncond_allowed() or bool(self.allowed_conds())

    def text(self) -> str:
        parts = []
        for r in self.conds:
            parts.append(f"{_action_text(r.action, r.errno)} if "
                         + " && ".join(_cond_text(c) for c in r.args))
        tail = _action_text(self.uncond_action, self.uncond_errno)
        if self.uncond_is_default:
            tail += " (default)"
        if parts:
            return "; ".join(parts) + "; else " + tail
        return tail

    def first_source(self) -> Source | None:
        for r in self.conds:
            if r.source is not None:
                return r.source
        return self.uncond_source


def _policies(plan: Plan) -> dict[str, _Policy]:
    by_name: dict[str, list[SyscallRule]] = {}
    for r in plan.seccomp.rules:
        by_name.setdefault(r.name, []).append(r)
    out: dict[str, _Policy] = {}
    d = plan.seccomp.default
    for name, rules in by_name.items():
        conds: list[SyscallRule] = []
        uncond: SyscallRule | None = None
        for r in rules:
            if not r.args:
                uncond = r
                break
            conds.append(r)
        if uncond is not None:
            out[name] = _Policy(tuple(conds), uncond.action, uncond.errno, uncond.handler,
                                False, uncond.source)
        else:
            out[name] = _Policy(tuple(conds), d.action, d.errno, None, True, d.source)
    return out


def _default_policy(plan: Plan) -> _Policy:
    d = plan.seccomp.default
    return _Policy((), d.action, d.errno, None, True, d.source)


def _only_mediation(a: _Policy, b: _Policy) -> bool:
    """The call moved between the Gofer (emulate) and the kernel (allow) and nothing else:
    a consequence of filesystem.mediation, which has its own row."""
    return ({a.uncond_action, b.uncond_action} == {"emulate", "allow"}
            and a.key()[0] == b.key()[0])


def mediation_moves(old: Plan, new: Plan) -> list[str]:
    """Calls that only moved between the Gofer and the kernel."""
    if old.gofer.mediation == new.gofer.mediation:
        return []
    po, pn = _policies(old), _policies(new)
    return sorted(n for n in set(po) | set(pn)
                  if _only_mediation(po.get(n, _default_policy(old)), pn.get(n, _default_policy(new))))


def _syscall_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    po, pn = _policies(old), _policies(new)
    folded = set(mediation_moves(old, new))
    out: list[Change] = []
    for name in sorted(set(po) | set(pn)):
        a = po.get(name, _default_policy(old))
        b = pn.get(name, _default_policy(new))
        if a.key() == b.key() or name in folded:
            continue
        sr = book.syscall(name)
        ow, nw = _where(a.first_source()), _where(b.first_source())
        row = _classify_syscall(name, a, b, sr.risk, sr.why, book)
        what, change, risk, why = row
        out.append(Change(what, name, change, a.text(), b.text(), risk, why, ow, nw))
    return out


def _classify_syscall(name: str, a: _Policy, b: _Policy, risk: Level, why: str,
                      book: RiskBook) -> tuple[str, ChangeKind, Level, str]:
    rank = book.default_rank
    crit = risk == "critical"
    narrowed_risk: Level = risk if crit else lower(risk, book.args_drop)
    # 1. From refused to allowed, or back.
    if not a.any_allowed() and b.any_allowed():
        if b.uncond_allowed():
            if b.uncond_action == "emulate":
                return ("syscall", "added", lower(risk, 2, "info"),
                        f"now implemented by the Sentry: {why}")
            return ("syscall", "added", risk, why)
        return ("args", "added", narrowed_risk,
                f"allowed for some arguments: {why}")
    if a.any_allowed() and not b.any_allowed():
        return ("syscall", "removed", "info", "the call is refused now")
    # 2. Both refuse it: only the way of refusing changed.
    if not a.any_allowed() and not b.any_allowed():
        if rank(b.uncond_action) > rank(a.uncond_action):
            return ("syscall", "widened", "low",
                    "a refused call no longer kills the process, so a probe can continue")
        if rank(b.uncond_action) < rank(a.uncond_action):
            return ("syscall", "narrowed", "info", "a refused call now kills the process")
        return ("syscall", "changed", "info", "refused with another errno")
    # 3. Both allow it in some form: compare the argument conditions.
    if b.uncond_allowed() and not a.uncond_allowed():
        return ("args", "widened", risk,
                f"the argument condition was removed, every form is allowed: {why}")
    if a.uncond_allowed() and not b.uncond_allowed():
        return ("args", "narrowed", "info", "now allowed only for some arguments")
    if a.uncond_allowed() and b.uncond_allowed():
        lost = a.denied_conds() - b.denied_conds()
        if lost:
            return ("args", "widened", narrowed_risk,
                    f"an argument form that was refused is allowed now: {why}")
        if b.denied_conds() - a.denied_conds():
            return ("args", "narrowed", "info", "more argument forms are refused")
        ra, rb = rank(a.uncond_action), rank(b.uncond_action)
        if a.uncond_action == "log" and b.uncond_action == "allow":
            return ("syscall", "widened", "low", "the call is no longer recorded")
        if rb < ra:
            return ("syscall", "narrowed", "info",
                    f"now {b.uncond_action} instead of {a.uncond_action}")
        return ("syscall", "changed", "low",
                f"now {b.uncond_action} instead of {a.uncond_action}")
    # Both conditional.
    ga, gb = a.allowed_conds(), b.allowed_conds()
    if gb - ga and not ga - gb:
        return ("args", "widened", narrowed_risk, f"more argument values are allowed: {why}")
    if ga - gb and not gb - ga:
        return ("args", "narrowed", "info", "fewer argument values are allowed")
    if gb != ga:
        return ("args", "changed", narrowed_risk,
                f"other argument values are allowed: {why}")
    return ("args", "changed", "info", "the conditions changed without allowing more")


def _combo_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    """A capability kept together with a call it unlocks, newly so in `new`."""
    po, pn = _policies(old), _policies(new)
    caps_old = {book.capability(c).name for c in old.launch.capabilities}
    out = []
    for cap_name in sorted({book.capability(c).name for c in new.launch.capabilities}):
        cap = book.capability(cap_name)
        for call in cap.unlocks:
            nb = pn.get(call, _default_policy(new))
            if not nb.any_allowed():
                continue
            na = po.get(call, _default_policy(old))
            widened = ((nb.uncond_allowed() and not na.uncond_allowed())
                       or bool(nb.allowed_conds() - na.allowed_conds()))
            if cap_name in caps_old and na.any_allowed() and not widened:
                continue  # the pair was already there
            sr = book.syscall(call)
            risk = highest(cap.risk, sr.risk)
            if not nb.uncond_allowed():  # only some argument forms: maybe not the privileged one
                risk = lower(risk, 1)
            out.append(Change(
                "capability+syscall", f"{cap_name} + {call}", "added",
                "" if cap_name not in caps_old else f"{cap_name} without {call}",
                f"{cap_name} with {call} {nb.text()}", risk,
                f"{call} is allowed and {cap_name} unlocks its privileged form: {cap.why}",
                "", _where(nb.first_source(), new.profile_file)))
    return out


def _default_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    a, b = old.seccomp.default, new.seccomp.default
    if (a.action, a.errno if a.action == "deny" else 0) == (b.action, b.errno if b.action == "deny" else 0):
        return []
    ra, rb = book.default_rank(a.action), book.default_rank(b.action)
    before, after = _action_text(a.action, a.errno), _action_text(b.action, b.errno)
    ow, nw = _where(a.source, old.profile_file), _where(b.source, new.profile_file)
    if rb > ra:
        v = book.default_loosened(b.action)
        return [Change("default action", "syscalls.default", "widened", before, after,
                       v.risk, v.why, ow, nw)]
    if rb < ra:
        return [Change("default action", "syscalls.default", "narrowed", before, after, "info",
                       "calls the profile does not name are refused more strictly", ow, nw)]
    return [Change("default action", "syscalls.default", "changed", before, after, "info",
                   "unnamed calls fail with another errno", ow, nw)]


# -- filesystem -------------------------------------------------------------------------

def _mount_text(m: Mount) -> str:
    if m.type == "bind":
        text = f"bind {m.source} {'ro' if m.readonly else 'rw'}"
    elif m.type == "tmpfs":
        text = "tmpfs" + (f" size={m.size}" if m.size else "") + (" ro" if m.readonly else "")
    else:
        text = m.type
    if m.options:
        text += " " + ",".join(m.options)
    return text


def _mount_added_verdict(m: Mount, book: RiskBook) -> tuple[Level, str]:
    if m.type == "bind":
        v = book.mount(m.source, m.readonly)
        return v.risk, v.why
    if m.type == "proc":
        return "low", "a proc filesystem of the sandbox's own pid namespace"
    if m.type == "dev":
        return "low", "a minimal /dev of safe device nodes"
    return "info", "an in-memory filesystem, nothing of the host"


def _mount_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    mo = {m.target: m for m in old.gofer.mounts}
    mn = {m.target: m for m in new.gofer.mounts}
    out = []
    for target in sorted(set(mo) | set(mn)):
        a, b = mo.get(target), mn.get(target)
        if a is not None and b is not None and _mount_key(a) == _mount_key(b):
            continue
        ow = _where(a.source_loc) if a else ""
        nw = _where(b.source_loc) if b else ""
        if a is None:
            assert b is not None
            risk, why = _mount_added_verdict(b, book)
            out.append(Change("mount", target, "added", "", _mount_text(b), risk, why, ow, nw))
            continue
        if b is None:
            out.append(Change("mount", target, "removed", _mount_text(a), "", "info",
                              "the sandbox no longer sees this mount", ow, nw))
            continue
        before, after = _mount_text(a), _mount_text(b)
        if a.type != b.type or a.source != b.source:
            risk, why = _mount_added_verdict(b, book)
            out.append(Change("mount", target, "changed", before, after, risk,
                              f"another source: {why}", ow, nw))
        elif a.readonly and not b.readonly:
            risk, why = _mount_added_verdict(b, book)
            out.append(Change("mount", target, "widened", before, after, risk,
                              f"now writable: {why}", ow, nw))
        elif b.readonly and not a.readonly:
            out.append(Change("mount", target, "narrowed", before, after, "info",
                              "now read-only", ow, nw))
        elif set(a.options) - set(b.options):
            gone = ",".join(sorted(set(a.options) - set(b.options)))
            out.append(Change("mount", target, "widened", before, after, "low",
                              f"mount options dropped ({gone})", ow, nw))
        elif (b.size or 0) > (a.size or 0) or (a.size and not b.size):
            out.append(Change("mount", target, "widened", before, after, "low",
                              "a larger in-memory filesystem", ow, nw))
        else:
            out.append(Change("mount", target, "narrowed", before, after, "info",
                              "stricter options or a smaller size", ow, nw))
    return out


def _mount_key(m: Mount) -> tuple:
    return (m.type, m.source, m.readonly, m.size, tuple(sorted(m.options)))


def _root_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    a, b = old.gofer.root, new.gofer.root
    ka = (a.source, a.readonly, a.overlay, a.upper_dir, a.keep_upper, a.cache)
    kb = (b.source, b.readonly, b.overlay, b.upper_dir, b.keep_upper, b.cache)
    if ka == kb:
        return []

    def text(r) -> str:
        t = f"{r.source} {'ro' if r.readonly else 'rw'} overlay={r.overlay}"
        return (t + (f" upper={r.upper_dir}" if r.upper_dir else "")
                + (" cache=shared" if r.cache == "shared" else ""))

    def host_writable(r) -> bool:
        return not r.readonly and r.overlay == "none"

    ow, nw = _where(a.source_loc, old.profile_file), _where(b.source_loc, new.profile_file)
    if host_writable(b) and (not host_writable(a) or a.source != b.source):
        v = book.mount(b.source, False)
        return [Change("root", "filesystem.root", "widened", text(a), text(b), v.risk,
                       f"writes reach the host root directly, without an overlay: {v.why}",
                       ow, nw)]
    if a.source != b.source:
        v = book.mount(b.source, b.readonly or b.overlay != "none")
        return [Change("root", "filesystem.root", "changed", text(a), text(b), v.risk,
                       f"the root is built from another host directory: {v.why}", ow, nw)]
    if host_writable(a) and not host_writable(b):
        return [Change("root", "filesystem.root", "narrowed", text(a), text(b), "info",
                       "host root no longer writable", ow, nw)]
    if a.readonly and not b.readonly:
        return [Change("root", "filesystem.root", "widened", text(a), text(b), "low",
                       "the root is writable, into its overlay only", ow, nw)]
    if b.keep_upper and not a.keep_upper:
        return [Change("root", "filesystem.root", "widened", text(a), text(b), "low",
                       "the overlay's writes are kept on the host after the run", ow, nw)]
    if (a.source, a.readonly, a.overlay, a.upper_dir, a.keep_upper) == \
            (b.source, b.readonly, b.overlay, b.upper_dir, b.keep_upper):
        how = ("may be answered from the Sentry's cache" if b.cache == "exclusive"
               else "all go to the Gofer")
        return [Change("root", "filesystem.root", "changed", text(a), text(b), "info",
                       f"stat calls {how} (no change to what the program may reach)", ow, nw)]
    return [Change("root", "filesystem.root", "changed", text(a), text(b), "info",
                   "the root's overlay settings changed", ow, nw)]


def _path_rule_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    out: list[Change] = []
    for label, ra, rb in (("deny", old.gofer.deny, new.gofer.deny),
                          ("readonly", old.gofer.readonly, new.gofer.readonly)):
        da: dict[str, PathRule] = {r.glob: r for r in ra}
        db: dict[str, PathRule] = {r.glob: r for r in rb}
        what = f"path rule ({label})"
        for glob in sorted(set(da) | set(db)):
            a, b = da.get(glob), db.get(glob)
            ow = _where(a.source) if a else ""
            nw = _where(b.source) if b else ""
            if a is None:
                out.append(Change(what, glob, "added", "", f"{label} {glob}", "info",
                                  f"matching paths are now {'hidden' if label == 'deny' else 'read-only'}",
                                  ow, nw))
            elif b is None:
                secret = book.is_secret_glob(glob)
                if label == "deny":
                    risk: Level = "high" if secret else "medium"
                    why = ("paths that hold secrets become visible" if secret
                           else "paths that were hidden become visible")
                else:
                    risk = "high" if secret else "medium"
                    why = "paths that were read-only become writable where their mount is"
                out.append(Change(what, glob, "removed", f"{label} {glob}", "", risk, why, ow, nw))
            elif label == "deny" and a.errno != b.errno:
                import errno as _e

                out.append(Change(what, glob, "changed",
                                  f"deny {_e.errorcode.get(a.errno, a.errno)}",
                                  f"deny {_e.errorcode.get(b.errno, b.errno)}", "info",
                                  "refused with another errno (ENOENT hides, EACCES admits it exists)",
                                  ow, nw))
    return out


def _mediation_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    a, b = old.gofer.mediation, new.gofer.mediation
    if a == b:
        return []
    w = (old.profile_file, new.profile_file)
    moved = mediation_moves(old, new)
    calls = f" ({len(moved)} path calls: {', '.join(moved[:4])}{', ...' if len(moved) > 4 else ''})" \
        if moved else ""
    if b == "direct":
        return [Change("mediation", "filesystem.mediation", "widened", a, b, "high",
                       f"the kernel opens paths itself{calls}: the Gofer no longer resolves "
                       "them, so path rules rely on mounts alone", *w)]
    return [Change("mediation", "filesystem.mediation", "narrowed", a, b, "info",
                   f"every path is resolved by the Gofer{calls}", *w)]


# -- network ----------------------------------------------------------------------------

def _egress_key(e: EgressRule) -> tuple:
    return (e.host or "", e.cidr or "", e.protocol)


def _egress_text(e: EgressRule) -> str:
    dest = e.host or e.cidr or "?"
    ports = ",".join(str(p) for p in e.ports) if e.ports else "any port"
    return f"{dest} {ports} {e.protocol}"


def _egress_verdict(e: EgressRule, book: RiskBook) -> tuple[Level, str]:
    if book.is_any(e.cidr):
        v = book.network_verdict("egress_any")
    elif e.cidr and book.is_internal(e.cidr):
        v = book.network_verdict("egress_internal")
    else:
        v = book.network_verdict("egress_host")
    if not e.ports:
        p = book.network_verdict("egress_ports_any")
        if level_rank(p.risk) > level_rank(v.risk):
            return p.risk, p.why
        return v.risk, v.why + ", on every port"
    return v.risk, v.why


def _network_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    out: list[Change] = []
    na, nb = old.network, new.network
    ow, nw = _where(na.source, old.profile_file), _where(nb.source, new.profile_file)
    modes = book.network_modes()
    if na.mode != nb.mode:
        if modes.index(nb.mode) > modes.index(na.mode):
            v = book.network_widened(nb.mode)
            out.append(Change("network mode", "network.mode", "widened", na.mode, nb.mode,
                              v.risk, v.why, ow, nw))
        else:
            out.append(Change("network mode", "network.mode", "narrowed", na.mode, nb.mode,
                              "info", "less network access", ow, nw))
    ea = {_egress_key(e): e for e in na.egress}
    eb = {_egress_key(e): e for e in nb.egress}
    for k in sorted(set(ea) | set(eb)):
        a, b = ea.get(k), eb.get(k)
        subj = k[0] or k[1]
        w_old = _where(a.source) if a else ""
        w_new = _where(b.source) if b else ""
        if a is None:
            assert b is not None
            risk, why = _egress_verdict(b, book)
            out.append(Change("egress", subj, "added", "", _egress_text(b), risk, why,
                              w_old, w_new))
        elif b is None:
            out.append(Change("egress", subj, "removed", _egress_text(a), "", "info",
                              "the destination is no longer reachable", w_old, w_new))
        elif set(a.ports) != set(b.ports):
            if not b.ports:
                v = book.network_verdict("egress_ports_any")
                out.append(Change("egress", subj, "widened", _egress_text(a), _egress_text(b),
                                  v.risk, v.why, w_old, w_new))
            elif a.ports and set(b.ports) > set(a.ports):
                out.append(Change("egress", subj, "widened", _egress_text(a), _egress_text(b),
                                  "low", "more ports of a destination already allowed",
                                  w_old, w_new))
            elif not a.ports or set(b.ports) < set(a.ports):
                out.append(Change("egress", subj, "narrowed", _egress_text(a), _egress_text(b),
                                  "info", "fewer ports", w_old, w_new))
            else:
                out.append(Change("egress", subj, "changed", _egress_text(a), _egress_text(b),
                                  "low", "other ports of a destination already allowed",
                                  w_old, w_new))
    pa = {(p.sandbox_port, p.protocol): p for p in na.publish}
    pb = {(p.sandbox_port, p.protocol): p for p in nb.publish}
    for k in sorted(set(pa) | set(pb)):
        a2, b2 = pa.get(k), pb.get(k)
        subj = f"sandbox {k[0]}/{k[1]}"
        w_old = _where(a2.source) if a2 else ""
        w_new = _where(b2.source) if b2 else ""
        ta = f"{a2.host_addr}:{a2.host_port}" if a2 else ""
        tb = f"{b2.host_addr}:{b2.host_port}" if b2 else ""
        if ta == tb:
            continue
        if b2 is None:
            out.append(Change("publish", subj, "removed", ta, tb, "info",
                              "the port is no longer published", w_old, w_new))
            continue
        wide = b2.host_addr in ("0.0.0.0", "::", "")
        v = book.network_verdict("publish_all_interfaces" if wide else "publish_local")
        if a2 is None:
            out.append(Change("publish", subj, "added", ta, tb, v.risk, v.why, w_old, w_new))
        elif wide and a2.host_addr not in ("0.0.0.0", "::", ""):
            out.append(Change("publish", subj, "widened", ta, tb, v.risk, v.why, w_old, w_new))
        else:
            out.append(Change("publish", subj, "changed", ta, tb,
                              "info" if not wide else v.risk, "published on another host port",
                              w_old, w_new))
    if tuple(na.dns) != tuple(nb.dns):
        out.append(Change("network", "network.dns", "changed", ",".join(na.dns) or "host's",
                          ",".join(nb.dns) or "host's", "info", "other upstream DNS servers",
                          ow, nw))
    return out


# -- launch -----------------------------------------------------------------------------

def _capability_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    a = {book.capability(c).name for c in old.launch.capabilities}
    b = {book.capability(c).name for c in new.launch.capabilities}
    w = (old.profile_file, new.profile_file)
    out = []
    for cap in sorted(b - a):
        cr = book.capability(cap)
        out.append(Change("capability", cap, "added", "", cap, cr.risk, cr.why, *w))
    for cap in sorted(a - b):
        out.append(Change("capability", cap, "removed", cap, "", "info",
                          "the capability is dropped", *w))
    return out


def _uname_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    a, b = old.sentry.uname, new.sentry.uname
    fields = ("sysname", "nodename", "release", "version", "machine", "domainname")
    diffs = [f for f in fields if getattr(a, f) != getattr(b, f)]
    la, lb = old.launch, new.launch
    if la.hostname != lb.hostname and "nodename" not in diffs:
        diffs.append("hostname")
    if not diffs:
        return []

    def val(obj, launch, f):
        return launch.hostname if f == "hostname" else getattr(obj, f)

    before = ", ".join(f"{f}={val(a, la, f)}" for f in diffs)
    after = ", ".join(f"{f}={val(b, lb, f)}" for f in diffs)
    return [Change("uname", "uname", "changed", before, after, "info",
                   "what the program is told about the kernel; no effect on isolation",
                   old.profile_file, new.profile_file)]


def _id_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    la, lb = old.launch, new.launch
    out: list[Change] = []
    w = (old.profile_file, new.profile_file)
    if (la.uid, la.gid) != (lb.uid, lb.gid):
        before, after = f"uid={la.uid} gid={la.gid}", f"uid={lb.uid} gid={lb.gid}"
        if lb.uid == 0 and la.uid != 0:
            out.append(Change("ids", "process.user", "widened", before, after, "medium",
                              "the program runs as root inside the sandbox, which reaches "
                              "kernel code unprivileged users cannot", *w))
        elif la.uid == 0 and lb.uid != 0:
            out.append(Change("ids", "process.user", "narrowed", before, after, "info",
                              "the program no longer runs as root", *w))
        else:
            out.append(Change("ids", "process.user", "changed", before, after, "info",
                              "another unprivileged identity", *w))
    if la.no_new_privs and not lb.no_new_privs:
        out.append(Change("ids", "no_new_privs", "widened", "true", "false", "critical",
                          "set-user-id programs can gain privileges and seccomp can be "
                          "loosened by exec", *w))
    elif lb.no_new_privs and not la.no_new_privs:
        out.append(Change("ids", "no_new_privs", "narrowed", "false", "true", "info",
                          "exec can no longer gain privileges", *w))
    return out


def _rlimit_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    ra: dict[str, Rlimit] = {r.name: r for r in old.launch.rlimits}
    rb: dict[str, Rlimit] = {r.name: r for r in new.launch.rlimits}
    out = []
    for name in sorted(set(ra) | set(rb)):
        a, b = ra.get(name), rb.get(name)
        ow = _where(a.source, old.profile_file) if a else ""
        nw = _where(b.source, new.profile_file) if b else ""
        ta = f"{a.soft}/{a.hard}" if a else "unlimited (host's)"
        tb = f"{b.soft}/{b.hard}" if b else "unlimited (host's)"
        if a and b and (a.soft, a.hard) == (b.soft, b.hard):
            continue
        if b is None or (a is not None and (b.soft > a.soft or b.hard > a.hard)):
            out.append(Change("rlimit", name, "widened" if b else "removed", ta, tb, "low",
                              f"a higher {name} limit lets the program use more", ow, nw))
        else:
            out.append(Change("rlimit", name, "narrowed" if a else "added", ta, tb, "info",
                              f"a lower {name} limit", ow, nw))
    return out


def _resource_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    a, b = old.launch.resources, new.launch.resources
    ow, nw = _where(a.source, old.profile_file), _where(b.source, new.profile_file)
    out = []
    for f in ("memory", "pids", "cpu"):
        va, vb = getattr(a, f), getattr(b, f)
        if va == vb:
            continue
        ta = "unlimited" if va is None else str(va)
        tb = "unlimited" if vb is None else str(vb)
        if vb is None or (va is not None and vb > va):
            risk: Level = "medium" if (f == "pids" and vb is None) else "low"
            out.append(Change("resources", f, "widened" if vb is not None else "removed", ta, tb,
                              risk, f"the sandbox may use more {f}; a runaway program "
                              "affects the host more", ow, nw))
        else:
            out.append(Change("resources", f, "narrowed" if va is not None else "added", ta, tb,
                              "info", f"less {f}", ow, nw))
    return out


def _platform_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    a, b = old.launch.platform, new.launch.platform
    if a == b:
        return []
    return [Change("platform", "platform", "changed", a, b, "low",
                   "the same rules on another delivery mechanism: ptrace stops every call "
                   "(slower), seccomp-notify keeps allowed calls in the kernel",
                   old.profile_file, new.profile_file)]


def _audit_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    a, b = old.sentry.audit, new.sentry.audit
    out = []
    for f in ("denials", "file_access", "exec", "network"):
        va, vb = getattr(a, f), getattr(b, f)
        if va == vb:
            continue
        if va and not vb:
            out.append(Change("audit", f"audit.{f}", "removed", "on", "off", "low",
                              "these refusals are no longer recorded, so explain cannot "
                              "answer for them", old.profile_file, new.profile_file))
        else:
            out.append(Change("audit", f"audit.{f}", "added", "off", "on", "info",
                              "these events are recorded", old.profile_file, new.profile_file))
    return out


def _process_changes(old: Plan, new: Plan, book: RiskBook) -> list[Change]:
    la, lb = old.launch, new.launch
    out = []
    w = (old.profile_file, new.profile_file)
    if la.command != lb.command:
        out.append(Change("process", "process.command", "changed", " ".join(la.command),
                          " ".join(lb.command), "info", "another command runs", *w))
    if la.cwd != lb.cwd:
        out.append(Change("process", "process.cwd", "changed", la.cwd, lb.cwd, "info",
                          "another working directory", *w))
    ea, eb = dict(la.env), dict(lb.env)
    for k in sorted(set(ea) | set(eb)):
        if ea.get(k) != eb.get(k):
            out.append(Change("process", f"env {k}",
                              "added" if k not in ea else "removed" if k not in eb else "changed",
                              ea.get(k, ""), eb.get(k, ""), "info",
                              "the program's environment changed", *w))
    return out


_SECTIONS: tuple[Callable[[Plan, Plan, RiskBook], list[Change]], ...] = (
    _default_changes, _syscall_changes, _combo_changes, _capability_changes, _root_changes,
    _mount_changes, _path_rule_changes, _mediation_changes, _network_changes, _id_changes,
    _uname_changes, _rlimit_changes, _resource_changes, _platform_changes, _audit_changes,
    _process_changes,
)


@dataclass(frozen=True)
class Locator:
    """Finds where a value was written in a resolved profile (for rows whose Plan part
    carries no Source: capabilities, uname, ids, platform, audit, process)."""

    root: Any  # engine.node.Node of the merged document, or None
    fallback: str  # the profile file, when nothing better is known

    def where(self, path: tuple[str, ...], value: str | None = None) -> str:
        node = self.root.at(*path) if self.root is not None else None
        if node is None:
            return self.fallback
        if value is not None and node.is_seq:
            for item in node.seq():
                if str(item.value).upper() in (value, value.removeprefix("CAP_")):
                    return item.loc.where()
        return node.source_loc().where()


def _doc_path(c: Change) -> tuple[tuple[str, ...], str | None] | None:
    if c.what == "capability":
        return ("capabilities", "keep"), c.subject
    if c.what == "uname":
        return ("uname",), None
    if c.what == "ids":
        return (("process", "no_new_privs") if c.subject == "no_new_privs"
                else ("process", "user")), None
    if c.what == "platform":
        return ("platform",), None
    if c.what == "audit":
        return ("audit", c.subject.split(".", 1)[1]), None
    if c.what == "mediation":
        return ("filesystem", "mediation"), None
    if c.what == "process":
        if c.subject.startswith("env "):
            return ("process", "env", c.subject[4:]), None
        return tuple(c.subject.split(".")), None
    return None


def _located(c: Change, old: Plan, new: Plan, lo: Locator | None, ln: Locator | None) -> Change:
    found = _doc_path(c)
    if found is None:
        return c
    path, value = found
    ow, nw = c.old_where, c.new_where
    if lo is not None and ow == old.profile_file:
        ow = lo.where(path, value)
    if ln is not None and nw == new.profile_file:
        nw = ln.where(path, value)
    if (ow, nw) == (c.old_where, c.new_where):
        return c
    return Change(c.what, c.subject, c.change, c.before, c.after, c.risk, c.why, ow, nw)


def diff_plans(old: Plan, new: Plan, book: RiskBook, old_loc: Locator | None = None,
               new_loc: Locator | None = None) -> list[Change]:
    """Every change from `old` to `new`, riskiest first (stable within a level). With
    locators, rows the Plan has no line for get the line from the profile text."""
    changes: list[Change] = []
    for section in _SECTIONS:
        changes.extend(_located(c, old, new, old_loc, new_loc) for c in section(old, new, book))
    return sorted(changes, key=lambda c: -c.rank)


def max_risk(changes: Sequence[Change]) -> Level | None:
    if not changes:
        return None
    return LEVELS[max(c.rank for c in changes)]


def reaches(changes: Iterable[Change], level: Level) -> bool:
    return any(c.rank >= level_rank(level) for c in changes)


__all__ = ["Change", "Locator", "Side", "diff_plans", "max_risk", "reaches", "parse_side",
           "load_side", "materialise"]


# -- inputs: files or git revisions ------------------------------------------------------

@dataclass(frozen=True)
class Side:
    """One side of a diff as the user named it: a file, or `REV:path` in git."""

    spec: str
    rev: str | None  # None: a file in the working tree
    path: str  # the file (rev None) or the path inside the repository


def parse_side(spec: str) -> Side:
    """`path/to/profile.yaml` or `REV:path` (as `git show` takes it). An existing file
    wins over the revision reading, so a file name with a colon still works."""
    import os

    if os.path.exists(spec) or ":" not in spec:
        return Side(spec, None, spec)
    rev, path = spec.split(":", 1)
    if not rev or not path:
        from .errors import ProfileError, Diagnostic

        raise ProfileError([Diagnostic(spec, 1, 1, f"cannot read {spec!r} as REV:path",
                                       hint="write it as HEAD~1:profiles/app.yaml")])
    return Side(spec, rev, path)


def _git(args: list[str], cwd: str) -> bytes:
    import subprocess

    from .errors import HostError, SandboxctlError

    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=120)
    except FileNotFoundError as exc:
        raise HostError("git is not installed, so a REV:path profile cannot be read.",
                        hint="install git (apt-get install git) or pass profile files") from exc
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SandboxctlError(f"git {' '.join(args)}: {msg[-1] if msg else 'failed'}",
                              hint="check the revision and the path (git show REV:path must work)")
    return proc.stdout


def materialise(side: Side, tmp: str, cwd: str = ".") -> tuple[str, str, str]:
    """Write the tree of `side.rev` under `tmp` so relative `extends` and mount sources
    resolve as they did in that revision. Returns (profile file under tmp, repository
    top-level directory, path of the profile inside the repository)."""
    import io
    import os
    import tarfile

    top = _git(["rev-parse", "--show-toplevel"], cwd).decode().strip()
    prefix = _git(["rev-parse", "--show-prefix"], cwd).decode().strip()
    rev = side.rev or "HEAD"
    commit = _git(["rev-parse", "--verify", "--quiet", rev + "^{commit}"], cwd).decode().strip()
    path = side.path
    if path.startswith(("./", "../")):
        path = os.path.normpath(os.path.join(prefix, path))
    # `git cat-file -e` gives a clear error for a path missing in that revision.
    _git(["cat-file", "-e", f"{commit}:{path}"], cwd)
    data = _git(["archive", "--format=tar", commit], top)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, members=_safe_members(tar, tmp))
    return os.path.join(tmp, path), top, path


def _safe_members(tar, dest: str):
    """Regular files, directories and symlinks that stay inside `dest` (a tree from git
    archive is trusted little more than the pull request it came with)."""
    import os

    root = os.path.realpath(dest)
    for m in tar.getmembers():
        target = os.path.realpath(os.path.join(root, m.name))
        if not (target == root or target.startswith(root + os.sep)):
            continue
        if m.issym():
            link = os.path.realpath(os.path.join(os.path.dirname(target), m.linkname))
            if not (link == root or link.startswith(root + os.sep)):
                continue
        elif not (m.isfile() or m.isdir()):
            continue
        m.mode &= 0o755
        yield m


def _remap(plan: Plan, old_prefix: str, new_prefix: str) -> Plan:
    """Rewrite host paths under `old_prefix` (a materialised tree) to `new_prefix` (the
    repository), so a mount source reads the same on both sides of a diff."""
    old_prefix = old_prefix.rstrip("/")

    def walk(v):
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and (v == old_prefix or v.startswith(old_prefix + "/")):
            return new_prefix.rstrip("/") + v[len(old_prefix):]
        return v

    return Plan.from_dict(walk(plan.to_dict()))


def _locator(path: str, display: str | None, plan: Plan) -> Locator:
    from .extends import resolve

    try:
        return Locator(resolve(path, display).root, plan.profile_file)
    except Exception:  # the Plan compiled; a missing line number is not worth failing for
        return Locator(None, plan.profile_file)


def load_side(side: Side, compile_fn: Callable[..., Plan],
              cwd: str = ".") -> tuple[Plan, Locator]:
    """Compile one side of a diff to its Plan (and a Locator into its text).
    `compile_fn(path, display=...)` is the profile compiler (engine.compile.compile_profile)."""
    import os
    import tempfile

    if side.rev is None and side.path.endswith(".json"):
        from .errors import SandboxctlError

        try:
            with open(side.path, encoding="utf-8") as fh:
                plan = Plan.from_json(fh.read())
        except OSError as exc:
            raise SandboxctlError(f"cannot read the plan {side.path}: {exc.strerror}.",
                                  hint="give a profile file, a built-in name or a plan .json") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise SandboxctlError(f"{side.path} is not a Plan written by `sandboxctl compile` ({exc}).",
                                  hint="recompile it with this version of sandboxctl") from exc
        return plan, Locator(None, plan.profile_file)
    if side.rev is None:
        path, display = side.path, None
        if not os.path.exists(side.path) and "/" not in side.path:
            from .extends import builtin_path, display_name

            builtin = builtin_path(side.path)  # `default`, `python-script`, ...
            if builtin is not None:
                path, display = str(builtin), display_name(builtin)
        plan = compile_fn(path, display=display) if display else compile_fn(path)
        return plan, _locator(path, display, plan)
    with tempfile.TemporaryDirectory(prefix="sandboxctl-diff-") as tmp:
        real_tmp = os.path.realpath(tmp)
        file, top, inner = materialise(side, real_tmp, cwd)
        display = f"{side.rev}:{inner}"
        plan = compile_fn(file, display=display)
        return _remap(plan, real_tmp, top), _locator(file, display, plan)
