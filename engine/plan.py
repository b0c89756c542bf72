"""The Plan: everything a sandbox launch needs, as frozen plain data (named tuples made by
engine/record.py: a frozen dataclass costs ~0.5 ms to create at import, `typing.NamedTuple`
needs `typing`, and this module is on the start-up path of every `sandboxctl apply`).

The compiler (engine/compile.py) turns a resolved profile into a Plan; the runtime
(sentry/, gofer/, netstack/) reads only the Plan, never the YAML. `sandboxctl compile`
prints it. The JSON form is deterministic: the same profile gives byte-identical JSON.

This module is the contract between the parts of sandboxctl. Change it with care and
keep `from_dict(to_dict(plan)) == plan`.
"""

from __future__ import annotations

import functools

from .record import record

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any, Literal

PLAN_VERSION = 1

# What the Sentry (or the kernel) does with a call that matched a rule.
#   allow   - the kernel runs it (SECCOMP_RET_ALLOW), unless `trap` is set
#   deny    - refused with `errno`
#   kill    - the process is killed (SECCOMP_RET_KILL_PROCESS, or by the Sentry)
#   log     - allowed, and recorded in the run's events log
#   emulate - implemented by the Sentry handler named in `handler` (uname, openat, ...)
ACTIONS = ("allow", "deny", "kill", "log", "emulate")
ARG_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "masked_eq")
# (the annotations below name them `Action` and `ArgOp`: Literal[ACTIONS], Literal[ARG_OPS],
# made with `typing` only where the types are read, _names())


@record
class Source:
    """Where in which profile file a piece of the Plan came from."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    text: str = ""  # the entry as written, one line, for explain/diff output

    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@record
class ArgCond:
    """One argument check, as libseccomp's scmp_arg_cmp: args[index] <op> value.

    For masked_eq the check is (args[index] & mask) == value.
    `symbol` keeps the symbolic spelling from the profile (AF_UNIX, O_WRONLY|O_CREAT).
    """

    index: int
    op: ArgOp
    value: int
    mask: int = 0
    symbol: str | None = None


@record
class SyscallRule:
    """One compiled rule. Several rules may name the same syscall with different args;
    their conditions are ANDed within a rule, and rules are tried in order."""

    name: str
    nr: int  # x86_64 number
    action: Action
    errno: int = 0  # for deny
    args: tuple[ArgCond, ...] = ()
    # True: the host filter sends the call to the Sentry (SECCOMP_RET_USER_NOTIF on
    # seccomp-notify, SECCOMP_RET_TRACE on ptrace) and the Sentry applies `action`.
    # Denials, kills and logs are trapped when audit is on, so every refusal is an event.
    trap: bool = False
    handler: str | None = None  # Sentry handler for emulate/log: "uname", "openat", "observe"...
    source: Source | None = None


@record
class DefaultAction:
    """What a call no rule names gets."""

    action: Action  # allow | deny | kill | log
    errno: int = 0
    trap: bool = False
    source: Source | None = None


@record
class SeccompPlan:
    """The host filter: the default action and the rules, by syscall number."""

    arch: str  # "x86_64"; other ABIs (i386, x32) are always refused
    default: DefaultAction
    rules: tuple[SyscallRule, ...]
    # Errno answered for calls of a foreign ABI is not used: they are killed (bad arch).


@record
class UnameConfig:
    """What uname(2) and the synthetic /proc files answer."""

    sysname: str = "Linux"
    nodename: str = "sandbox"  # == the sandbox hostname
    release: str = "4.4.0"
    version: str = "#1 SMP Sun Jan 10 15:06:54 PST 2016"
    machine: str = "x86_64"
    domainname: str = "(none)"


@record
class SyntheticFile:
    """A file the Sentry/Gofer serves from memory (/proc/version, /etc/hostname...)."""

    path: str
    content: str
    mode: int = 0o444


@record
class AuditConfig:
    """Which refusals and observations become events."""

    denials: bool = True  # trap denied calls so each one is an event
    file_access: bool = True  # record refused file accesses
    exec: bool = True  # record execve/execveat paths
    network: bool = True  # record refused connections


@record
class SentryConfig:
    """What the Sentry serves itself: uname, synthetic files, auditing."""

    uname: UnameConfig
    synthetic_files: tuple[SyntheticFile, ...] = ()
    audit: AuditConfig = AuditConfig()


@record
class Mount:
    """One mount of the profile's filesystem section."""

    type: Literal["bind", "tmpfs", "proc", "dev"]
    target: str  # absolute path inside the sandbox
    source: str | None = None  # absolute host path (bind); resolved by the compiler
    readonly: bool = False
    size: int | None = None  # bytes (tmpfs)
    options: tuple[str, ...] = ()  # nosuid, nodev, noexec, ...
    source_loc: Source | None = None


