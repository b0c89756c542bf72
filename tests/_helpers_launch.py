"""Helpers for the host-layer tests: write a profile, run `sandboxctl apply` for real,
look for leftovers on the host."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

BASE = """\
apiVersion: sandboxctl/v1
kind: SandboxProfile
metadata: {name: launch-test, description: host layer test}
extends: default
filesystem:
  mediation: direct
"""


def write_profile(dirpath: Path, extra: str = "", name: str = "p.yaml") -> Path:
    """A profile extending the default one with direct file mediation plus `extra`
    (YAML text at the top level; a `filesystem:` key there replaces the one above)."""
    text = BASE
    extra = textwrap.dedent(extra)
    if "filesystem:" in extra:
        text = text.replace("filesystem:\n  mediation: direct\n", "")
    path = dirpath / name
    path.write_text(text + extra)
    path.chmod(0o644)
    return path


def apply_cmd(profile: Path | str, *cmd: str, opts: tuple[str, ...] = ()) -> list[str]:
    return [PYTHON, "-m", "sandboxctl.cli", "apply", *opts, str(profile), "--", *cmd]


def env_for(state: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SANDBOXCTL_STATE_DIR": str(state),
           "HOME": str(state)}
    env.update(extra)
    return env


def apply(profile: Path | str, *cmd: str, state: Path, timeout: float = 30,
          user: int | None = None, opts: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess:
    argv = apply_cmd(profile, *cmd, opts=opts)
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=env_for(state, **env), stdin=subprocess.DEVNULL)


def procs_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    out.append(int(name))
        except OSError:
            continue
    return out


def wait_for(pred, timeout: float = 10.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def cgroup_dirs_of(pid: int) -> list[str]:
    """sandboxctl cgroup directories existing for supervisor `pid`, in every hierarchy."""
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d.startswith(f"sandboxctl-{pid}-"):
                found.append(os.path.join(root, d))
        if root.count("/") > 8:
            dirs[:] = []
    return found


def host_mounts_mentioning(*words: str) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line for line in fh if any(w in line for w in words)]
