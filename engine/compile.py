"""Compile a profile (resolved, validated) into a Plan.

    compile_profile("profiles/examples/python-script.yaml") -> Plan
    compile_builtin("default") -> Plan

The rules the compiler follows are written in docs/profile-format.md ("How a profile
compiles") and docs/internals.md; the short form:
- per syscall, the entries of the most specific profile in the extends chain decide, and
  within it a name written out beats a name reached through an @group;
- `uname` is emulated by the Sentry, `execve`/`execveat` are trapped and observed,
  `sethostname`/`setdomainname` are denied, unless the profile names them itself;
- with filesystem.mediation gofer, the allowed @gofer-mediated calls are emulated, and
  with the root's `cache: exclusive` the allowed @gofer-observed calls are trapped and
  observed (they change a file's attributes through a descriptor: the Sentry's
  attribute cache must hear of them);
- deny/kill/log rules, and a deny/kill/log default, are trapped when audit.denials is on.
Rules are ordered by syscall number, then as written; the Plan's JSON is deterministic.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import constants, syscalls
from .errors import Diagnostic, ProfileError
from .extends import Resolved, apply_overrides, builtin_path, display_name, resolve
from .groups import expand, load_groups
from .node import Loc, Node
from .plan import (
    PLAN_VERSION, ArgCond, AuditConfig, DefaultAction, EgressRule, GoferConfig, LaunchConfig,
    Mount, NetworkConfig, PathRule, Plan, PublishRule, Resources, Rlimit, RootConfig,
    SeccompPlan, SentryConfig, Source, SyntheticFile, SyscallRule, UnameConfig,
)

SECTIONS = ("allow", "deny", "kill", "log")
ALWAYS_DENIED = ("sethostname", "setdomainname")
EXEC_CALLS = ("execve", "execveat")
_U64 = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class Entry:
    """One syscall named by one profile entry (an @group entry gives one per member)."""

    name: str
    action: str
    errno: int
    args: tuple[ArgCond, ...]
    depth: int  # extends level: 0 = the file asked for
    via_group: bool
    order: int
    source: Source


def _src(loc: Loc) -> Source:
    return Source(loc.file, loc.line, loc.col, loc.text)


def compile_profile(path: str | Path, *, overrides: Mapping[str, Any] | None = None,
                    display: str | None = None) -> Plan:
    """Load, validate and compile the profile at `path`. Raises ProfileError with every
    problem found. `overrides` replaces values by dotted path after merging, e.g.
    {"process.command": ["sh", "-c", "id"], "platform": "ptrace"}."""
    return compile_resolved(path, overrides=overrides, display=display)[0]


def compile_resolved(path: str | Path, *, overrides: Mapping[str, Any] | None = None,
                     display: str | None = None) -> tuple[Plan, Resolved]:
    """compile_profile, also returning the resolved profile (its extends chain)."""
    from .validate import check_document, check_resolved

    res = resolve(path, display)
    diags = [d for doc in res.documents for d in check_document(doc)]
    if overrides:
        res = apply_overrides(res, overrides)
    try:
        diags += check_resolved(res)
    except Exception:  # noqa: BLE001 - the merged profile of invalid files may not hold together
        if not diags:
            raise
    if diags:
        raise ProfileError(diags)
    return build_plan(res), res


def compile_builtin(name: str, *, overrides: Mapping[str, Any] | None = None) -> Plan:
    """Compile a built-in profile by name: "default", "python-script", ..."""
    p = builtin_path(name)
    if p is None:
        from .extends import builtin_names

        raise ProfileError([Diagnostic(name, 1, 1, f"no built-in profile named {name!r}",
                                       hint=f"built-in profiles: {', '.join(builtin_names())}")])
    return compile_profile(p, overrides=overrides, display=display_name(p))


# -- helpers -------------------------------------------------------------------------

def _val(root: Node, *path: str, default: Any = None) -> Any:
    n = root.at(*path)
    return default if n is None or n.value is None else n.value


def _root_cache(root: Node) -> str:
    """filesystem.root.cache: `exclusive` (the default) or `shared`."""
    return str(_val(root, "filesystem", "root", "cache", default=RootConfig().cache))


def _loc_of(root: Node, *paths: tuple[str, ...]) -> Source:
    for p in paths:
        n = root.at(*p)
        if n is not None:
            return _src(n.source_loc())
    return _src(root.loc)


def _errno(node: Node | None, default: int) -> int:
    if node is None:
        return default
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    v = constants.errno_value(str(node.value))
    if v is None:
        raise ProfileError([Diagnostic(node.loc.file, node.loc.line, node.loc.col,
                                       f"unknown errno {node.value!r}")])
    return v


def _args(node: Node | None) -> tuple[ArgCond, ...]:
    out = []
    for c in node.seq() if node is not None else []:
        value, symbol, _ = constants.parse_arg_value(_val(c, "value", default=0))
        mask_v, mask_sym, _ = constants.parse_arg_value(_val(c, "mask", default=0))
        # Negative numbers are compared as the kernel sees the register: 64-bit unsigned.
        out.append(ArgCond(int(_val(c, "index", default=0)), str(_val(c, "op", default="eq")),  # type: ignore[arg-type]
                           int(value or 0) & _U64, int(mask_v or 0) & _U64, symbol or mask_sym))
    return tuple(out)


def collect_entries(root: Node) -> list[Entry]:
    """Every (syscall, action) the profile's syscalls sections name, in document order."""
    groups = load_groups()
    entries: list[Entry] = []
    order = 0
    for section in SECTIONS:
        sec = root.at("syscalls", section)
        for item in sec.seq() if sec is not None else []:
            if item.is_map:
                names_node = item.get("names")
                names = [n.value for n in names_node.seq()] if names_node is not None else []
                if item.get("name") is not None:
                    names.insert(0, item.get("name").value)
                action = str(_val(item, "action", default=section))
                errno_default = constants.errno_value("EPERM") if action == "deny" else 0
                errno = _errno(item.get("errno"), errno_default or 0)
                args = _args(item.get("args"))
            else:
                names = [item.value]
                action = section
                errno = constants.errno_value("EPERM") if section == "deny" else 0
                args = ()
            src = _src(item.loc)
            for name in names:
                name = str(name)
                if name.startswith("@"):
                    members = expand(name, groups)
                    for m in members:
                        entries.append(Entry(m, action, errno, args, item.depth, True, order, src))
                        order += 1
                else:
                    entries.append(Entry(name, action, errno, args, item.depth, False, order, src))
                    order += 1
    return entries


