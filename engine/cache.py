"""A cache of compiled Plans, so `validate`, `compile` and `apply` of an unchanged
profile skip YAML parsing and JSON Schema validation (their imports alone cost ~300 ms).

An entry is keyed by the profile's path, the name it is shown as, the working directory,
the overrides and a stamp of the engine's own files (code, schema, groups); it records
the SHA-256 of every file in the `extends` chain and is used only while they all still
match and every bind-mount source still exists. The folder is $SANDBOXCTL_CACHE_DIR, else
$XDG_CACHE_HOME/sandboxctl/plans (~/.cache/sandboxctl/plans). Failures to read or write
the cache are never errors: the profile is compiled again. Entries are used only when
this user owns them and their folder and neither is writable by others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from .plan import Plan

try:
    # CPython's own SHA-256: the same digest as hashlib's, without importing OpenSSL's
    # (~2.5 ms on `apply`'s start-up path, which reads the cache on every run)
    from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - another interpreter, or Python 3.12+ (_sha2)
    from hashlib import sha256 as _sha256

CACHE_FORMAT = 1


def cache_dir() -> Path:
    env = os.environ.get("SANDBOXCTL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sandboxctl" / "plans"


def _engine_stamp() -> list[Any]:
    from .builtins import profiles_dir

    here = Path(__file__).resolve().parent
    files = sorted(here.glob("*.py")) + [profiles_dir() / "schema.json", profiles_dir() / "groups.yaml"]
    out: list[Any] = []
    for f in files:
        try:
            st = f.stat()
            out.append([f.name, st.st_mtime_ns, st.st_size])
        except OSError:
            out.append([f.name, None, None])
    return out


def _sha(path: Path) -> str | None:
    try:
        return _sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _key(path: str | Path, display: str | None, overrides: Mapping[str, Any] | None) -> str:
    data = [CACHE_FORMAT, str(Path(path).resolve()), display or str(path), os.getcwd(),
            json.dumps(overrides or {}, sort_keys=True, default=str), _engine_stamp()]
    return _sha256(json.dumps(data, default=str).encode()).hexdigest()


def _trusted(path: Path) -> bool:
    """A cached Plan decides what a sandbox enforces: use only files and folders this
    user owns that nobody else can write."""
    try:
        for p in (path, path.parent):
            st = p.stat()
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def _lookup(entry_file: Path, need_filter: bool) -> Plan | None:
    if not _trusted(entry_file):
        return None
    try:
        entry = json.loads(entry_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
        return None
    if need_filter and not entry.get("filter_ok"):
        return None
    for f, digest in entry.get("files", {}).items():
        if _sha(Path(f)) != digest:
            return None
    try:
        plan = Plan.from_dict(entry["plan"])
    except (KeyError, TypeError, ValueError):
        return None
    for m in plan.gofer.mounts:
        if m.source is not None and not os.path.exists(m.source):
            return None
    return plan


def compile_cached(path: str | Path, *, display: str | None = None,
                   overrides: Mapping[str, Any] | None = None, use_cache: bool = True,
                   check_filter: bool = False) -> Plan:
    """compile_profile through the cache. With check_filter, the seccomp filter is also
    built once (so libseccomp accepts the rules) before the Plan counts as valid."""
    entry_file = cache_dir() / f"{_key(path, display, overrides)}.json"
    if use_cache:
        plan = _lookup(entry_file, check_filter)
        if plan is not None:
            return plan
    from .compile import compile_resolved

    plan, res = compile_resolved(path, overrides=overrides, display=display)
    filter_ok = False
    if check_filter:
        from .errors import Diagnostic, ProfileError
        from .filter import FilterBuildError, build_filter

        try:
            build_filter(plan)
            filter_ok = True
        except FilterBuildError as exc:
            raise ProfileError([Diagnostic(res.file, 1, 1, f"the seccomp filter cannot be built: {exc}")]) from None
    if use_cache:
        entry = {"format": CACHE_FORMAT, "filter_ok": filter_ok, "plan": plan.to_dict(),
                 "files": {str(p): _sha(p) for p in res.paths}}
        try:
            entry_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = entry_file.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(entry, sort_keys=True))
            os.replace(tmp, entry_file)
        except OSError:
            pass
    return plan


__all__ = ["compile_cached", "cache_dir"]
