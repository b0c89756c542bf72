"""What the scripts in bench/ share: timing a command, and a scratch place with a small C
program built in it. Imported by name (each script's own folder is first on sys.path)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Iterator


def wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds `argv` takes, output discarded; SystemExit with its stderr if it fails."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({r.returncode}): "
                         f"{r.stderr.decode(errors='replace')[-500:]}")
    return dt


def have_gcc() -> bool:
    if shutil.which("gcc") is None:
        print("bench: gcc is missing; install it (apt-get install gcc)", file=sys.stderr)
        return False
    return True


@contextlib.contextmanager
def scratch(prefix: str = "sandboxctl-bench-") -> Iterator[str]:
    """A directory under /var/tmp (in every sandbox's read-only view of the host root; a
    profile's /tmp is often a tmpfs), readable by all, and a run-state directory for
    sandboxctl unless SANDBOXCTL_STATE_DIR is set; both removed afterwards."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")
    os.chmod(tmp, 0o755)
    state = tempfile.mkdtemp(prefix="sandboxctl-bench-state-")
    os.environ.setdefault("SANDBOXCTL_STATE_DIR", state)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.environ.get("SANDBOXCTL_STATE_DIR") == state:
            del os.environ["SANDBOXCTL_STATE_DIR"]
        shutil.rmtree(state, ignore_errors=True)


def build_c(source: str, directory: str, name: str) -> str:
    """Compile `source` with gcc -O2 into directory/name; the executable's path."""
    exe = os.path.join(directory, name)
    with open(exe + ".c", "w") as fh:
        fh.write(source)
    subprocess.run(["gcc", "-O2", "-o", exe, exe + ".c"], check=True)
    os.chmod(exe, 0o755)
    return exe


__all__ = ["wall", "have_gcc", "scratch", "build_c"]
