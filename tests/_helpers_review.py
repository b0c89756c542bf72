"""Helpers for the review tests (diff, explain, learn): profile files built from sections."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VENV_BIN = os.path.dirname(sys.executable)
SANDBOXCTL = os.path.join(VENV_BIN, "sandboxctl")

# A base profile as named sections; a variant replaces some sections (None drops one).
BASE_SECTIONS: dict[str, str] = {
    "head": "apiVersion: sandboxctl/v1\nkind: SandboxProfile\nmetadata: {name: review-base}\n"
            "extends: default\n",
    "process": "process:\n  command: [\"true\"]\n  user: {uid: 1000, gid: 1000}\n"
               "  rlimits: {nofile: 256}\n",
    "syscalls": "syscalls:\n  default: {action: deny, errno: EPERM}\n  allow:\n"
                "    - \"@default\"\n"
                "    - {name: socket, args: [{index: 0, op: eq, value: AF_UNIX}]}\n"
                "  deny:\n    - {name: kcmp, errno: EPERM}\n"
                "  log: [memfd_create]\n  kill: [bpf]\n",
    "filesystem": "filesystem:\n  readonly: [/data/**]\n",
    "network": "network:\n  mode: netstack\n  egress:\n    - {host: example.com, ports: [443]}\n",
    "capabilities": "capabilities: {keep: [CAP_NET_RAW]}\n",
    "resources": "resources: {memory: 256Mi, pids: 64}\n",
}


def profile_text(overrides: dict[str, str | None] | None = None) -> str:
    sections = dict(BASE_SECTIONS)
    for k, v in (overrides or {}).items():
        if v is None:
            sections.pop(k, None)
        else:
            sections[k] = v
    return "".join(sections.values())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def sandboxctl(*args: str, cwd: str | os.PathLike[str] | None = None,
               env: dict[str, str] | None = None, timeout: float = 60,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([SANDBOXCTL, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout, input=input)


def line_of(path: Path, needle: str) -> int:
    """1-based line number of the first line of `path` containing `needle`."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def cli(*args: str, cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`sandboxctl ARGS` run in this process (for diff and explain, which do not fork):
    the same main() as the installed command, without an interpreter start per call."""
    import contextlib
    import io

    from sandboxctl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    saved = {k: os.environ.get(k) for k in (env or {})}
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old_cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["sandboxctl", *args], code, out.getvalue(), err.getvalue())
