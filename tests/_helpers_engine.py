"""Helpers for the profile engine tests (tests/test_engine_*.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandboxctl.engine.errors import Diagnostic, ProfileError

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
HEAD = "apiVersion: sandboxctl/v1\nkind: SandboxProfile\n"


def write(tmp: Path, name: str, text: str, head: bool = True) -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text((HEAD if head else "") + textwrap.dedent(text).lstrip("\n"))
    return p


def errors_of(path: Path | str, **kw) -> list[Diagnostic]:
    from sandboxctl.engine.compile import compile_profile

    with pytest.raises(ProfileError) as info:
        compile_profile(path, **kw)
    return list(info.value.diagnostics)


def find(diags: list[Diagnostic], text: str) -> Diagnostic:
    hits = [d for d in diags if text in d.message]
    assert hits, f"no diagnostic containing {text!r} in:\n" + "\n".join(d.render() for d in diags)
    return hits[0]


def cli(*args: str, cwd: Path | str = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([PY, "-m", "sandboxctl.cli", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=60)
