"""The ptrace platform's trap path: cost per trapped call in microseconds, on several
CPUs (the tracer spins) and on one CPU (it blocks and the stop hands it the CPU), and
the docs/platforms.md one-CPU example."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from _helpers_ptrace import make_plan, run_traced

N = 3000
# The program times its own loop of os.uname() (trapped: emulated by the Sentry) and
# prints microseconds per call and the nodename it saw.
LOOP = (f"import os, time\nt = time.perf_counter()\nfor _ in range({N}): u = os.uname()\n"
        f"print((time.perf_counter() - t) / {N} * 1e6, u.nodename, u.release)")


def _traced_uname_loop(cpus: set[int] | None, capfd) -> tuple[float, object]:
    saved = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)  # the tracer (this process) and the program
    try:
        result, tracer = run_traced([sys.executable, "-S", "-c", LOOP],
                                    make_plan(emulate={"uname": "uname"}))
    finally:
        os.sched_setaffinity(0, saved)
    out = capfd.readouterr().out.split()
    assert result.exit_code == 0, result
    assert out[1:] == ["sandbox", "4.4.0"]  # served by the Sentry, not the host
    assert result.calls >= N
    return float(out[0]), tracer


def test_trapped_call_costs_microseconds_on_several_cpus(capfd):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    us, tracer = _traced_uname_loop(None, capfd)
    assert tracer._spin > 0  # the program may run on another CPU: spin before sleeping
    # ~15-25 us here; a wait that polls with sleeps (python-ptrace's) costs milliseconds
    assert us < 200, f"{us:.1f} us per trapped call"


def test_trapped_call_on_one_cpu_blocks_instead_of_spinning(capfd):
    cpu = max(os.sched_getaffinity(0))
    us, tracer = _traced_uname_loop({cpu}, capfd)
    assert tracer._spin == 0  # spinning would only keep the program off its CPU
    assert us < 200, f"{us:.1f} us per trapped call"


def test_doc_example_one_cpu_apply():
    """docs/platforms.md: `taskset -c N sandboxctl apply --platform ptrace ...`."""
    if shutil.which("taskset") is None:
        pytest.skip("taskset (util-linux) is missing")
    cpu = str(max(os.sched_getaffinity(0)))
    r = subprocess.run(["taskset", "-c", cpu, "sandboxctl", "apply", "--platform", "ptrace",
                        "default", "--", "sh", "-c",
                        "grep Cpus_allowed_list /proc/self/status; uname -n"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Cpus_allowed_list:", cpu, "sandbox"]