@record
class RootConfig:
    """The sandbox's root: a host directory, read-only or not, with an overlay."""

    source: str = "/"  # host directory the root is built from
    readonly: bool = True
    overlay: Literal["none", "memory", "dir"] = "memory"
    upper_dir: str | None = None  # host directory for overlay == "dir"
    keep_upper: bool = False  # keep the upper layer after the run
    # exclusive: nothing outside the sandbox changes the root during a run, so the Sentry
    # may answer stat calls from its attribute cache (gVisor's --file-access=exclusive);
    # shared: every stat goes to the Gofer
    cache: Literal["exclusive", "shared"] = "exclusive"
    source_loc: Source | None = None


@record
class PathRule:
    """A glob over sandbox paths (`/root/**`, `/etc/shadow`)."""

    glob: str
    errno: int = 2  # ENOENT (invisible) unless the profile says EACCES
    source: Source | None = None


@record
class GoferConfig:
    """What the Gofer serves: the mediation mode, the root, mounts and path rules."""

    mediation: Literal["gofer", "direct"]
    root: RootConfig
    mounts: tuple[Mount, ...] = ()
    deny: tuple[PathRule, ...] = ()
    readonly: tuple[PathRule, ...] = ()
    synthetic_files: tuple[SyntheticFile, ...] = ()


@record
class EgressRule:
    """A destination the sandbox may reach (network mode netstack)."""

    cidr: str | None = None  # "10.0.0.0/8"
    host: str | None = None  # "example.com" (bound to the addresses it resolves to)
    ports: tuple[int, ...] = ()  # empty: any port
    protocol: Literal["tcp", "udp", "any"] = "any"
    source: Source | None = None


@record
class PublishRule:
    """A host port forwarded into the sandbox."""

    host_addr: str  # "127.0.0.1"
    host_port: int
    sandbox_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    source: Source | None = None


@record
class NetworkConfig:
    """The network mode and its rules."""

    mode: Literal["none", "netstack", "passthrough"]
    egress: tuple[EgressRule, ...] = ()
    publish: tuple[PublishRule, ...] = ()
    dns: tuple[str, ...] = ()  # upstream servers for the DNS forwarder; empty: host's
    mtu: int = 65520
    address: str = "10.0.2.100/24"  # sandbox side of the TAP link (netstack mode)
    gateway: str = "10.0.2.2"
    source: Source | None = None


@record
class Rlimit:
    """One resource limit (soft and hard)."""

    name: str  # "nofile", "nproc", "as", "core", "cpu", "fsize", "stack", "memlock", ...
    soft: int
    hard: int
    source: Source | None = None


@record
class Resources:
    """Cgroup limits."""

    memory: int | None = None  # bytes
    pids: int | None = None
    cpu: float | None = None  # cores
    source: Source | None = None


@record
class LaunchConfig:
    """How the program starts: command, ids, capabilities, env, limits, platform."""

    command: tuple[str, ...]
    cwd: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    uid: int = 0  # ids inside the sandbox
    gid: int = 0
    capabilities: tuple[str, ...] = ()  # kept, e.g. ("CAP_NET_BIND_SERVICE",)
    no_new_privs: bool = True
    rlimits: tuple[Rlimit, ...] = ()
    resources: Resources = Resources()
    hostname: str = "sandbox"
    domainname: str = "(none)"
    platform: Literal["seccomp-notify", "ptrace"] = "seccomp-notify"


@record
class Plan:
    """Everything a sandbox launch needs (the module docstring)."""

    version: int
    profile_name: str
    profile_file: str
    profile_sha256: str  # of the resolved profile, for caching and run records
    seccomp: SeccompPlan
    sentry: SentryConfig
    gofer: GoferConfig
    network: NetworkConfig
    launch: LaunchConfig

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, indent: int | None = 2) -> str:
        import json  # (not at the top: this module is imported before the keeper's fork)

        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        return _from_plain(cls, data)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        import json

        return cls.from_dict(json.loads(text))

    def to_tagged(self) -> dict[str, Any]:
        """JSON-shaped, each record a dict that names its type under "@": the Plan cache's
        form, read back by from_tagged without the type hints (engine/cache.py)."""
        return _to_plain(self, tagged=True)

    @classmethod
    def from_tagged(cls, data: Any) -> "Plan":
        """A Plan from to_tagged's form, after json.loads(..., object_hook=tagged_hook).
        It trusts the data's shape (a cache entry this program wrote: engine/cache.py
        checks its owner and mode); a Plan from elsewhere goes through from_dict, which
        checks every value's type."""
        if not isinstance(data, cls):
            raise TypeError(f"not a tagged Plan: {type(data).__name__}")
        return data

    # -- queries the runtime needs -------------------------------------------------
    def rules_for(self, nr: int) -> tuple[SyscallRule, ...]:
        return tuple(r for r in self.seccomp.rules if r.nr == nr)

    def trapped_numbers(self) -> frozenset[int]:
        return frozenset(r.nr for r in self.seccomp.rules if r.trap)


