"""Learn a minimal profile from what a command does.

The command runs under a recording profile: it extends `default` (so the calls that
break the sandbox model stay refused), its syscall default is `log` (every other call
runs and is recorded with its decoded arguments), path calls are not mediated (so their
path strings are recorded too), and the network is the netstack with no egress (so each
destination is recorded as a refusal). When the command tried the network, it is run
again with the destinations it asked for allowed, until it asks for no new ones.

From the events the learned profile is written: an allow-list of the calls seen
(narrowed by argument values where that is safe), critical calls commented out with
the reason, writable mounts for host directories the command wrote to, egress rules for
the destinations it used, and `default: deny` for everything else.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .risk import RiskBook

# Calls whose path arguments are paths the program used, and which of them write.
WRITE_CALLS = frozenset({
    "creat", "mkdir", "mkdirat", "unlink", "unlinkat", "rmdir", "rename", "renameat",
    "renameat2", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmodat", "chown",
    "lchown", "fchownat", "truncate", "utimensat", "mknod", "mknodat",
})
PATH_CALLS = WRITE_CALLS | frozenset({
    "open", "openat", "openat2", "stat", "lstat", "newfstatat", "statx", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "chdir", "execve", "execveat",
    "statfs", "getxattr", "lgetxattr", "listxattr", "llistxattr", "inotify_add_watch",
})
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
MAX_ROUNDS = 4


@dataclass
class Observed:
    """What one or more recording runs saw."""

    calls: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    refused: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> first event
    read: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)
    dests: dict[tuple[str, int, str], str | None] = field(default_factory=dict)  # -> host
    names: dict[str, str] = field(default_factory=dict)  # address -> DNS name
    execs: list[str] = field(default_factory=list)

    def add_events(self, events: Iterable[dict[str, Any]], cwd: str) -> None:
        for ev in events:
            kind = ev.get("kind")
            name = ev.get("syscall") or ""
            action = ev.get("action")
            if kind == "dns":
                for a in ev.get("answers") or ():
                    self.names[str(a)] = str(ev.get("name", "")).rstrip(".")
                continue
            if kind == "network":
                if action == "deny":
                    key = (str(ev.get("dest")), int(ev.get("port") or 0),
                           str(ev.get("protocol") or "tcp"))
                    self.dests[key] = ev.get("host") or self.dests.get(key)
                continue
            if kind == "exec":
                if ev.get("path") and ev["path"] not in self.execs:
                    self.execs.append(ev["path"])
                self.calls.setdefault(name or "execve", [])
                continue
            if kind not in ("syscall", "file") or not name:
                continue
            if action in ("deny", "kill"):
                self.refused.setdefault(name, ev)
                continue
            self.calls.setdefault(name, []).append(tuple(ev.get("args") or ()))
            if name in PATH_CALLS:
                self._paths(name, str(ev.get("decoded", "")), cwd)

    def _paths(self, name: str, decoded: str, cwd: str) -> None:
        strings = _QUOTED.findall(decoded)
        if not strings:
            return
        writes = name in WRITE_CALLS or (name in ("open", "openat", "openat2")
                                         and any(f in decoded for f in _WRITE_FLAGS))
        for raw in strings[:2] if name in ("rename", "renameat", "renameat2", "link",
                                           "linkat", "symlink", "symlinkat") else strings[:1]:
            path = raw.encode().decode("unicode_escape", errors="replace") if "\\" in raw else raw
            if not path.startswith("/"):
                path = os.path.normpath(os.path.join(cwd, path))
            (self.written if writes else self.read).add(path)


def cwd_mount(cwd: str, book: RiskBook, writable: bool) -> str | None:
    """The working directory's mount line, or None when it needs none ("/"). It is never
    writable when it is, or contains, a sensitive host path (/etc, /home, /root...); a
    project directory below one (/home/me/app) may be."""
    if cwd == "/":
        return None
    if writable and book.covers_sensitive(cwd):
        writable = False
    return (f"    - {{source: {json.dumps(cwd)}, target: {json.dumps(cwd)}, "
            f"readonly: {'false' if writable else 'true'}}}")


def recording_profile(command: list[str], cwd: str, egress: Iterable[tuple[str, int, str]],
                      network: bool, book: RiskBook) -> str:
    """The profile a learning run uses."""
    mount = cwd_mount(cwd, book, writable=True)
    lines = [
        "# Written by `sandboxctl learn` for one recording run; not meant to be kept.",
        "apiVersion: sandboxctl/v1",
        "kind: SandboxProfile",
        "metadata: {name: learn-recording, description: every call allowed and recorded}",
        "extends: default",
        "process:",
        f"  command: {json.dumps(command)}",
        f"  cwd: {json.dumps(cwd)}",
        "syscalls:",
        "  default: {action: log}",
        "filesystem:",
        "  mediation: direct",
        *(["  mounts:", mount] if mount else []),
        "audit: {denials: true, file_access: true, exec: true, network: true}",
    ]
    if network:
        lines += ["network:", "  mode: netstack"]
        eg = sorted(set(egress))
        if eg:
            lines.append("  egress:")
            for dest, port, proto in eg:
                lines.append(f"    - {{cidr: {_cidr(dest)}, ports: [{port}], protocol: {_proto(proto)}}}")
    return "\n".join(lines) + "\n"


def _cidr(dest: str) -> str:
    return f"{dest}/128" if ":" in dest else f"{dest}/32"


def _proto(p: str) -> str:
    return p if p in ("tcp", "udp") else "any"


def _uses_inet(obs: Observed) -> bool:
    for args in obs.calls.get("socket", ()):
        if args and args[0] in (2, 10):  # AF_INET, AF_INET6
            return True
    return "socket" in obs.refused and obs.refused["socket"].get("args", [0])[0] in (2, 10)


@dataclass(frozen=True)
class LearnResult:
    profile_text: str
    rounds: int
    exit_code: int  # of the last recording run
    run_ids: tuple[str, ...]
    observed: Observed


def learn(command: list[str], book: RiskBook, *, cwd: str | None = None, name: str | None = None,
          runner: Callable[[str, list[str]], tuple[int, str | None]] | None = None,
          work_dir: str | None = None, max_rounds: int = MAX_ROUNDS,
          progress: Callable[[str], None] | None = None) -> LearnResult:
    """Run `command` under recording profiles until it asks for nothing new, then write
    the learned profile. `runner(profile_path, command) -> (exit status, run id)` runs
    one sandbox (default: the launcher, in this process)."""
    import tempfile

    from .compile import compile_profile

    cwd = cwd or os.getcwd()
    runner = runner or _launch
    obs = Observed()
    network = False
    egress: set[tuple[str, int, str]] = set()
    run_ids: list[str] = []
    code = 0
    rounds = 0
    with tempfile.TemporaryDirectory(prefix="sandboxctl-learn-", dir=work_dir) as tmp:
        while rounds < max_rounds:
            rounds += 1
            rec = Path(tmp) / f"recording-{rounds}.yaml"
            rec.write_text(recording_profile(command, cwd, egress, network, book))
            compile_profile(rec)  # a recording profile that does not compile is a bug here
            if progress:
                progress(f"round {rounds}: recording {shlex.join(command)}"
                         + (f" (network, {len(egress)} destinations allowed)" if network else ""))
            code, run_id = runner(str(rec), command)
            if run_id:
                run_ids.append(run_id)
            round_obs = Observed()
            round_obs.add_events(_events(run_id), cwd)
            _merge(obs, round_obs)
            new_dests = set(round_obs.dests) - egress
            if not network and _uses_inet(round_obs):
                network = True  # run again with the netstack, to see the destinations
                continue
            if network and new_dests:
                egress |= new_dests
                continue
            break
    text = learned_profile(command, cwd, obs, book, name=name, network=network)
    return LearnResult(text, rounds, code, tuple(run_ids), obs)


def _merge(into: Observed, new: Observed) -> None:
    for k, v in new.calls.items():
        into.calls.setdefault(k, []).extend(v)
    for k, v in new.refused.items():
        into.refused.setdefault(k, v)
    into.read |= new.read
    into.written |= new.written
    for k, v in new.dests.items():
        into.dests[k] = v or into.dests.get(k)
    into.names.update(new.names)
    for e in new.execs:
        if e not in into.execs:
            into.execs.append(e)


def _events(run_id: str | None) -> list[dict[str, Any]]:
    if not run_id:
        return []
    from ..sentry.runs import find_run, read_events

    return list(read_events(find_run(run_id)))


def _launch(profile: str, command: list[str]) -> tuple[int, str | None]:
    from ..sentry.launch.launcher import run as launch
    from .compile import compile_profile

    outcome = launch(compile_profile(profile), command, use_pty=False)
    return outcome.exit_code, outcome.run_id


# -- writing the learned profile ---------------------------------------------------------

def _syscall_entries(obs: Observed, book: RiskBook) -> tuple[list[str], list[str]]:
    """(allow entries, commented-out entries) as YAML lines."""
    from .explain import _symbol

    cfg = book.learn
    narrow_safe = set(cfg.get("narrow_safe", ()))
    allow: list[str] = []
    commented: list[str] = []
    names = set(obs.calls) | set(cfg.get("always_allow", {}) or {})
    for name in sorted(names):
        sr = book.syscall(name)
        if sr.risk == "critical":
            commented.append(f"    # - {name}    # NOT allowed ({sr.risk}): {sr.why}")
            continue
        if name in (cfg.get("always_allow") or {}) and name not in obs.calls:
            allow.append(f"    - {name}    # {cfg['always_allow'][name]}")
            continue
        entry = f"    - {name}"
        if name in narrow_safe and sr.narrow:
            idx = sr.narrow[0]
            values = sorted({a[idx] for a in obs.calls[name] if len(a) > idx})
            if 0 < len(values) <= 4:
                for v in values:
                    allow.append(f"    - {{name: {name}, args: [{{index: {idx}, op: eq, "
                                 f"value: {_symbol(name, idx, v)}}}]}}")
                continue
        allow.append(entry)
    for name in sorted(set(obs.refused) - set(obs.calls)):
        ev = obs.refused[name]
        sr = book.syscall(name)
        rule = ev.get("rule") or {}
        where = f"{rule.get('file')}:{rule.get('line')}" if rule else "the default action"
        why = sr.why if sr.risk in ("critical", "high") else \
            "the command ran without it"
        commented.append(f"    # - {name}    # refused while learning ({where}, {sr.risk}): {why}")
    return allow, commented


def _under(p: str, d: str) -> bool:
    return p == d or p.startswith(d.rstrip("/") + "/")


def _write_mounts(obs: Observed, book: RiskBook, cwd: str) -> list[str]:
    """Host directories outside the working directory the command wrote to."""
    scratch = tuple(book.learn.get("scratch_prefixes", ("/tmp", "/dev", "/proc")))
    dirs: set[str] = set()
    for p in obs.written:
        if _under(p, cwd) or any(_under(p, s) for s in scratch):
            continue
        d = os.path.dirname(p) if not os.path.isdir(p) else p
        while d and d != "/" and not os.path.isdir(d):
            d = os.path.dirname(d)
        if d and d != "/":
            dirs.add(d)
    top = sorted(d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/")
                                             for o in dirs))
    return top


MAX_READONLY_RULES = 32


def _read_only_inputs(obs: Observed, *writable_dirs: list[str]) -> list[str]:
    """Existing regular files under the writable mounts that the command read and never
    wrote: read-only path rules for them (at most MAX_READONLY_RULES; none if more)."""
    dirs = [d for ds in writable_dirs for d in ds]
    files = sorted(p for p in obs.read - obs.written
                   if any(_under(p, d) and p != d for d in dirs) and os.path.isfile(p))
    return files if len(files) <= MAX_READONLY_RULES else []


def learned_profile(command: list[str], cwd: str, obs: Observed, book: RiskBook, *,
                    name: str | None = None, network: bool = False) -> str:
    allow, commented = _syscall_entries(obs, book)
    prog = os.path.basename(command[0]) if command else "command"
    pname = name or re.sub(r"[^a-z0-9-]+", "-", f"learned-{prog}".lower()).strip("-")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        f"# Learned by `sandboxctl learn` on {when} from:",
        *(f"#   {ln}" for ln in shlex.join(command).splitlines()),
        "# Only the calls, writable directories and destinations that run used are allowed;",
        "# review it (sandboxctl diff default <this file>) before relying on it.",
        "apiVersion: sandboxctl/v1",
        "kind: SandboxProfile",
        "metadata:",
        f"  name: {pname}",
        f"  description: {json.dumps('learned from ' + shlex.join(command))}",
        "extends: default",
        "process:",
        f"  command: {json.dumps(command)}",
        f"  cwd: {json.dumps(cwd)}",
        "syscalls:",
        "  default: {action: deny, errno: EPERM}",
        "  allow:",
        *allow,
    ]
    if commented:
        out.append("    # Seen, but left out:")
        out.extend(commented)
    mounts = _write_mounts(obs, book, cwd)
    reads = sorted(p for p in obs.read if not p.startswith(("/proc/", "/dev/", "/sys/")))
    cwd_written = any(_under(p, cwd) for p in obs.written)
    out.append("filesystem:")
    if reads:
        out.append(f"  # read ({len(reads)} paths, through the read-only root or the mounts), e.g.:")
        out.extend(f"  #   {p}" for p in reads[:12])
    mount = cwd_mount(cwd, book, writable=cwd_written)
    if mount or mounts:
        out.append("  mounts:")
    if mount:
        out.append("    # the working directory" + (", written to" if cwd_written else ", only read"))
        out.append(mount)
    if mounts:
        out.append("    # other host directories the command wrote to (writes persist on the host)")
        out.extend(f"    - {{source: {json.dumps(d)}, target: {json.dumps(d)}, readonly: false}}"
                   for d in mounts)
    keep = _read_only_inputs(obs, [cwd] if cwd_written and mount else [], mounts)
    if keep:
        out.append("  # files in the writable directories the command only read: keep them so")
        out.append("  readonly:")
        out.extend(f"    - {json.dumps(p)}" for p in keep)
    if network and obs.dests:
        out += ["network:", "  mode: netstack", "  egress:"]
        for (dest, port, proto), host in sorted(obs.dests.items()):
            host = host or obs.names.get(dest)
            target = f"host: {host}" if host else f"cidr: {_cidr(dest)}"
            out.append(f"    - {{{target}, ports: [{port}], protocol: {_proto(proto)}}}")
    return "\n".join(out) + "\n"


__all__ = ["Observed", "LearnResult", "learn", "learned_profile", "recording_profile",
           "WRITE_CALLS", "PATH_CALLS"]
