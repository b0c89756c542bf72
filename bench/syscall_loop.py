#!/usr/bin/env python3
"""Cost of system calls under sandboxctl, against native and gVisor (runsc, ptrace platform).

Two loops in one small C program (compiled with gcc into a temporary directory); the
program times its own loop, so start-up is not counted:
  read    N one-byte read(2) calls from /dev/zero: an allowed call, which under
          sandboxctl never leaves the kernel (target: within 1.1x of native); timed
          in the thread's CPU time, so other load on the machine does not blur it
  uname   M uname(2) calls: a trapped call, served by the Sentry (one user-notification
          round trip plus Python): the price of one trapped call, in microseconds

and, natively, the read loop under the cheapest seccomp filter there is (one instruction,
allow): the floor any seccomp-based sandbox pays for an allowed call on this kernel.

    bench/syscall_loop.py                       # 1,000,000 reads, 20,000 unames
    bench/syscall_loop.py --count 100000 --no-runsc
    bench/syscall_loop.py --apply               # through `sandboxctl apply` (namespaces too)

sandboxctl runs the program under the Sentry with a Plan compiled from the profile below
(`--apply` goes through the full launcher instead, when that command exists).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from benchlib import build_c, have_gcc, scratch  # bench/ is first on sys.path

LOOP_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long n = atol(argv[2]); char c; struct utsname u;
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) return 4;
    if (!strcmp(argv[1], "read-floor")) {
        /* the cheapest seccomp filter there is (one instruction: allow): what having any
           filter at all costs a call on this kernel */
        struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
        struct sock_fprog prog = { 1, f };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) return 5;
    }
    /* read: the thread's CPU time (user + kernel), which other load on the machine does
       not inflate; uname: wall time, since the caller sleeps while the Sentry works */
    int read_mode = !strncmp(argv[1], "read", 4);
    clockid_t clk = read_mode ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    struct timespec a, b; clock_gettime(clk, &a);
    if (read_mode) { for (long i = 0; i < n; i++) if (read(fd, &c, 1) != 1) return 2; }
    else { for (long i = 0; i < n; i++) if (uname(&u)) return 3; }
    clock_gettime(clk, &b);
    printf("LOOP %ld\n", (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec));
    return 0;
}
"""

PROFILE = """\
apiVersion: sandboxctl/v1
kind: SandboxProfile
metadata: {name: bench-syscall-loop, description: read allowed in the kernel; uname served by the Sentry}
uname: {release: 4.4.0-bench}
syscalls:
  default: {action: allow}
  deny: [ptrace, mount, unshare]
filesystem:
  mediation: direct
  root: {source: /, readonly: true, overlay: none}
network: {mode: none}
"""


def _parse(out: str) -> int:
    for line in out.splitlines():
        if line.startswith("LOOP "):
            return int(line.split()[1])
    raise RuntimeError(f"the loop printed no timing: {out!r}")


def run_native(exe: str, mode: str, n: int) -> int:
    return _parse(subprocess.run([exe, mode, str(n)], check=True, capture_output=True, text=True).stdout)


