#!/usr/bin/env python3
"""File calls through the Gofer, against native, bubblewrap and gVisor (runsc, ptrace).

Two workloads, every runner in the same run:
  loop    N x (open + close + stat) of one file, timed by the (C) program itself, so
          start-up is not counted; under sandboxctl open and stat are trapped and served by
          the Gofer, close stays in the kernel
  import  `python3 -c 'import json, email, http.client'`, wall-clock time of the whole
          command (start-up of each sandbox included), median of --repeat runs

and the cost of one trapped call in microseconds: an open and a stat, each answered from
the Sentry's caches (the default root, `cache: exclusive`: the open with a descriptor the
Gofer opened ahead, the stat from the attribute cache) and through the Gofer (`cache:
shared`: the Gofer opens, the Sentry injects the descriptor), each timed by a C loop of N
calls of one kind, less the same loop natively.

The loop opens one name over and over: from its third open on, the open cache serves it
(docs/gofer.md). The import opens most of its files once, each through the Gofer.

    bench/files.py                    # N = 20,000, 5 import runs
    bench/files.py --count 5000 --no-runsc

sandboxctl runs `sandboxctl apply` on the built-in default profile (mediation: gofer).
Targets (issue 4): both at most 0.3x runsc's time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import build_c, have_gcc, scratch  # bench/ is first on sys.path

LOOP_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[2]); struct stat st;
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0) { perror("open"); return 2; }
        close(fd);
        if (stat(argv[1], &st)) { perror("stat"); return 3; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("LOOP %ld\n", (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec));
    return 0;
}
"""

# N x open+close, then N x stat: "CALLS <open ns> <stat ns>"
CALLS_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                        return t.tv_sec * 1000000000L + t.tv_nsec; }
int main(int argc, char **argv) {
    long n = atol(argv[2]); struct stat st;
    long a = now();
    for (long i = 0; i < n; i++) {
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0) { perror("open"); return 2; }
        close(fd);
    }
    long b = now();
    for (long i = 0; i < n; i++)
        if (stat(argv[1], &st)) { perror("stat"); return 3; }
    printf("CALLS %ld %ld\n", b - a, now() - b);
    return 0;
}
"""

SHARED = """apiVersion: sandboxctl/v1
kind: SandboxProfile
metadata: {name: files-bench-shared, description: the default with an uncached root}
extends: default
filesystem:
  root: {source: /, readonly: true, overlay: memory, cache: shared}
"""

IMPORT = ["python3", "-c", "import json, email, http.client"]
TARGET = "/usr/lib/python3.11/json/__init__.py"


def runners(use_runsc: bool, use_bwrap: bool) -> dict[str, list[str]]:
    r: dict[str, list[str]] = {"native": []}
    if use_bwrap:
        r["bwrap"] = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                      "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--"]
    r["sandboxctl"] = ["sandboxctl", "apply", "--tty", "never", "default", "--"]
    if use_runsc:
        r["runsc ptrace"] = ["runsc", "--platform=ptrace", "--network=none", "do", "--"]
    return r


def _run(prefix: list[str], argv: list[str]) -> str:
    p = subprocess.run(prefix + argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(prefix[:2]) or 'native'} failed ({p.returncode}): "
                           f"{p.stderr.strip()[-300:]}")
    return p.stdout


def loop_ns(prefix: list[str], exe: str, n: int) -> int:
    out = _run(prefix, [exe, TARGET, str(n)])
    for line in out.splitlines():
        if line.startswith("LOOP "):
            return int(line.split()[1])
    raise RuntimeError(f"the loop printed no timing: {out!r}")


def calls_ns(prefix: list[str], exe: str, n: int) -> tuple[int, int]:
    """(open+close ns, stat ns) for n calls each."""
    out = _run(prefix, [exe, TARGET, str(n)])
    for line in out.splitlines():
        if line.startswith("CALLS "):
            _, o, st = line.split()
            return int(o), int(st)
    raise RuntimeError(f"the call loop printed no timing: {out!r}")


def wall(prefix: list[str], argv: list[str]) -> float:
    t = time.perf_counter()
    _run(prefix, argv)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20_000, help="open+close+stat rounds")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each, interleaved (median "
                    "for import, best for the loop)")
    ap.add_argument("--no-runsc", action="store_true", help="skip gVisor")
    ap.add_argument("--no-bwrap", action="store_true", help="skip bubblewrap")
    args = ap.parse_args(argv)
    if not have_gcc():
        return 1
    use_runsc = not args.no_runsc and shutil.which("runsc") is not None and os.geteuid() == 0
    use_bwrap = not args.no_bwrap and shutil.which("bwrap") is not None
    with scratch() as tmp:
        exe = build_c(LOOP_C, tmp, "files")
        calls_exe = build_c(CALLS_C, tmp, "calls")
        shared = os.path.join(tmp, "shared.yaml")
        with open(shared, "w") as fh:
            fh.write(SHARED)
        n = args.count
        rows = []
        contenders = runners(use_runsc, use_bwrap)
        sbx_prefix = contenders["sandboxctl"]
        # every contender the same number of runs, interleaved (a busy moment hurts all)
        loops: dict[str, list[int]] = {name: [] for name in contenders}
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, prefix in contenders.items():
                loops[name].append(loop_ns(prefix, exe, n))
                walls[name].append(wall(prefix, IMPORT))
        for name in contenders:
            rows.append((name, min(loops[name]), statistics.median(walls[name])))
        base = rows[0]
        print(f"loop: {n:,} x (open + close + stat) of {TARGET}; import: {' '.join(IMPORT)}")
        print(f"{'':14} {'loop ms':>9} {'us/round':>9} {'vs native':>10} {'import ms':>10} "
              f"{'vs native':>10}")
        for name, loop, imp in rows:
            print(f"{name:14} {loop / 1e6:9.1f} {loop / n / 1000:9.2f} {loop / base[1]:9.1f}x "
                  f"{imp * 1000:10.1f} {imp / base[2]:9.1f}x")
        sbx = next(r for r in rows if r[0] == "sandboxctl")
        # one trapped call of each kind: best of --repeat, less the native loop
        shared_prefix = sbx_prefix[:-2] + [shared, "--"]
        per = {}
        for label, prefix in (("native", []), ("exclusive", sbx_prefix), ("shared", shared_prefix)):
            got = [calls_ns(prefix, calls_exe, n) for _ in range(args.repeat)]
            per[label] = (min(g[0] for g in got), min(g[1] for g in got))
        nat = per["native"]
        us = {k: ((v[0] - nat[0]) / n / 1000, (v[1] - nat[1]) / n / 1000) for k, v in per.items()}
        print(f"\none trapped call, us: open served ahead (the open cache) "
              f"{us['exclusive'][0]:.1f}; open through the Gofer (cache: shared) "
              f"{us['shared'][0]:.1f}; stat from the attribute cache {us['exclusive'][1]:.1f}; "
              f"stat through the Gofer (cache: shared) {us['shared'][1]:.1f}")
        rs = next((r for r in rows if r[0] == "runsc ptrace"), None)
        if rs is not None:
            print(f"sandboxctl / runsc: loop {sbx[1] / rs[1]:.2f}x, import {sbx[2] / rs[2]:.2f}x "
                  f"(target <= 0.3x)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
