#!/usr/bin/env python3
"""The ptrace platform, side by side with gVisor's runsc --platform=ptrace.

Two measurements (bench/syscall_loop.py's C loop program; it times its own loop):

  start-up   `true` through `sandboxctl apply --platform ptrace`, `--platform
             seccomp-notify`, and `runsc --platform=ptrace do` (median of N, wall clock)
  loop       1,000,000 one-byte read(2) from /dev/zero (allowed: stays in the kernel on
             sandboxctl, every call is trapped on runsc) and uname(2) (trapped: one
             SECCOMP_RET_TRACE stop served by the Sentry in Python), per call

    python bench/ptrace.py                    # 1,000,000 reads, 20,000 unames, n=9
    python bench/ptrace.py --count 200000 --no-runsc -n 5

Targets (issue 7): allowed-call loop within 1.2x of native; the trapped-call cost in
microseconds and below runsc's ptrace per-call cost. Run as root (runsc do needs it).
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

HERE = Path(__file__).resolve().parent
# This file is named ptrace.py: keep its folder off sys.path, or `import ptrace` (python-
# ptrace, which the Sentry uses) would find this script instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _load_loop_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_syscall_loop", HERE / "syscall_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


_loop = _load_loop_module()
LOOP_C, PROFILE, _parse = _loop.LOOP_C, _loop.PROFILE, _loop._parse  # the same loop program


def _wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({r.returncode}): "
                         f"{r.stderr.decode(errors='replace')[-400:]}")
    return dt


def startup(n: int, env: dict[str, str], use_runsc: bool) -> list[tuple[str, float, float]]:
    sbx = [sys.executable, "-m", "sandboxctl.cli", "apply"]
    true = shutil.which("true") or "/bin/true"
    contenders = {
        "native": [true],
        "sandboxctl ptrace": [*sbx, "--platform", "ptrace", "default", "--", "true"],
        "sandboxctl seccomp-notify": [*sbx, "--platform", "seccomp-notify", "default", "--",
                                      "true"],
    }
    if use_runsc:
        contenders["runsc ptrace"] = ["runsc", "--platform=ptrace", "--network=none", "do",
                                      true]
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(n):  # interleaved: a busy moment hurts everyone alike
        for name, argv in contenders.items():
            times[name].append(_wall(argv, env))
    return [(k, statistics.median(v), min(v)) for k, v in times.items()]


def _loop_direct(plan, exe: str, mode: str, n: int, tmp: str) -> int:
    from sandboxctl.sentry.direct import run_direct

    out = os.path.join(tmp, f"out-{mode}.txt")
    with open(out, "wb") as fh:
        res = run_direct(plan, [exe, mode, str(n)], {"PATH": "/usr/bin:/bin"},
                         stdout=fh.fileno())
    if res.exit_code != 0:
        raise RuntimeError(f"sandboxed loop failed: {res}")
    with open(out) as fh:
        return _parse(fh.read())


def _loop_native(exe: str, mode: str, n: int) -> int:
    return _parse(subprocess.run([exe, mode, str(n)], check=True, capture_output=True,
                                 text=True).stdout)


def _loop_runsc(exe: str, mode: str, n: int) -> int:
    p = subprocess.run(["runsc", "--platform=ptrace", "--network=none", "do", exe, mode,
                        str(n)], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"runsc failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    return _parse(p.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000, help="read(2) calls")
    ap.add_argument("--uname-count", type=int, default=20_000, help="uname(2) calls")
    ap.add_argument("--runsc-count", type=int, default=None,
                    help="read(2) calls under runsc (default: --count)")
    ap.add_argument("-n", type=int, default=9, help="start-up runs per contender")
    ap.add_argument("--repeat", type=int, default=3, help="loops: best of N")
    ap.add_argument("--no-runsc", action="store_true")
    args = ap.parse_args(argv)
    if shutil.which("gcc") is None:
        print("bench: gcc is missing; install it (apt-get install gcc)", file=sys.stderr)
        return 1
    use_runsc = not args.no_runsc and shutil.which("runsc") is not None and os.geteuid() == 0
    tmp = tempfile.mkdtemp(prefix="sandboxctl-bench-ptrace-", dir="/var/tmp")
    os.chmod(tmp, 0o755)
    state = tempfile.mkdtemp(prefix="sandboxctl-bench-state-")
    os.environ["SANDBOXCTL_STATE_DIR"] = state
    env = dict(os.environ)
    try:
        exe = os.path.join(tmp, "loop")
        with open(exe + ".c", "w") as fh:
            fh.write(LOOP_C)
        subprocess.run(["gcc", "-O2", "-o", exe, exe + ".c"], check=True)
        os.chmod(exe, 0o755)
        profile = os.path.join(tmp, "bench.yaml")
        with open(profile, "w") as fh:
            fh.write(PROFILE + "platform: ptrace\n")
        from sandboxctl.engine.compile import compile_profile

        plan = compile_profile(profile)
        assert plan.launch.platform == "ptrace"

        print(f"start-up of `true` (median / best of {args.n}, wall clock)")
        rows = startup(args.n, env, use_runsc)
        base = dict((k, m) for k, m, _ in rows)
        for name, med, best in rows:
            extra = ""
            if name == "sandboxctl ptrace" and "runsc ptrace" in base:
                extra = f"   {med / base['runsc ptrace']:.2f}x runsc ptrace"
            print(f"  {name:28} {med * 1000:8.1f} ms {best * 1000:8.1f} ms{extra}")

        n, m = args.count, args.uname_count
        nat_r = sbx_r = nat_u = sbx_u = 1 << 62
        for _ in range(args.repeat):
            nat_r = min(nat_r, _loop_native(exe, "read", n))
            sbx_r = min(sbx_r, _loop_direct(plan, exe, "read", n, tmp))
            nat_u = min(nat_u, _loop_native(exe, "uname", m))
            sbx_u = min(sbx_u, _loop_direct(plan, exe, "uname", m, tmp))
        table = [("native", nat_r / n, nat_u / m), ("sandboxctl ptrace", sbx_r / n, sbx_u / m)]
        if use_runsc:
            rn = args.runsc_count or n
            mu = min(m, 5000)
            table.append(("runsc ptrace", _loop_runsc(exe, "read", rn) / rn,
                          _loop_runsc(exe, "uname", mu) / mu))
        print(f"\n{n:,} x read(2) of 1 byte (allowed in sandboxctl's filter); "
              f"{m:,} x uname(2) (trapped)")
        print(f"  {'':26} {'read ns/call':>13} {'vs native':>10} {'uname us/call':>14}")
        for name, r, u in table:
            print(f"  {name:26} {r:13.1f} {r / table[0][1]:9.2f}x {u / 1000:14.2f}")
        sb = table[1]
        print(f"\nallowed-call ratio sandboxctl ptrace/native: {sb[1] / table[0][1]:.3f} "
              f"(target <= 1.2)")
        trapped_us = (sb[2] - table[0][2]) / 1000
        print(f"trapped-call cost on sandboxctl ptrace: {trapped_us:.1f} us per call "
              f"(uname, minus native)")
        if use_runsc:
            rs = table[2]
            runsc_read = (rs[1] - table[0][1]) / 1000  # every call traps on runsc
            runsc_uname = (rs[2] - table[0][2]) / 1000
            print(f"runsc ptrace per-call cost: read {runsc_read:.1f} us, uname "
                  f"{runsc_uname:.1f} us (minus native)")
            print(f"sandboxctl trapped / runsc per-call: {trapped_us / runsc_read:.2f} (vs read), "
                  f"{trapped_us / runsc_uname:.2f} (vs uname); target < 1")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
