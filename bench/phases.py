#!/usr/bin/env python3
"""Where the start-up of `sandboxctl apply` goes: a timeline of one run, phase by phase.

    python bench/phases.py [-n 9] [PROFILE] [-- COMMAND...]     (default: default -- true)

Runs `sandboxctl apply` in a fresh interpreter N times, started as the installed command
starts (python -S, cli/entry.py's sys.path), with the launcher's steps wrapped (no change
to the product: an import hook wraps a step's module when the product imports it, so
nothing is imported earlier than in a real run, and the sandbox's processes are forks,
so they carry the wrappers). Each step writes "start"/"end" with a monotonic
clock to a shared file; the table gives each step's median offset from the moment the
interpreter was asked to start, and its median duration. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (module, attribute) wrapped; the label is the attribute.
_STEPS = (
    ("sandboxctl.cli.cmd_apply", "load_plan_and_filter"),
    ("sandboxctl.sentry.launch.launcher", "run"),
    ("sandboxctl.sentry.launch.launcher", "_keeper"),
    ("sandboxctl.sentry.launch.launcher", "_init"),
    ("sandboxctl.sentry.launch.launcher", "_program"),
    ("sandboxctl.sentry.launch.launcher", "_warm_imports"),
    ("sandboxctl.sentry.launch.mnt", "prepare"),
    ("sandboxctl.sentry.launch.mnt", "build_root"),
    ("sandboxctl.sentry.launch.mnt", "_root"),
    ("sandboxctl.sentry.launch.launcher", "_import_child_side"),
    ("sandboxctl.sentry.launch.cgroup", "create"),
    ("sandboxctl.sentry.runs", "new_run"),
    ("sandboxctl.sentry.seccomp_child", "load_and_exec"),
    ("sandboxctl.gofer.process", "spawn_gofer"),
    ("sandboxctl.gofer.process", "PendingGofer.ready"),
    ("sandboxctl.sentry.supervisor", "fork_sentry_early"),
    ("sandboxctl.sentry.supervisor", "EarlySentry.hand_over"),
    ("sandboxctl.sentry.supervisor", "take_listener"),
    ("sandboxctl.sentry.launch.launcher", "_recv_report"),
    ("sandboxctl.sentry.supervisor", "_sentry_main"),
    ("sandboxctl.sentry.confine", "confine"),
    ("sandboxctl.sentry.dispatch", "Dispatcher.__init__"),
    ("sandboxctl.sentry.dispatch", "Dispatcher.dispatch"),
    ("sandboxctl.sentry.supervisor", "SentryHandle.wait"),
    ("sandboxctl.sentry.runs", "RunRecord.finish"),
    ("sandboxctl.sentry.launch.launcher", "_Session.close"),
    ("sandboxctl.gofer.process", "GoferHandle.wait"),
)

# Run inside the measured interpreter: wrap, then call the real entry point.
_CHILD = r"""
import os, sys, time
path = os.environ["PHASES_TRACE"]
def mark(label):  # by path, per mark: the Sentry closes every inherited descriptor
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, f"{time.monotonic_ns()} {os.getpid()} {label}\n".encode())
        os.close(fd)
    except OSError:
        pass  # inside the sandbox's root the file does not exist
mark("interpreter ready")
WANTED = {}
for mod, name in STEPS:
    WANTED.setdefault(mod, []).append(name)
def wrap(m, name):
    for part in name.split(".")[:-1]:
        m = getattr(m, part)
    f = getattr(m, name.split(".")[-1])
    def w(*a, **k):
        mark(name + " start")
        try:
            return f(*a, **k)
        finally:
            mark(name + " end")
    setattr(m, name.split(".")[-1], w)
class Hook:
    # wraps the steps of a module when the product itself imports it (nothing is
    # imported earlier than the product would)
    def find_spec(self, fullname, target_path=None, target=None):
        if fullname not in WANTED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, target_path, target)
            if spec is not None:
                break
        else:
            return None
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            for name in WANTED[fullname]:
                try:
                    wrap(module, name)
                except AttributeError:
                    pass
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Hook())
from sandboxctl.cli.main import main
mark("cli imported")
sys.argv = ["sandboxctl", *sys.argv[1:]]
code = 0
try:
    code = main()
finally:
    mark("main returned")
sys.exit(code)
"""


def _child_source() -> str:
    """_CHILD after the sys.path set-up of the installed command (cli/entry.py: python
    -S, the environment's site-packages and the package folder), so the measured
    interpreter starts as `sandboxctl` does."""
    from sandboxctl.cli.entry import script_text

    setup = script_text().split("from sandboxctl.cli.main import main")[0]
    return setup + _CHILD.replace("STEPS", repr(_STEPS))


def _one(argv: list[str], env: dict[str, str]) -> tuple[float, dict[str, float]]:
    with tempfile.NamedTemporaryFile() as fh:
        env = dict(env, PHASES_TRACE=fh.name)
        src = _child_source()
        t0 = time.monotonic_ns()
        r = subprocess.run([sys.executable, "-S", "-c", src, "apply", *argv], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        total = (time.monotonic_ns() - t0) / 1e6
        if r.returncode != 0:
            raise SystemExit(f"apply failed ({r.returncode}): {r.stderr.decode(errors='replace')[-400:]}")
        fh.seek(0)
        marks: dict[str, float] = {}
        for line in fh.read().decode().splitlines():
            ns, _pid, label = line.split(" ", 2)
            marks.setdefault(label, (int(ns) - t0) / 1e6)  # first occurrence
    return total, marks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=9)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    argv = args.rest or ["default", "--", "true"]
    state = tempfile.mkdtemp(prefix="sandboxctl-phases-")
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=state)
    _one(argv, env)  # warm the Plan cache and the page cache
    totals: list[float] = []
    offs: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.n):
        total, marks = _one(argv, env)
        totals.append(total)
        for k, v in marks.items():
            offs[k].append(v)
    subprocess.run(["rm", "-rf", state], check=False)
    print(f"`sandboxctl apply {' '.join(argv)}`: {args.n} runs, median {statistics.median(totals):.1f} ms "
          f"(best {min(totals):.1f}), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    rows = sorted(((statistics.median(v), k) for k, v in offs.items()))
    print(f"{'ms from exec':>12}  step")
    for t, k in rows:
        print(f"{t:12.1f}  {k}")
    print(f"{statistics.median(totals):12.1f}  process gone (wall clock seen by the caller)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
