#!/usr/bin/env python3
"""Start-up time of `true`: native, sandboxctl, bwrap and gVisor's runsc, from one run.

    python bench/startup.py [-n 15] [--profile profiles/default.yaml]

Each contender runs `true` N times in turn (interleaved, so a busy moment hurts everyone
alike); the table shows the median and the best wall-clock time, and the ratios of
sandboxctl's median to each other one. "CPython floor" is bench/floor_launch.py, what
any launcher written in Python pays at least (interpreter, namespaces, a read-only root,
pivot_root, exec; no sandboxctl layer), for scale. The issue's target: sandboxctl <= 0.4x runsc.
Not a test: it prints a table. Run it as root (runsc do needs it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import wall  # bench/ is first on sys.path

REPO = Path(__file__).resolve().parent.parent



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=15, help="runs per contender (default 15)")
    ap.add_argument("--profile", default=str(REPO / "profiles" / "default.yaml"))
    args = ap.parse_args()

    state = tempfile.mkdtemp(prefix="sandboxctl-bench-")
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=state)
    sandboxctl = shutil.which("sandboxctl") or f"{sys.executable} -m sandboxctl.cli"
    true = shutil.which("true") or "/bin/true"
    plan_json = os.path.join(state, "plan.json")
    out = subprocess.run([*sandboxctl.split(), "compile", args.profile], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env)
    if out.returncode != 0:
        raise SystemExit(f"cannot compile {args.profile}")
    Path(plan_json).write_bytes(out.stdout)

    contenders: dict[str, list[str]] = {
        "native": [true],
        "sandboxctl (profile)": [*sandboxctl.split(), "apply", args.profile, "--", "true"],
        "sandboxctl (plan.json)": [*sandboxctl.split(), "apply", plan_json, "--", "true"],
        "sandboxctl ptrace": [*sandboxctl.split(), "apply", "--platform", "ptrace",
                              args.profile, "--", "true"],
    }
    # `sandboxctl` as .ci/setup installs it is cli/entry.py's script (python -S: no
    # `site`). This row is the console script pip writes next to the interpreter, which
    # starts with `site` (and, in an editable install, its finder), for comparison.
    console = os.path.join(os.path.dirname(sys.executable), "sandboxctl")
    if os.access(console, os.X_OK) and os.path.realpath(console) != os.path.realpath(sandboxctl.split()[0]):
        contenders["sandboxctl (pip console script)"] = [console, "apply", args.profile, "--", "true"]
    # What a launcher written in Python pays at least: the interpreter, namespaces, a
    # read-only root, pivot_root, exec (bench/floor_launch.py: no sandboxctl layer at all)
    contenders["CPython floor (no layers)"] = [
        sys.executable, "-S", "-E", str(REPO / "bench" / "floor_launch.py"), "true"]
    if shutil.which("bwrap"):
        contenders["bwrap"] = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                               "--proc", "/proc", "--dev", "/dev", "true"]
    if shutil.which("runsc") and os.geteuid() == 0:
        contenders["runsc ptrace"] = ["runsc", "--platform=ptrace", "--network=none", "do", "true"]

    times: dict[str, list[float]] = {k: [] for k in contenders}
    for name, argv in contenders.items():  # warm caches once
        wall(argv, env)
    for _ in range(args.n):
        for name, argv in contenders.items():
            times[name].append(wall(argv, env))
    shutil.rmtree(state, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    ours = med["sandboxctl (profile)"]
    print(f"start-up of `true`, {args.n} runs each, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'':32} {'median ms':>10} {'best ms':>9} {'sandboxctl/this':>16}")
    for name, v in times.items():
        print(f"{name:32} {med[name] * 1000:10.1f} {min(v) * 1000:9.1f} {ours / med[name]:16.2f}x")
    if "runsc ptrace" in med:
        r = ours / med["runsc ptrace"]
        rj = med["sandboxctl (plan.json)"] / med["runsc ptrace"]
        print(f"\nsandboxctl / runsc: {r:.2f}x with a profile, {rj:.2f}x with a compiled plan "
              f"(target <= 0.40x: {'met' if min(r, rj) <= 0.4 else 'NOT met'})")
        rp = med["sandboxctl ptrace"] / med["runsc ptrace"]
        print(f"sandboxctl ptrace / runsc ptrace: {rp:.2f}x (platform against platform)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
