"""The x86_64 syscall table, from libseccomp (pyseccomp), and name suggestions.

libseccomp is asked once per machine: the names are kept in the cache folder
(engine/cache.py, own_cached), stamped with the dynamic linker's cache (rewritten
whenever a library is installed or upgraded) and this file. So `sandboxctl apply`, whose
Sentry names the calls it serves with this table (and cannot load libseccomp once it has
confined itself), reads a small file instead of importing pyseccomp (~3 ms, with the
`typing` it imports) and resolving 600 numbers (~2 ms).
"""

from __future__ import annotations

import os
from functools import lru_cache

ARCH = "x86_64"
_MAX_NR = 600


def _resolve_all() -> bytes:
    from .libseccomp import load  # (pyseccomp without ctypes.util's ldconfig runs)

    sc = load()
    names = []
    for nr in range(_MAX_NR):
        try:
            names.append(sc.resolve_syscall(sc.Arch.X86_64, nr).decode())
        except ValueError:
            names.append("")
    return "\n".join(names).encode()


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, int], dict[int, str]]:
    from .cache import own_cached, source_stamp

    try:
        linker = os.stat("/etc/ld.so.cache").st_mtime_ns
    except OSError:
        linker = None
    text = own_cached("syscall-names", (_MAX_NR, linker, source_stamp(__file__)), _resolve_all,
                      lambda c: c.count(b"\n") == _MAX_NR - 1)
    by_nr = {nr: name for nr, name in enumerate(text.decode().split("\n")) if name}
    return {name: nr for nr, name in by_nr.items()}, by_nr


def number(name: str) -> int | None:
    """The x86_64 number of syscall `name`, or None if x86_64 has no such call."""
    return _table()[0].get(name)


def name_of(nr: int) -> str | None:
    return _table()[1].get(nr)


def max_known() -> int:
    """The highest x86_64 syscall number this libseccomp knows by name."""
    return max(_table()[1])


# Numbers 512 and up belong to the x32 ABI, which the filter refuses anyway.
NATIVE_LIMIT = 512


def all_names() -> list[str]:
    """Every x86_64 syscall name, in number order."""
    by_nr = _table()[1]
    return [by_nr[n] for n in sorted(by_nr)]


def suggest(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The closest choice to a misspelled word, or None."""
    import difflib  # (imports re: not for the Sentry's start, which only names calls)

    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


__all__ = ["ARCH", "NATIVE_LIMIT", "number", "name_of", "max_known", "all_names", "suggest"]
