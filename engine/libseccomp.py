"""pyseccomp, imported without `ctypes.util` and without running `ldconfig -p` twice.

pyseccomp finds libc and libseccomp with ctypes.util.find_library at import time. On
Linux that runs `ldconfig -p` in a subprocess for each (~3 ms together), and importing
ctypes.util itself pulls in shutil, subprocess and their imports (~5-9 ms); both sit on
`apply`'s start-up path, in two processes. `load()` lets pyseccomp find the two
libraries by their sonames (libc.so.6, libseccomp.so.2: what find_library answers on
glibc systems with libseccomp 2.x): while pyseccomp is imported, `ctypes.util` is a
stand-in module whose find_library tries the soname and, for anything else or if the
soname does not load, imports the real ctypes.util and asks it. The stand-in is removed
right after, so a later `import ctypes.util` gets the real module. Use `load()` wherever
the first import of pyseccomp may happen; later plain imports get the same module from
sys.modules.
"""

from __future__ import annotations

import ctypes
import sys
from types import ModuleType

_SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}


def _by_soname(name: str) -> str | None:
    soname = _SONAMES.get(name)
    if soname is not None:
        try:
            ctypes.CDLL(soname)
            return soname
        except OSError:
            pass
    return None


def load() -> ModuleType:
    """The pyseccomp module (imported now if it was not yet)."""
    mod = sys.modules.get("pyseccomp")
    if mod is not None:
        return mod
    saved = sys.modules.get("ctypes.util")  # the real module, if someone imported it

    def find_library(name: str) -> str | None:
        found = _by_soname(name)
        if found is not None:
            return found
        real = saved
        if real is None:  # a system where the sonames do not load: the real one, now
            del sys.modules["ctypes.util"]
            import importlib

            real = importlib.import_module("ctypes.util")
        return real.find_library(name)

    stand_in = ModuleType("ctypes.util")
    stand_in.find_library = find_library  # type: ignore[attr-defined]
    stand_in._sandboxctl_stand_in = True  # type: ignore[attr-defined]
    sys.modules["ctypes.util"] = stand_in
    ctypes.util = stand_in  # type: ignore[attr-defined]
    try:
        import pyseccomp
    finally:
        if sys.modules.get("ctypes.util") is stand_in:  # (not replaced by the real one)
            if saved is not None:
                sys.modules["ctypes.util"] = saved
            else:
                del sys.modules["ctypes.util"]
        if getattr(ctypes, "util", None) is stand_in:
            if saved is not None:
                ctypes.util = saved  # type: ignore[attr-defined]
            else:
                del ctypes.util  # type: ignore[attr-defined]
    return pyseccomp


__all__ = ["load"]
