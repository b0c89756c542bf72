"""rlimits: check the Plan's limits against the host's hard limits in the supervisor (so a
limit the host cannot grant is one clear error before anything starts), apply them in the
sandboxed child."""

from __future__ import annotations

import resource

from ...engine.errors import HostError, SandboxError
from ...engine.plan import Rlimit

# Linux's RLIMIT_* numbers (the resource module lacks some of them).
_NAMES: dict[str, int] = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
    "nofile": 7, "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12,
    "nice": 13, "rtprio": 14, "rttime": 15,
}

INFINITY = resource.RLIM_INFINITY


def _number(limit: Rlimit) -> int:
    try:
        return _NAMES[limit.name]
    except KeyError:
        raise SandboxError(f"unknown rlimit {limit.name!r} in the plan",
                           hint=f"use one of: {', '.join(sorted(_NAMES))}") from None


def _fmt(v: int) -> str:
    return "unlimited" if v in (INFINITY, -1) else str(v)


def _norm(v: int) -> int:
    return INFINITY if v < 0 else v


def check(limits: tuple[Rlimit, ...]) -> None:
    """Raise HostError if a limit is above what this process may set (its hard limit:
    raising it needs CAP_SYS_RESOURCE in the host's initial user namespace)."""
    for lim in limits:
        num = _number(lim)
        soft, hard = _norm(lim.soft), _norm(lim.hard)
        if soft != INFINITY and hard != INFINITY and soft > hard:
            raise SandboxError(f"rlimit {lim.name}: soft limit {soft} is above hard limit {hard}",
                               hint="make soft <= hard in process.rlimits")
        _, host_hard = resource.getrlimit(num)
        if host_hard == INFINITY:
            continue
        if hard == INFINITY or hard > host_hard:
            where = f" ({lim.source.where()})" if lim.source else ""
            raise HostError(
                f"rlimit {lim.name}={_fmt(hard)}{where} is above this host's hard limit "
                f"{_fmt(host_hard)}, which only a process with CAP_SYS_RESOURCE may raise",
                hint=f"set process.rlimits.{lim.name} to at most {host_hard}, or raise the hard "
                "limit for this user (ulimit -H / limits.conf)")


def apply(limits: tuple[Rlimit, ...]) -> None:
    for lim in limits:
        resource.setrlimit(_number(lim), (_norm(lim.soft), _norm(lim.hard)))