def run_runsc(exe: str, mode: str, n: int) -> int:
    cmd = ["runsc", "--platform=ptrace", "--network=none", "do", exe, mode, str(n)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"runsc failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    return _parse(p.stdout)


def run_direct(plan, exe: str, mode: str, n: int, tmp: str) -> int:
    from sandboxctl.sentry.direct import run_direct as rd

    out = os.path.join(tmp, f"out-{mode}.txt")
    with open(out, "wb") as fh:
        res = rd(plan, [exe, mode, str(n)], {"PATH": "/usr/bin:/bin"}, stdout=fh.fileno())
    if res.exit_code != 0:
        raise RuntimeError(f"sandboxed loop failed: {res}")
    with open(out) as fh:
        return _parse(fh.read())


def run_apply(profile: str, exe: str, mode: str, n: int, platform: str = "seccomp-notify") -> int:
    p = subprocess.run(["sandboxctl", "apply", "--platform", platform, profile, "--", exe, mode,
                        str(n)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"sandboxctl apply failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    return _parse(p.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000, help="read(2) calls (default 1,000,000)")
    ap.add_argument("--uname-count", type=int, default=20_000, help="uname(2) calls (default 20,000)")
    ap.add_argument("--runsc-count", type=int, default=None,
                    help="read(2) calls under runsc (default: --count; ~30 us each)")
    ap.add_argument("--repeat", type=int, default=5, help="best of N for native and sandboxctl")
    ap.add_argument("--no-runsc", action="store_true", help="skip gVisor")
    ap.add_argument("--apply", action="store_true", help="run through `sandboxctl apply`")
    args = ap.parse_args(argv)
    if not have_gcc():
        return 1
    use_runsc = not args.no_runsc and shutil.which("runsc") is not None and os.geteuid() == 0
    with scratch() as tmp:
        exe = build_c(LOOP_C, tmp, "loop")
        profile = os.path.join(tmp, "bench.yaml")
        with open(profile, "w") as fh:
            fh.write(PROFILE)
        if args.apply:
            def sbx(mode: str, n: int) -> int:
                return run_apply(profile, exe, mode, n)

            def sbx_pt(mode: str, n: int) -> int:
                return run_apply(profile, exe, mode, n, "ptrace")
            how, how_pt = "sandboxctl apply", "sandboxctl apply ptrace"
        else:
            from sandboxctl.engine.compile import compile_profile

            plan = compile_profile(profile)
            plan_pt = plan._replace(launch=plan.launch._replace(platform="ptrace"))

            def sbx(mode: str, n: int) -> int:
                return run_direct(plan, exe, mode, n, tmp)

            def sbx_pt(mode: str, n: int) -> int:
                return run_direct(plan_pt, exe, mode, n, tmp)
            how, how_pt = "sandboxctl (Sentry)", "sandboxctl ptrace"
        n, m = args.count, args.uname_count
        # Interleaved, best of N: the machine's noise hits both sides alike.
        nat_read = sbx_read = nat_un = sbx_un = pt_read = pt_un = floor_read = 1 << 62
        for _ in range(args.repeat):
            nat_read = min(nat_read, run_native(exe, "read", n))
            floor_read = min(floor_read, run_native(exe, "read-floor", n))
            sbx_read = min(sbx_read, sbx("read", n))
            pt_read = min(pt_read, sbx_pt("read", n))
            nat_un = min(nat_un, run_native(exe, "uname", m))
            sbx_un = min(sbx_un, sbx("uname", m))
            pt_un = min(pt_un, sbx_pt("uname", m))
        rows = [("native", nat_read / n, nat_un / m)]
        rows.append((how, sbx_read / n, sbx_un / m))
        if use_runsc:
            rn = args.runsc_count or n
            rs_read = run_runsc(exe, "read", rn)
            rs_un = run_runsc(exe, "uname", min(m, 5000))
            rows.append(("runsc ptrace", rs_read / rn, rs_un / min(m, 5000)))
        rows.append((how_pt, pt_read / n, pt_un / m))
        floor = floor_read / n
        print(f"{n:,} x read(2) of 1 byte from /dev/zero (allowed; CPU time); "
              f"{m:,} x uname(2) (trapped; wall time)")
        print(f"{'':24} {'read ns/call':>13} {'vs native':>10} {'uname us/call':>14} {'vs native':>10}")
        for name, r, u in rows:
            print(f"{name:24} {r:13.1f} {r / rows[0][1]:9.2f}x {u / 1000:14.2f} {u / rows[0][2]:9.1f}x")
        print(f"{'seccomp floor (allow-all)':24} {floor:13.1f} {floor / rows[0][1]:9.2f}x")
        sb = rows[1]
        pt = rows[-1]
        print(f"\nallowed-call ratio sandboxctl/native: {sb[1] / rows[0][1]:.3f} (target <= 1.1); "
              f"against the seccomp floor: {sb[1] / floor:.3f}")
        print(f"seccomp floor/native: {floor / rows[0][1]:.3f} (one allow-all instruction: what "
              f"any seccomp filter costs an allowed call here)")
        print(f"allowed-call ratio sandboxctl ptrace/native: {pt[1] / rows[0][1]:.3f} "
              f"(target <= 1.2)")
        if use_runsc:
            rs = rows[2]
            print(f"allowed-call ratio runsc/native:      {rs[1] / rows[0][1]:.1f}")
            print(f"trapped call: sandboxctl {sb[2] / 1000:.1f} us, ptrace {pt[2] / 1000:.1f} us, "
                  f"runsc {rs[2] / 1000:.1f} us (sandboxctl ptrace / runsc ptrace: "
                  f"{pt[2] / rs[2]:.2f}x)")
        else:
            print(f"trapped call: sandboxctl {sb[2] / 1000:.1f} us, ptrace {pt[2] / 1000:.1f} us "
                  f"per uname(2)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
