"""The x86_64 syscall table, from libseccomp (pyseccomp), and name suggestions."""

from __future__ import annotations

import difflib
from functools import lru_cache

ARCH = "x86_64"
_MAX_NR = 600


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, int], dict[int, str]]:
    from .libseccomp import load  # (pyseccomp without ctypes.util's ldconfig runs)

    sc = load()

    by_name: dict[str, int] = {}
    by_nr: dict[int, str] = {}
    for nr in range(_MAX_NR):
        try:
            name = sc.resolve_syscall(sc.Arch.X86_64, nr).decode()
        except ValueError:
            continue
        by_name[name] = nr
        by_nr[nr] = name
    return by_name, by_nr


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
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


__all__ = ["ARCH", "NATIVE_LIMIT", "number", "name_of", "max_known", "all_names", "suggest"]
