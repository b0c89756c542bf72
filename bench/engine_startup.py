#!/usr/bin/env python3
"""Wall time of `sandboxctl validate` and `sandboxctl compile` on the default profile.

Each command runs N times as a fresh process. "warm" is the normal case: the Plan cache
(keyed by the hashes of the profile's extends chain) holds the unchanged profile, so
neither ruamel.yaml nor jsonschema is imported. "cold" passes --no-cache: full load,
schema validation, compile (and filter build for validate).

    python3 bench/engine_startup.py [-n 10] [--limit-ms 300]

Exits 1 if a warm median is over the limit (the issue's target: under 300 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10, help="runs per case (default 10)")
    ap.add_argument("--limit-ms", type=float, default=300.0)
    args = ap.parse_args()
    exe = shutil.which("sandboxctl") or ""
    base = [exe] if exe else [sys.executable, "-m", "sandboxctl.cli"]
    cache = tempfile.mkdtemp(prefix="sbx-bench-cache-")
    env = {**os.environ, "SANDBOXCTL_CACHE_DIR": cache}
    profile = "profiles/default.yaml"
    cases = [
        ("validate", "cold", ["validate", "--no-cache", profile]),
        ("validate", "warm", ["validate", profile]),
        ("compile", "cold", ["compile", "--no-cache", profile]),
        ("compile", "warm", ["compile", profile]),
    ]
    timed(base + ["validate", profile], env)  # fill the cache (and the OS page cache)
    failed = False
    print(f"{'command':<10}{'cache':<7}{'median ms':>10}{'min ms':>9}{'max ms':>9}")
    for name, kind, argv in cases:
        runs = [timed(base + argv, env) for _ in range(args.n)]
        med = statistics.median(runs)
        print(f"{name:<10}{kind:<7}{med:>10.0f}{min(runs):>9.0f}{max(runs):>9.0f}")
        if kind == "warm" and med > args.limit_ms:
            failed = True
    interp = statistics.median(timed([sys.executable, "-c", "pass"], env) for _ in range(args.n))
    print(f"(bare interpreter start: {interp:.0f} ms; limit for warm runs: {args.limit_ms:.0f} ms)")
    shutil.rmtree(cache, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
