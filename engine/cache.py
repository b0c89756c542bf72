"""A cache of compiled Plans, so `validate`, `compile` and `apply` of an unchanged
profile skip YAML parsing and JSON Schema validation (their imports alone cost ~300 ms).

An entry is keyed by the profile's path, the name it is shown as, the working directory,
the overrides and a stamp of the engine's own files (code, schema, groups); it records
the SHA-256 of every file in the `extends` chain and is used only while they all still
match and every bind-mount source still exists. The folder is $SANDBOXCTL_CACHE_DIR, else
$XDG_CACHE_HOME/sandboxctl/plans (~/.cache/sandboxctl/plans). Failures to read or write
the cache are never errors: the profile is compiled again. Entries are used only when
this user owns them and their folder and neither is writable by others.

A lookup is on `apply`'s start-up path: it works on path strings (pathlib alone costs ~3
ms to import), and cache_dir() builds a Path only for other callers.
"""

from __future__ import annotations

import os

from .plan import Plan, tagged_hook

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping
    from pathlib import Path

try:
    # CPython's own SHA-256: the same digest as hashlib's, without importing OpenSSL's
    # (~2.5 ms on `apply`'s start-up path, which reads the cache on every run)
    from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - another interpreter, or Python 3.12+ (_sha2)
    from hashlib import sha256 as _sha256

CACHE_FORMAT = 2  # 2: the Plan kept in its tagged form (Plan.to_tagged)


def _cache_path() -> str:
    env = os.environ.get("SANDBOXCTL_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandboxctl", "plans")


def cache_dir() -> Path:
    from pathlib import Path

    return Path(_cache_path())


def _engine_stamp() -> list[Any]:
    from .builtins import profiles_path

    here = os.path.dirname(os.path.realpath(__file__))
    files = sorted(os.path.join(here, n) for n in os.listdir(here) if n.endswith(".py"))
    files += [os.path.join(profiles_path(), "schema.json"), os.path.join(profiles_path(), "groups.yaml")]
    out: list[Any] = []
    for f in files:
        try:
            out.append(source_stamp(f))
        except OSError:
            out.append((os.path.basename(f), None, None))
    return out


def _sha(path: str | os.PathLike[str]) -> str | None:
    try:
        with open(path, "rb") as fh:
            return _sha256(fh.read()).hexdigest()
    except OSError:
        return None


def _key(path: str | os.PathLike[str], display: str | None,
         overrides: Mapping[str, Any] | None) -> str:
    # repr, not json: the key is made on every `apply`, before the keeper's fork, and the
    # json package imports re (~2 ms together); the same inputs give the same text
    data = [CACHE_FORMAT, os.path.realpath(path), display or os.fspath(path), os.getcwd(),
            sorted((str(k), repr(v)) for k, v in (overrides or {}).items()), _engine_stamp()]
    return _sha256(repr(data).encode()).hexdigest()


class _Scan:
    """What the C JSON scanner reads from its context (as json.JSONDecoder has it)."""

    strict = True
    object_hook = staticmethod(tagged_hook)
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} in a cache entry")


def _loads(text: str) -> Any:
    """json.loads(text, object_hook=tagged_hook), with the C scanner alone when there is
    one: the json package's decoder imports re, and a cache hit is on `apply`'s path
    before the keeper's fork. ValueError if `text` is not one JSON document."""
    try:
        from _json import make_scanner
    except ImportError:  # pragma: no cover - an interpreter without the C accelerator
        import json

        return json.loads(text, object_hook=tagged_hook)
    try:
        obj, end = make_scanner(_Scan)(text, 0)
    except StopIteration as exc:
        raise ValueError(f"not JSON at {exc.value}") from None
    if end != len(text):
        raise ValueError(f"extra data at {end}")
    return obj


def own_cached(kind: str, stamp: Any, build: Callable[[], bytes],
               valid: Callable[[bytes], bool]) -> bytes:
    """Something sandboxctl makes with libseccomp for itself, kept in the cache: `stamp`
    is everything it depends on, `build()` makes it when the cache has none for that
    stamp (with pyseccomp: the import alone, with the typing it brings, is ~3 ms of
    `apply`'s start-up that a cached copy saves). A copy `valid` refuses is made again."""
    key = _sha256(repr((CACHE_FORMAT, kind, stamp)).encode()).hexdigest()
    path = os.path.join(_cache_path(), f"own-{kind}-{key}")
    data = read_trusted(path)
    if data is not None and valid(data):
        return data
    data = build()
    write_private(path, data)
    return data


def own_filter_bpf(name: str, stamp: Any, build: Callable[[], bytes]) -> bytes:
    """The classic-BPF program of one of sandboxctl's own seccomp filters (the Sentry's,
    the Gofer's; `stamp`: the rule lists, the kernel's ioctl numbers, the builder's
    source), through own_cached; anything but a non-empty multiple of 8 bytes is made
    again."""
    return own_cached(f"{name}.bpf", stamp, build, _is_bpf)


