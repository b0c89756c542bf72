"""pyseccomp, imported without running `ldconfig -p` twice.

pyseccomp finds libc and libseccomp with ctypes.util.find_library at import time, which
on Linux runs `ldconfig -p` in a subprocess for each (~3 ms together, on `apply`'s
start-up path in two processes). `load()` lets it find the two libraries by their
sonames first (libc.so.6, libseccomp.so.2: what find_library would answer on glibc
systems with libseccomp 2.x) and falls back to find_library for anything else. Use
`load()` wherever the first import of pyseccomp may happen; later plain imports get the
same module from sys.modules.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from types import ModuleType

_SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}


def _find_library(name: str, _fallback=ctypes.util.find_library) -> str | None:
    soname = _SONAMES.get(name)
    if soname is not None:
        try:
            ctypes.CDLL(soname)
            return soname
        except OSError:
            pass
    return _fallback(name)


def load() -> ModuleType:
    """The pyseccomp module (imported now if it was not yet)."""
    mod = sys.modules.get("pyseccomp")
    if mod is not None:
        return mod
    saved = ctypes.util.find_library
    ctypes.util.find_library = _find_library
    try:
        import pyseccomp
    finally:
        ctypes.util.find_library = saved
    return pyseccomp


__all__ = ["load"]