def deciding_entries(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Per syscall, the entries that decide it: the most specific extends level, and
    within it names written out over names reached through a group."""
    by_name: dict[str, list[Entry]] = {}
    for e in entries:
        by_name.setdefault(e.name, []).append(e)
    out: dict[str, list[Entry]] = {}
    for name, es in by_name.items():
        best = min((e.depth, e.via_group) for e in es)
        chosen = [e for e in es if (e.depth, e.via_group) == best]
        # Conditional rules first (as written), then the unconditional fallback, so the
        # ordered evaluation in engine.filter.decide matches what the entries say.
        out[name] = sorted(chosen, key=lambda e: (not e.args, e.order))
    return out


def _rule(e: Entry, *, action: str | None = None, trap: bool = False,
          handler: str | None = None) -> SyscallRule:
    nr = syscalls.number(e.name)
    if nr is None:
        s = e.source
        raise ProfileError([Diagnostic(s.file, s.line, s.col, f"unknown syscall {e.name!r} on x86_64")])
    return SyscallRule(e.name, nr, action or e.action, e.errno, e.args, trap, handler, e.source)  # type: ignore[arg-type]


def seccomp_rules(root: Node, audit: AuditConfig) -> tuple[DefaultAction, tuple[SyscallRule, ...]]:
    d = root.at("syscalls", "default")
    d_action = str(_val(root, "syscalls", "default", "action", default="allow"))
    d_errno = _errno(root.at("syscalls", "default", "errno"),
                     constants.errno_value("EPERM") if d_action == "deny" else 0)  # type: ignore[arg-type]
    d_trap = audit.denials and d_action in ("deny", "kill", "log")
    default = DefaultAction(d_action, d_errno if d_action == "deny" else 0, d_trap,  # type: ignore[arg-type]
                            _src(d.source_loc()) if d is not None else None)
    default_allows = d_action in ("allow", "log")
    deciding = deciding_entries(collect_entries(root))
    mediation = str(_val(root, "filesystem", "mediation", default="gofer"))
    mediated = set(expand("gofer-mediated")) if mediation == "gofer" else set()
    cache = _root_cache(root)
    observed = (set(expand("gofer-observed")) - mediated
                if mediation == "gofer" and cache == "exclusive" else set())

    def audited(r: SyscallRule) -> SyscallRule:
        if r.action in ("deny", "kill", "log") and audit.denials:
            return SyscallRule(r.name, r.nr, r.action, r.errno, r.args, True,
                               "observe" if r.action == "log" else r.handler, r.source)
        return r

    def implicit(name: str, src: Source) -> Entry:
        return Entry(name, "allow", 0, (), -1, False, -1, src)

    def trapped(es: list[Entry], action: str, handler: str) -> list[SyscallRule]:
        """The entries' rules, the allowing ones (allow, log) trapped to `handler`."""
        return [_rule(e, action=action, trap=True, handler=handler)
                if e.action in ("allow", "log") else audited(_rule(e)) for e in es]

    rules: list[SyscallRule] = []
    names = (set(deciding) | mediated | observed | {"uname"} | set(EXEC_CALLS)
             | set(ALWAYS_DENIED))
    for name in names:
        es = deciding.get(name, [])
        # Special calls below get an implicit last rule unless an entry without argument
        # conditions already decides every case.
        has_fallback = any(not e.args for e in es)
        if name == "uname":
            src = _loc_of(root, ("uname",), ("metadata",))
            es = es + ([implicit(name, src)] if default_allows and not has_fallback else [])
            rules.extend(trapped(es, "emulate", "uname"))
        elif name in EXEC_CALLS:
            # The launcher itself execs the program: exec is allowed unless denied by name.
            src = _loc_of(root, ("process", "command"), ("audit", "exec"), ("metadata",))
            es = es + ([] if has_fallback else [implicit(name, src)])
            rules.extend(trapped(es, "allow", "execve"))
        elif name in ALWAYS_DENIED and not has_fallback:
            src = _loc_of(root, ("uname", "hostname"), ("uname",), ("metadata",))
            rules.extend(audited(_rule(e)) for e in es)
            rules.append(audited(_rule(Entry(name, "deny", constants.errno_value("EPERM") or 1,
                                             (), -1, False, -1, src))))
        elif name in observed:
            # run by the kernel as the profile says; the Sentry only drops what it cached
            # about the file first
            src = _loc_of(root, ("filesystem", "root", "cache"), ("filesystem", "root"),
                          ("filesystem",), ("metadata",))
            if not has_fallback and default_allows:
                es = es + [implicit(name, src)]
            rules.extend(trapped(es, "allow", "fd_meta"))
        elif name in mediated:
            src = _loc_of(root, ("filesystem", "mediation"), ("filesystem",), ("metadata",))
            if not has_fallback and default_allows:
                es = es + [implicit(name, src)]
            rules.extend(trapped(es, "emulate", name))
        else:
            rules.extend(audited(_rule(e)) for e in es)
    order = {id(r): i for i, r in enumerate(rules)}
    rules.sort(key=lambda r: (r.nr, order[id(r)]))
    out: list[SyscallRule] = []
    i = 0
    while i < len(rules):
        j = i
        while j < len(rules) and rules[j].nr == rules[i].nr:
            j += 1
        out.extend(kernel_consistent(rules[i:j], default))
        i = j
    if default_allows:
        out.extend(unknown_call_rules(root, audit))
    return default, tuple(out)


def unknown_call_rules(root: Node, audit: AuditConfig) -> list[SyscallRule]:
    """Calls newer than the syscall table this engine knows are refused with ENOSYS even
    when the default allows: nobody reviewed them (a new mount-family call would
    otherwise pass a default-allow filter untouched). gVisor answers unknown calls the
    same way. Trapped when auditing, so each one is an event."""
    src = _loc_of(root, ("syscalls", "default"), ("syscalls",), ("metadata",))
    enosys = constants.errno_value("ENOSYS") or 38
    return [SyscallRule(f"syscall_{nr}", nr, "deny", enosys, (), audit.denials, None, src)
            for nr in range(syscalls.max_known() + 1, syscalls.NATIVE_LIMIT)]


def _kernel_value(action: str, errno: int, trap: bool) -> tuple[Any, ...]:
    return ("trap",) if trap or action == "emulate" else (action, errno if action == "deny" else 0)


def kernel_consistent(rules: list[SyscallRule], default: DefaultAction) -> list[SyscallRule]:
    """Make one syscall's rules mean the same in the kernel as in Plan order.

    libseccomp does not try rules in order: an unconditional rule overrides every
    conditional one, and overlapping conditional rules with different actions have no
    defined winner. Rules after the first unconditional one can never decide and are
    dropped. When the remaining rules need ordered evaluation (several actions, and not
    just conditional rules over a fallback equal to the default), every rule of the call
    is trapped and the Sentry decides in order (engine.filter.decide)."""
    kept: list[SyscallRule] = []
    for r in rules:
        kept.append(r)
        if not r.args:
            break
    dv = _kernel_value(default.action, default.errno, default.trap)
    values = [_kernel_value(r.action, r.errno, r.trap) for r in kept]
    conditional = {v for v, r in zip(values, kept) if r.args}
    fallback = values[-1] if not kept[-1].args else None
    if len(set(values)) <= 1:
        return kept
    if len(conditional) == 1 and fallback == dv:
        return kept
    return [r if r.trap else SyscallRule(r.name, r.nr, r.action, r.errno, r.args, True,
                                         r.handler or ("observe" if r.action in ("allow", "log") else None),
                                         r.source) for r in kept]


def _uname(root: Node) -> UnameConfig:
    d = UnameConfig()
    return UnameConfig(
        sysname=str(_val(root, "uname", "sysname", default=d.sysname)),
        nodename=str(_val(root, "uname", "hostname", default=d.nodename)),
        release=str(_val(root, "uname", "release", default=d.release)),
        version=str(_val(root, "uname", "version", default=d.version)),
        machine=str(_val(root, "uname", "machine", default=d.machine)),
        domainname=str(_val(root, "uname", "domainname", default=d.domainname)),
    )


def _synthetic(u: UnameConfig, net: NetworkConfig) -> tuple[SyntheticFile, ...]:
    files = [
        SyntheticFile("/etc/hostname", f"{u.nodename}\n"),
        SyntheticFile("/proc/sys/kernel/domainname", f"{u.domainname}\n"),
        SyntheticFile("/proc/sys/kernel/hostname", f"{u.nodename}\n"),
        SyntheticFile("/proc/sys/kernel/osrelease", f"{u.release}\n"),
        SyntheticFile("/proc/sys/kernel/ostype", f"{u.sysname}\n"),
        SyntheticFile("/proc/sys/kernel/version", f"{u.version}\n"),
        SyntheticFile("/proc/version",
                      f"{u.sysname} version {u.release} (sandbox@sandboxctl) {u.version}\n"),
    ]
    if net.mode == "netstack":
        files.append(SyntheticFile("/etc/resolv.conf", f"nameserver {net.gateway}\n"))
    return tuple(sorted(files, key=lambda f: f.path))


def _audit(root: Node) -> AuditConfig:
    d = AuditConfig()
    return AuditConfig(*(bool(_val(root, "audit", f, default=getattr(d, f)))
                         for f in ("denials", "file_access", "exec", "network")))


def _path_rules(node: Node | None, default_errno: int) -> tuple[PathRule, ...]:
    out = []
    for item in node.seq() if node is not None else []:
        if item.is_map:
            out.append(PathRule(str(_val(item, "path")), _errno(item.get("errno"), default_errno),
                                _src(item.loc)))
        else:
            out.append(PathRule(str(item.value), default_errno, _src(item.loc)))
    return tuple(out)


def _host_path(source: str, base: Path) -> str:
    p = Path(source)
    return str(p if p.is_absolute() else (base / p).resolve())


def _gofer(root: Node, base_of: dict[str, Path], synthetic: tuple[SyntheticFile, ...]) -> GoferConfig:
    r = root.at("filesystem", "root")
    rd = RootConfig()

    def base(n: Node) -> Path:
        return base_of.get(n.loc.file, Path.cwd())

    root_cfg = RootConfig(
        source=_host_path(str(_val(root, "filesystem", "root", "source", default=rd.source)),
                          base(r) if r is not None else Path.cwd()),
        readonly=bool(_val(root, "filesystem", "root", "readonly", default=rd.readonly)),
        overlay=str(_val(root, "filesystem", "root", "overlay", default=rd.overlay)),  # type: ignore[arg-type]
        upper_dir=(_host_path(str(_val(root, "filesystem", "root", "upper_dir")), base(r))
                   if r is not None and _val(root, "filesystem", "root", "upper_dir") else None),
        keep_upper=bool(_val(root, "filesystem", "root", "keep_upper", default=False)),
        cache=_root_cache(root),  # type: ignore[arg-type]
        source_loc=_src(r.source_loc()) if r is not None else None,
    )
    mounts = []
    ms = root.at("filesystem", "mounts")
    for m in ms.seq() if ms is not None else []:
        src = _val(m, "source")
        mtype = str(_val(m, "type", default="bind" if src is not None else "tmpfs"))
        opts = _val(m, "options", default=None)
        mounts.append(Mount(
            type=mtype,  # type: ignore[arg-type]
            target=str(_val(m, "target")),
            source=_host_path(str(src), base(m)) if mtype == "bind" and src is not None else None,
            readonly=bool(_val(m, "readonly", default=False)),
            size=constants.parse_size(_val(m, "size")) if _val(m, "size") is not None else None,
            options=tuple(str(o.value) for o in m.at("options").seq()) if opts is not None else (),
            source_loc=_src(m.loc),
        ))
    return GoferConfig(
        mediation=str(_val(root, "filesystem", "mediation", default="gofer")),  # type: ignore[arg-type]
        root=root_cfg,
        mounts=tuple(mounts),
        deny=_path_rules(root.at("filesystem", "deny"), constants.errno_value("ENOENT") or 2),
        readonly=_path_rules(root.at("filesystem", "readonly"), constants.errno_value("EROFS") or 30),
        synthetic_files=synthetic,
    )


def _network(root: Node) -> NetworkConfig:
    d = NetworkConfig(mode="none")
    n = root.get("network")
    egress = []
    eg = root.at("network", "egress")
    for e in eg.seq() if eg is not None else []:
        egress.append(EgressRule(
            cidr=str(ipaddress.ip_network(str(_val(e, "cidr")), strict=False)) if _val(e, "cidr") else None,
            host=str(_val(e, "host")) if _val(e, "host") else None,
            ports=tuple(int(p.value) for p in (e.at("ports").seq() if e.at("ports") else [])),
            protocol=str(_val(e, "protocol", default="any")),  # type: ignore[arg-type]
            source=_src(e.loc),
        ))
    publish = []
    pb = root.at("network", "publish")
    for p in pb.seq() if pb is not None else []:
        host = str(_val(p, "host"))
        addr, _, port = host.rpartition(":")
        publish.append(PublishRule(
            host_addr=(addr or "127.0.0.1").strip("[]"), host_port=int(port),
            sandbox_port=int(_val(p, "sandbox")),
            protocol=str(_val(p, "protocol", default="tcp")),  # type: ignore[arg-type]
            source=_src(p.loc),
        ))
    return NetworkConfig(
        mode=str(_val(root, "network", "mode", default="none")),  # type: ignore[arg-type]
        egress=tuple(egress),
        publish=tuple(publish),
        dns=tuple(str(x.value) for x in (root.at("network", "dns").seq() if root.at("network", "dns") else [])),
        mtu=int(_val(root, "network", "mtu", default=d.mtu)),
        address=str(_val(root, "network", "address", default=d.address)),
        gateway=str(_val(root, "network", "gateway", default=d.gateway)),
        source=_src(n.source_loc()) if n is not None else None,
    )


def _limit(v: Any) -> int:
    if v == "unlimited":
        return constants.RLIM_INFINITY
    size = constants.parse_size(v)
    return int(size if size is not None else v)


def _env_text(value: Any) -> str:
    """An environment value as the YAML text would read: true, 1, 1.5."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _launch(root: Node, u: UnameConfig) -> LaunchConfig:
    rl = []
    rls = root.at("process", "rlimits")
    for name, node in sorted(rls.items()) if rls is not None else []:
        if node.is_map:
            soft, hard = _limit(_val(node, "soft")), _limit(_val(node, "hard"))
        else:
            soft = hard = _limit(node.value)
        rl.append(Rlimit(name, soft, hard, _src(node.source_loc())))
    res = root.get("resources")
    cpu = _val(root, "resources", "cpu")
    env = root.at("process", "env")
    return LaunchConfig(
        command=tuple(str(c.value) for c in (root.at("process", "command").seq()
                                              if root.at("process", "command") else [])),
        cwd=str(_val(root, "process", "cwd", default="/")),
        env=tuple((k, _env_text(v.value)) for k, v in env.items()) if env else (),
        uid=int(_val(root, "process", "user", "uid", default=0)),
        gid=int(_val(root, "process", "user", "gid", default=0)),
        capabilities=tuple(sorted({str(c.value) for c in (root.at("capabilities", "keep").seq()
                                                           if root.at("capabilities", "keep") else [])})),
        no_new_privs=bool(_val(root, "process", "no_new_privs", default=True)),
        rlimits=tuple(rl),
        resources=Resources(
            memory=constants.parse_size(_val(root, "resources", "memory")) if _val(root, "resources", "memory") is not None else None,
            pids=int(_val(root, "resources", "pids")) if _val(root, "resources", "pids") is not None else None,
            cpu=float(cpu) if cpu is not None else None,
            source=_src(res.source_loc()) if res is not None else None,
        ),
        hostname=u.nodename,
        domainname=u.domainname,
        platform=str(_val(root, "platform", default="seccomp-notify")),  # type: ignore[arg-type]
    )


def profile_hash(res: Resolved) -> str:
    data = {"profile": res.root.plain(), "dir": str(res.path.parent)}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def profile_dirs(res: Resolved) -> dict[str, Path]:
    """Displayed file name -> the host folder holding it, for every file in the chain
    (relative mount sources are relative to the folder of the file that wrote them)."""
    from .extends import _target

    out: dict[str, Path] = {}
    p = res.path
    for doc, shown in zip(res.documents, res.chain):
        out[shown] = p.parent
        ref = doc.get("extends")
        if ref is not None:
            p, _ = _target(ref, p, shown)
    return out


def build_plan(res: Resolved) -> Plan:
    """The Plan of a resolved, validated profile."""
    root = res.root
    base_of = profile_dirs(res)
    audit = _audit(root)
    default, rules = seccomp_rules(root, audit)
    u = _uname(root)
    net = _network(root)
    synthetic = _synthetic(u, net)
    return Plan(
        version=PLAN_VERSION,
        profile_name=str(_val(root, "metadata", "name", default=Path(res.file).stem)),
        profile_file=res.file,
        profile_sha256=profile_hash(res),
        seccomp=SeccompPlan(arch=syscalls.ARCH, default=default, rules=rules),
        sentry=SentryConfig(uname=u, synthetic_files=synthetic, audit=audit),
        gofer=_gofer(root, base_of, synthetic),
        network=net,
        launch=_launch(root, u),
    )


__all__ = ["compile_profile", "compile_builtin", "compile_resolved", "build_plan", "collect_entries",
           "deciding_entries", "seccomp_rules", "kernel_consistent", "Entry", "profile_hash"]