def _is_record(tp: Any) -> bool:
    """A Plan type (a NamedTuple class)?"""
    return isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields")


def _to_plain(value: Any, tagged: bool = False) -> Any:
    """JSON-shaped: records as dicts (with `tagged`, naming their type under "@"),
    tuples as lists."""
    if _is_record(type(value)):  # a dict, not a list
        out = {name: _to_plain(getattr(value, name), tagged) for name in value._fields}
        if tagged:
            out["@"] = type(value).__name__
        return out
    if isinstance(value, (tuple, list)):
        return [_to_plain(v, tagged) for v in value]
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def tagged_hook(obj: dict[str, Any]) -> Any:
    """json.loads object_hook for to_tagged's form: a dict naming a record type becomes
    that record (its lists tuples); any other dict stays a dict."""
    name = obj.pop("@", None)
    if name is None:
        return obj
    cls = _RECORDS[name]  # KeyError: not a Plan type
    return cls(**{k: _tuples(v) for k, v in obj.items()})


@functools.lru_cache(maxsize=None)
def _names() -> dict[str, Any]:
    """What the annotations name, for typing.get_type_hints (imported here: `typing` is
    not on `apply`'s start-up path, which reads a Plan from the cache: _read_tagged)."""
    import typing

    return {**globals(), "Any": typing.Any, "Literal": typing.Literal,
            "Action": typing.Literal[ACTIONS], "ArgOp": typing.Literal[ARG_OPS]}


@functools.lru_cache(maxsize=None)
def _type_hints(tp: Any) -> dict[str, Any]:
    # typing.get_type_hints evaluates every (string) annotation on each call: once per
    # class is enough.
    import typing

    return typing.get_type_hints(tp, globalns=_names())


def _from_plain(tp: Any, data: Any) -> Any:
    """`data` (JSON-shaped) read back as type `tp`; TypeError/ValueError/KeyError if it
    does not fit."""
    return _reader(tp)(data)


@functools.lru_cache(maxsize=None)
def _reader(tp: Any) -> Any:
    """A function reading JSON-shaped data as `tp`, built once per type: reading a Plan is
    on `apply`'s start-up path, and walking the type hints for every value cost ~8 ms."""
    import types
    import typing

    if isinstance(tp, str):
        raise TypeError(f"unresolved annotation {tp!r}")
    origin = typing.get_origin(tp)
    if _is_record(tp):
        hints = _type_hints(tp)
        fields = tuple((name, _reader(hints[name])) for name in tp._fields)

        def read_record(data: Any) -> Any:
            return tp(**{name: read(data[name]) for name, read in fields if name in data})
        return read_record
    if origin in (typing.Union, types.UnionType):
        readers = tuple(_reader(a) for a in typing.get_args(tp) if a is not type(None))

        def read_union(data: Any) -> Any:
            if data is None:
                return None
            for read in readers:
                try:
                    return read(data)
                except (TypeError, KeyError, ValueError):
                    continue
            raise TypeError(f"cannot read {data!r} as {tp}")
        return read_union
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _reader(args[0])
            return lambda data: tuple(item(v) for v in data)
        items = tuple(_reader(a) for a in args)
        return lambda data: tuple(read(v) for read, v in zip(items, data))
    if origin is typing.Literal:
        allowed = typing.get_args(tp)

        def read_literal(data: Any) -> Any:
            if data not in allowed:
                raise ValueError(f"{data!r} not in {allowed}")
            return data
        return read_literal
    if tp is float:
        def read_float(data: Any) -> Any:
            if isinstance(data, int):
                return float(data)
            if not isinstance(data, float):
                raise TypeError(f"expected float, got {data!r}")
            return data
        return read_float
    if tp in (int, str, bool):
        def read_plain(data: Any) -> Any:
            if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
                raise TypeError(f"expected {tp.__name__}, got {data!r}")
            return data
        return read_plain
    return lambda data: data


_RECORDS = {c.__name__: c for c in (
    Source, ArgCond, SyscallRule, DefaultAction, SeccompPlan, UnameConfig, SyntheticFile,
    AuditConfig, SentryConfig, Mount, RootConfig, PathRule, GoferConfig, EgressRule,
    PublishRule, NetworkConfig, Rlimit, Resources, LaunchConfig, Plan)}

__all__ = [
    "PLAN_VERSION", "ACTIONS", "ARG_OPS", "Source", "ArgCond", "SyscallRule", "DefaultAction",
    "SeccompPlan", "UnameConfig", "SyntheticFile", "AuditConfig", "SentryConfig", "Mount",
    "RootConfig", "PathRule", "GoferConfig", "EgressRule", "PublishRule", "NetworkConfig",
    "Rlimit", "Resources", "LaunchConfig", "Plan",
]
