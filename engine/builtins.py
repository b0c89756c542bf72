"""Where the built-in profiles live, and how a built-in is named: the part of profile
lookup that `sandboxctl apply` needs when its Plan comes from the cache (this module
imports nothing of the engine, so that path skips the YAML node and extends machinery).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from pathlib import Path


def profiles_path() -> str:
    """profiles_dir() as a string, without importing pathlib (~3 ms of `apply`)."""
    from .. import profiles

    return os.path.dirname(os.path.realpath(profiles.__file__))


def profiles_dir() -> Path:
    """The folder holding the built-in profiles, groups.yaml and schema.json."""
    from pathlib import Path

    return Path(profiles_path())


def builtin_file(name: str) -> str | None:
    """The file of a built-in profile, as a string; None if there is none by that name."""
    if name in ("groups", "risk"):
        return None
    d = profiles_path()
    for cand in (os.path.join(d, f"{name}.yaml"), os.path.join(d, "examples", f"{name}.yaml")):
        if os.path.isfile(cand):
            return cand
    return None


def builtin_path(name: str) -> Path | None:
    from pathlib import Path

    found = builtin_file(name)
    return Path(found) if found is not None else None


def display_name(path: str | os.PathLike[str]) -> str:
    """How a built-in file is named in messages and Plans: relative to the working
    directory when it is below it, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


__all__ = ["profiles_dir", "profiles_path", "builtin_file", "builtin_path", "display_name"]
