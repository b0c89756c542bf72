#!/usr/bin/env python3
"""The ptrace platform, side by side with gVisor's runsc --platform=ptrace.

Two measurements (bench/syscall_loop.py's C loop program; it times its own loop):

  start-up   `true` through `sandboxctl apply --platform ptrace`, `--platform
             seccomp-notify`, and `runsc --platform=ptrace do` (median of N, wall clock)
  loop       1,000,000 one-byte read(2) from /dev/zero (allowed: stays in the kernel on
             sandboxctl, every call is trapped on runsc) and uname(2) (trapped: one
             SECCOMP_RET_TRACE stop served by the Sentry in Python), per call;
             median and spread of --repeat interleaved runs, each contender twice:
             as is, and on one CPU (`taskset -c N`, the Sentry and the program share
             that CPU: a stop hands the CPU straight to the tracer, no cross-CPU wake-up)

    python bench/ptrace_platform.py                    # 1,000,000 reads, 20,000 unames, n=9
    python bench/ptrace_platform.py --count 200000 --no-runsc -n 5

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
from typing import Callable

import syscall_loop as _loop  # the same loop program (bench/ is first on sys.path)
from benchlib import build_c, have_gcc, scratch, wall

LOOP_C, PROFILE, _parse = _loop.LOOP_C, _loop.PROFILE, _loop._parse


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
            times[name].append(wall(argv, env))
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


def _pinned(cpu: int | None, fn: Callable[[], int]) -> int:
    with _Pinned(cpu):
        return fn()


def _loop_native(exe: str, mode: str, n: int) -> int:
    return _parse(subprocess.run([exe, mode, str(n)], check=True, capture_output=True,
                                 text=True).stdout)


class _Pinned:
    """Run the block with this process (and what it forks: the Sentry, the program,
    runsc) on one CPU, as `taskset -c N sandboxctl ...` would."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.saved: set[int] | None = None

    def __enter__(self) -> None:
        if self.cpu is not None:
            self.saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {self.cpu})

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            os.sched_setaffinity(0, self.saved)


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
    ap.add_argument("--runsc-count", type=int, default=20_000,
                    help="read(2) calls under runsc (each traps: tens of us)")
    ap.add_argument("-n", type=int, default=9, help="start-up runs per contender")
    ap.add_argument("--repeat", type=int, default=5, help="loops: median of N")
    ap.add_argument("--no-runsc", action="store_true")
    args = ap.parse_args(argv)
    if not have_gcc():
        return 1
    use_runsc = not args.no_runsc and shutil.which("runsc") is not None and os.geteuid() == 0
    with scratch("sandboxctl-bench-ptrace-") as tmp:
        env = dict(os.environ)
        exe = build_c(LOOP_C, tmp, "loop")
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
        rn = args.runsc_count
        cpu = max(os.sched_getaffinity(0))
        one = f"1 CPU (taskset -c {cpu})"
        # (name, read(n) -> ns, uname(m) -> ns): every contender runs in every repeat,
        # interleaved, so a busy moment of the machine hits all of them alike.
        contenders: list[tuple[str, Callable[[], float], Callable[[], float]]] = [
            ("native", lambda: _loop_native(exe, "read", n) / n,
             lambda: _loop_native(exe, "uname", m) / m)]
        for label, pin in (("", None), (f", {one}", cpu)):
            contenders.append((
                f"sandboxctl ptrace{label}",
                lambda pin=pin: _pinned(pin, lambda: _loop_direct(plan, exe, "read", n, tmp)) / n,
                lambda pin=pin: _pinned(pin, lambda: _loop_direct(plan, exe, "uname", m, tmp)) / m))
        if use_runsc:
            mu = min(m, 5000)
            for label, pin in (("", None), (f", {one}", cpu)):
                contenders.append((
                    f"runsc ptrace{label}",
                    lambda pin=pin: _pinned(pin, lambda: _loop_runsc(exe, "read", rn)) / rn,
                    lambda pin=pin: _pinned(pin, lambda: _loop_runsc(exe, "uname", mu)) / mu))
        reads: dict[str, list[float]] = {c[0]: [] for c in contenders}
        unames: dict[str, list[float]] = {c[0]: [] for c in contenders}
        for _ in range(args.repeat):
            for name, read, uname in contenders:
                reads[name].append(read())
                unames[name].append(uname())
        med = statistics.median
        nat_r, nat_u = med(reads["native"]), med(unames["native"])
        print(f"\n{n:,} x read(2) of 1 byte (allowed in sandboxctl's filter; {rn:,} under "
              f"runsc); {m:,} x uname(2) (trapped); median [min-max] of {args.repeat}")
        print(f"  {'':40} {'read ns/call':>13} {'vs native':>9}  {'uname us/call (spread)':>24}")
        for name, _, _ in contenders:
            r, u = reads[name], unames[name]
            print(f"  {name:40} {med(r):13.1f} {med(r) / nat_r:8.2f}x  {med(u) / 1000:9.2f} "
                  f"[{min(u) / 1000:.2f}-{max(u) / 1000:.2f}]")
        ratio = med(reads["sandboxctl ptrace"]) / nat_r
        print(f"\nallowed-call ratio sandboxctl ptrace/native: {ratio:.3f} (target <= 1.2)")
        cost = {name: (med(unames[name]) - nat_u) / 1000 for name, _, _ in contenders}
        for name in cost:
            if name.startswith("sandboxctl"):
                print(f"trapped-call cost, {name}: {cost[name]:.1f} us per call "
                      f"(uname, minus native)")
        if use_runsc:
            for label in ("", f", {one}"):
                rs = f"runsc ptrace{label}"
                rs_read = (med(reads[rs]) - nat_r) / 1000  # every call traps on runsc
                sb = cost[f"sandboxctl ptrace{label}"]
                print(f"runsc ptrace per-call cost{label}: read {rs_read:.1f} us, uname "
                      f"{cost[rs]:.1f} us; sandboxctl/runsc = {sb / rs_read:.2f} (vs read), "
                      f"{sb / cost[rs]:.2f} (vs uname); target < 1")
        return 0


if __name__ == "__main__":
    sys.exit(main())
