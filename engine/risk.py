"""The risk knowledge (profiles/risk.yaml) as typed, read-only queries.

`diff` asks how risky a change is, `explain` what a call is for and what allowing it
risks, `learn` which calls must not be allowed silently. The knowledge itself is data in
profiles/risk.yaml; this module only reads it and answers questions about it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import SandboxctlError

Level = Literal["info", "low", "medium", "high", "critical"]
LEVELS: tuple[Level, ...] = ("info", "low", "medium", "high", "critical")

RISK_FILE = Path(__file__).resolve().parent.parent / "profiles" / "risk.yaml"


def level_rank(level: str) -> int:
    return LEVELS.index(level)  # type: ignore[arg-type]


def lower(level: Level, steps: int = 1, floor: Level = "low") -> Level:
    """`level` made `steps` lower, never below `floor` (and never raised)."""
    rank = max(level_rank(level) - steps, level_rank(floor))
    return LEVELS[min(rank, level_rank(level))]


def highest(*levels: Level) -> Level:
    return max(levels, key=level_rank)


@dataclass(frozen=True)
class SyscallRisk:
    name: str
    risk: Level
    why: str
    purpose: str
    narrow: tuple[int, ...] = ()  # argument indexes that select what the call does


@dataclass(frozen=True)
class CapabilityRisk:
    name: str
    risk: Level
    why: str
    unlocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    risk: Level
    why: str


@dataclass(frozen=True)
class SensitivePath:
    path: str
    writable: Level
    readonly: Level
    why: str


class RiskBook:
    """Read-only view of risk.yaml."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.default_syscall_risk: Level = data.get("default_syscall_risk", "low")
        self._syscalls = {
            name: SyscallRisk(name, e["risk"], e.get("why", ""), e.get("purpose", ""),
                              tuple(e.get("narrow", ())))
            for name, e in (data.get("syscalls") or {}).items()
        }
        self._caps = {
            name: CapabilityRisk(name, e["risk"], e.get("why", ""), tuple(e.get("unlocks", ())))
            for name, e in (data.get("capabilities") or {}).items()
        }
        self.default_capability_risk: Level = data.get("default_capability_risk", "high")
        self._paths = tuple(
            SensitivePath(e["path"].rstrip("/") or "/", e["writable"], e["readonly"], e["why"])
            for e in data.get("sensitive_paths", ())
        )
        self._other_mount = data.get("other_mount", {})
        self.secret_globs: tuple[str, ...] = tuple(data.get("secret_globs", ()))
        self.default_order: tuple[str, ...] = tuple(data["default_actions"]["order"])
        self._default_loosened = data["default_actions"]["loosened"]
        self._net = data["network"]
        self.args_drop: int = int(data.get("widened_args_risk_drop", 1))

    @property
    def learn(self) -> dict[str, Any]:
        """The `learn` section: narrow_safe, always_allow, scratch_prefixes."""
        return dict(self._data.get("learn") or {})

    # -- syscalls ------------------------------------------------------------------
    def syscall(self, name: str) -> SyscallRisk:
        if name in self._syscalls:
            return self._syscalls[name]
        return SyscallRisk(name, self.default_syscall_risk,
                           "widens the kernel surface the program reaches", "")

    def critical_syscalls(self) -> frozenset[str]:
        return frozenset(n for n, s in self._syscalls.items() if s.risk == "critical")

    # -- default action ------------------------------------------------------------
    def default_rank(self, action: str) -> int:
        return self.default_order.index(action) if action in self.default_order else 0

    def default_loosened(self, new_action: str) -> Verdict:
        e = self._default_loosened.get(new_action, {"risk": "medium", "why": "looser default"})
        return Verdict(e["risk"], e["why"])

    # -- capabilities ----------------------------------------------------------------
    def capability(self, name: str) -> CapabilityRisk:
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        return self._caps.get(key, CapabilityRisk(key, self.default_capability_risk,
                                                  "a capability the risk data does not know"))

    # -- mounts ----------------------------------------------------------------------
    def mount(self, source: str | None, readonly: bool) -> Verdict:
        """Risk of exposing host path `source` to the sandbox."""
        if not source:
            return Verdict("info", "an in-memory filesystem, nothing of the host")
        src = os.path.normpath(source)
        best: tuple[int, Verdict] | None = None
        for sp in self._paths:
            inside = src == sp.path or src.startswith(sp.path.rstrip("/") + "/")
            contains = sp.path.startswith(src.rstrip("/") + "/") or src == "/"
            if not (inside or contains):
                continue
            if sp.path == "/" and src != "/":
                continue  # "/" only when the root itself is mounted
            level = sp.writable if not readonly else sp.readonly
            if contains and not inside:
                why = f"contains {sp.path}: {sp.why}"
            else:
                why = f"{sp.path}: {sp.why}"
            v = Verdict(level, why)
            if best is None or level_rank(level) > best[0]:
                best = (level_rank(level), v)
        if best is not None:
            return best[1]
        o = self._other_mount
        if readonly:
            return Verdict(o.get("readonly", "low"), o.get("why_readonly", "host files readable"))
        return Verdict(o.get("writable", "medium"), o.get("why_writable", "host files writable"))

    def covers_sensitive(self, path: str) -> bool:
        """`path` is one of the sensitive host paths or contains one (/, /etc, /home...);
        a directory below one (a project in /home/me) is not."""
        p = os.path.normpath(path)
        return any(sp.path == p or sp.path.startswith(p.rstrip("/") + "/") for sp in self._paths)

    def is_secret_glob(self, glob: str) -> bool:
        return any(s in glob for s in self.secret_globs)

    # -- network ---------------------------------------------------------------------
    def network_modes(self) -> tuple[str, ...]:
        return tuple(self._net["modes"])

    def network_widened(self, new_mode: str) -> Verdict:
        e = self._net["widened"].get(new_mode, {"risk": "medium", "why": "wider network"})
        return Verdict(e["risk"], e["why"])

    def network_verdict(self, key: str) -> Verdict:
        e = self._net[key]
        return Verdict(e["risk"], e["why"])

    def is_internal(self, cidr: str) -> bool:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return False
        for c in self._net.get("internal_cidrs", ()):
            inner = ipaddress.ip_network(c)
            if net.version == inner.version and (net.overlaps(inner)):
                return True
        return False

    @staticmethod
    def is_any(cidr: str | None) -> bool:
        if not cidr:
            return False
        try:
            return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
        except ValueError:
            return False


def load_risk(path: str | os.PathLike[str] | None = None) -> RiskBook:
    """Read risk.yaml (the built-in one unless `path` names another)."""
    from ruamel.yaml import YAML

    p = Path(path) if path else RISK_FILE
    try:
        with open(p, encoding="utf-8") as fh:
            data = YAML(typ="safe").load(fh)
    except OSError as exc:
        raise SandboxctlError(f"cannot read the risk data {p}: {exc.strerror}.",
                              hint="reinstall sandboxctl or pass an existing --risk file") from exc
    return RiskBook(data)


__all__ = ["Level", "LEVELS", "level_rank", "lower", "highest", "SyscallRisk",
           "CapabilityRisk", "Verdict", "SensitivePath", "RiskBook", "load_risk", "RISK_FILE"]