def _is_bpf(code: bytes) -> bool:
    """Whole classic-BPF instructions (8 bytes each), at least one."""
    return bool(code) and len(code) % 8 == 0


def source_stamp(module_file: str) -> tuple[str, int, int]:
    """What identifies a source file in a cache stamp (name, mtime, size)."""
    st = os.stat(module_file)
    return os.path.basename(module_file), st.st_mtime_ns, st.st_size


def _trusted(path: str) -> bool:
    """A cached Plan decides what a sandbox enforces: use only files and folders this
    user owns that nobody else can write."""
    try:
        for p in (path, os.path.dirname(path)):
            st = os.stat(p)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def read_trusted(path: str) -> bytes | None:
    """A cache file's bytes, if _trusted; None if not, or if it cannot be read."""
    if not _trusted(path):
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def write_private(path: str, data: bytes) -> None:
    """Put a cache file in place whole (a private temporary file renamed over it), in a
    folder only this user may enter. Failing is not an error: it is made again next time."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def _lookup(entry_file: str, need_filter: bool) -> tuple[Plan, bytes | None] | None:
    raw = read_trusted(entry_file)
    if raw is None:
        return None
    try:
        entry = _loads(raw.decode())
    except (ValueError, KeyError, TypeError):  # (ValueError: not UTF-8 or not JSON;
        return None                           # KeyError, TypeError: a damaged Plan)
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
        return None
    if need_filter and not entry.get("filter_ok"):
        return None
    for f, digest in entry.get("files", {}).items():
        if _sha(f) != digest:
            return None
    try:
        plan = Plan.from_tagged(entry["plan"])
    except (KeyError, TypeError, ValueError):
        return None
    for m in plan.gofer.mounts:
        if m.source is not None and not os.path.exists(m.source):
            return None
    code = None
    if "bpf_notify" in entry:  # written with the Plan; anything but a BPF program: damaged
        bpf = entry["bpf_notify"]
        try:
            code = bytes.fromhex(bpf) if isinstance(bpf, str) else b""
        except ValueError:
            return None
        if not _is_bpf(code):
            return None
    return plan, code


def compile_cached(path: str | os.PathLike[str], *, display: str | None = None,
                   overrides: Mapping[str, Any] | None = None, use_cache: bool = True,
                   check_filter: bool = False) -> Plan:
    """compile_profile through the cache. With check_filter, the seccomp filter is also
    built once (so libseccomp accepts the rules) before the Plan counts as valid."""
    return compile_cached_with_filter(path, display=display, overrides=overrides,
                                      use_cache=use_cache, check_filter=check_filter)[0]


def compile_cached_with_filter(path: str | os.PathLike[str], *, display: str | None = None,
                               overrides: Mapping[str, Any] | None = None,
                               use_cache: bool = True,
                               check_filter: bool = True) -> tuple[Plan, bytes | None]:
    """compile_cached, and the program's seccomp-notify filter as classic BPF (what
    libseccomp generates for build_filter(plan, "seccomp-notify"), exported once when the
    entry is written and kept in it): `apply` loads it with one seccomp(2) call, so
    neither init nor the program imports pyseccomp or builds the filter again. None when
    the filter is not known (no check_filter)."""
    entry_file = os.path.join(_cache_path(), f"{_key(path, display, overrides)}.json")
    if use_cache:
        found = _lookup(entry_file, check_filter)
        if found is not None:
            return found
    from .compile import compile_resolved

    plan, res = compile_resolved(path, overrides=overrides, display=display)
    filter_ok = False
    code = None
    if check_filter:
        from .errors import Diagnostic, ProfileError
        from .filter import FilterBuildError, bpf_of, build_filter

        try:
            flt = build_filter(plan)  # (the Plan's own platform: it must build)
            if plan.launch.platform != "seccomp-notify":
                flt = build_filter(plan, "seccomp-notify")
            code = bpf_of(flt)
            filter_ok = True
        except FilterBuildError as exc:
            raise ProfileError([Diagnostic(res.file, 1, 1, f"the seccomp filter cannot be built: {exc}")]) from None
    if use_cache:
        entry = {"format": CACHE_FORMAT, "filter_ok": filter_ok, "plan": plan.to_tagged(),
                 "files": {str(p): _sha(p) for p in res.paths}}
        if code is not None:
            entry["bpf_notify"] = code.hex()
        import json  # (a cache miss: compiling imported it already)

        write_private(entry_file, json.dumps(entry, sort_keys=True).encode())
    return plan, code


__all__ = ["compile_cached", "compile_cached_with_filter", "cache_dir"]
