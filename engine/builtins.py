"""Where the built-in profiles live, and how a built-in is named: the part of profile
lookup that `sandboxctl apply` needs when its Plan comes from the cache (this module
imports nothing of the engine, so that path skips the YAML node and extends machinery).
"""

from __future__ import annotations

import os
from pathlib import Path


def profiles_dir() -> Path:
    """The folder holding the built-in profiles, groups.yaml and schema.json."""
    from .. import profiles

    return Path(profiles.__file__).resolve().parent


def builtin_path(name: str) -> Path | None:
    d = profiles_dir()
    for cand in (d / f"{name}.yaml", d / "examples" / f"{name}.yaml"):
        if cand.is_file() and name not in ("groups", "risk"):
            return cand
    return None


def display_name(path: Path) -> str:
    """How a built-in file is named in messages and Plans: relative to the working
    directory when it is below it, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


__all__ = ["profiles_dir", "builtin_path", "display_name"]
