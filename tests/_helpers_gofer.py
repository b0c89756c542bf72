"""Helpers for the Gofer tests: a sandbox-like namespace to point a real Gofer at,
hand-built Plans, and `sandboxctl apply` runs with their events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sandboxctl.engine.plan import (
    DefaultAction, GoferConfig, LaunchConfig, NetworkConfig, PathRule, Plan, RootConfig,
    SeccompPlan, SentryConfig, Source, SyntheticFile, UnameConfig,
)

# Builds a root like the launcher's: read-only /usr and /etc, a tmpfs /tmp (8 MiB),
# a read-only /ro and a writable /rw bound from the host, proc of its own pid namespace;
# pivot_root into it, drop the old root, and wait.
NS_SCRIPT = r"""
set -e
R=$1; HOSTDIR=$2
mount -t tmpfs tmpfs "$R"
mkdir -p "$R/usr" "$R/etc" "$R/tmp" "$R/proc" "$R/old" "$R/ro" "$R/rw"
mount --rbind /usr "$R/usr"; mount -o remount,bind,ro "$R/usr"
ln -s usr/bin "$R/bin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"
mount --rbind /etc "$R/etc"; mount -o remount,bind,ro "$R/etc"
mount --bind "$HOSTDIR/ro" "$R/ro"; mount -o remount,bind,ro "$R/ro"
mount --bind "$HOSTDIR/rw" "$R/rw"
mount -t tmpfs -o size=8m tmpfs "$R/tmp"
mount -t proc proc "$R/proc"
cd "$R"; pivot_root . old; umount -l /old; rmdir /old
echo ready
exec sleep 600
"""


class SandboxNS:
    """A user+mount+pid namespace with a pivoted root; `.pid` is its process (host view)."""

    def __init__(self, tmp: Path) -> None:
        self.hostdir = tmp / "host"
        (self.hostdir / "ro").mkdir(parents=True)
        (self.hostdir / "rw").mkdir()
        (tmp / "mnt").mkdir()
        script = tmp / "ns.sh"
        script.write_text(NS_SCRIPT)
        self.proc = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork",
             "--propagation", "private", "sh", str(script), str(tmp / "mnt"), str(self.hostdir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != b"ready":
            raise RuntimeError(f"namespace set-up failed: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
        self.pid = self._sleeper()

    def _sleeper(self) -> int:
        for _ in range(100):
            try:
                kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                kids = []
            if kids:
                return int(kids[0])
            time.sleep(0.01)
        raise RuntimeError("no process in the namespace")

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def src(line: int, text: str) -> Source:
    return Source("gofer-test.yaml", line, 5, text)


def make_plan(deny: tuple[str, ...] = (), readonly: tuple[str, ...] = (),
              synthetic: tuple[tuple[str, str], ...] = (), deny_errno: int = 2) -> Plan:
    return Plan(
        1, "gofer-test", "gofer-test.yaml", "0" * 64,
        SeccompPlan("x86_64", DefaultAction("allow"), ()),
        SentryConfig(UnameConfig()),
        GoferConfig("gofer", RootConfig(),
                    deny=tuple(PathRule(g, deny_errno, src(20 + i, f"- {g}"))
                               for i, g in enumerate(deny)),
                    readonly=tuple(PathRule(g, 30, src(40 + i, f"- {g}"))
                                   for i, g in enumerate(readonly)),
                    synthetic_files=tuple(SyntheticFile(p, c) for p, c in synthetic)),
        NetworkConfig("none"), LaunchConfig(("true",)))


# -- sandboxctl apply ------------------------------------------------------------------

PROFILE_HEAD = """apiVersion: sandboxctl/v1
kind: SandboxProfile
metadata: {name: gofer-test}
extends: default
"""


def write_profile(tmp: Path, body: str, name: str = "p.yaml") -> Path:
    path = tmp / name
    path.write_text(PROFILE_HEAD + body)
    return path


def apply(profile: Path, argv: list[str], state: Path, timeout: float = 60,
          stdin: bytes | None = None, opts: tuple[str, ...] = ()
          ) -> tuple[subprocess.CompletedProcess, Path]:
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(state))
    exe = Path(sys.executable).with_name("sandboxctl")
    before = set((state / "runs").iterdir()) if (state / "runs").exists() else set()
    cp = subprocess.run([str(exe), "apply", "--tty", "never", *opts, str(profile), "--", *argv],
                        input=stdin or b"", capture_output=True, timeout=timeout, env=env,
                        cwd=str(profile.parent))
    runs = sorted(set((state / "runs").iterdir()) - before)
    assert runs, f"no run recorded: {cp.stderr.decode()}"
    return cp, runs[-1]


def events(run_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    out = []
    path = run_dir / "events.jsonl"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.strip():
            ev = json.loads(line)
            if kind is None or ev.get("kind") == kind:
                out.append(ev)
    return out
