"""`sandboxctl apply` start-up work (docs/apply.md, "Start-up time"): the fast exit keeps
output and exit status, the collector is back on for the Sentry and the Gofer, nothing
is left on the host, and the documented measuring commands run."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _apply(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sandboxctl", "apply", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=60)


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp_path / "state"),
                SANDBOXCTL_CACHE_DIR=str(tmp_path / "cache"))


def _orphan_cgroups() -> set[str]:
    """sandboxctl-<supervisor pid>-<tag> cgroups whose supervisor is gone (other runs on
    this machine may be alive and have theirs)."""
    out = set()
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            parts = d.split("-")
            if d.startswith("sandboxctl-") and len(parts) == 3 and parts[1].isdigit() \
                    and not os.path.exists(f"/proc/{parts[1]}"):
                out.add(os.path.join(root, d))
        if root.count("/") > 6:
            dirs.clear()
    return out


def test_fast_exit_keeps_output_status_and_leaves_nothing(tmp_path: Path) -> None:
    env = _env(tmp_path)
    before = _orphan_cgroups()
    r = _apply("default", "--", "sh", "-c", "echo out; echo err >&2; exit 3", env=env)
    assert (r.returncode, r.stdout) == (3, "out\n"), r.stderr
    assert "err\n" in r.stderr
    # the same again from the Plan cache (the path the start-up work is about)
    r = _apply("default", "--", "sh", "-c", "kill -TERM $$", env=env)
    assert r.returncode == 128 + 15, r.stderr
    assert _orphan_cgroups() <= before  # the run's cgroups are removed before the fast exit
    runs = list((tmp_path / "state").rglob("status.json"))
    assert len(runs) == 2 and all('"exit_code"' in p.read_text() for p in runs)


def test_set_up_errors_still_reach_the_user(tmp_path: Path) -> None:
    r = _apply("default", "--", "/no/such/program", env=_env(tmp_path))
    assert r.returncode != 0
    assert "/no/such/program" in r.stderr


def test_collector_is_on_again_after_a_start_with_it_off(tmp_path: Path) -> None:
    """The CLI turns the collector off for start-up; the launcher must turn it back on
    (and freeze the start-up objects) before it forks the Sentry and the Gofer."""
    from sandboxctl.cli.cmd_apply import load_plan
    from sandboxctl.sentry.launch.launcher import run

    os.environ["SANDBOXCTL_STATE_DIR"] = str(tmp_path / "state")
    plan = load_plan("default", use_cache=False)
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        out = run(plan, ["true"], use_pty=False)
        assert out.exit_code == 0
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.enable()
        os.environ.pop("SANDBOXCTL_STATE_DIR", None)


def test_documented_phase_timeline_runs() -> None:
    # docs/apply.md: python bench/phases.py -n 1
    r = subprocess.run([PY, str(REPO / "bench" / "phases.py"), "-n", "1"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split(None, 1) for line in r.stdout.splitlines()[2:]]
    steps = {name: float(ms) for ms, name in rows}
    for name in ("interpreter ready", "_keeper start", "_warm_imports end", "start_sentry end",
                 "confine end", "Dispatcher.dispatch start", "run end"):
        assert name in steps, r.stdout
    assert steps["_keeper start"] < steps["start_sentry end"] < steps["run end"]
    assert steps["confine end"] < steps["Dispatcher.dispatch start"]  # confined before serving


def test_documented_startup_benchmark_runs() -> None:
    # docs/apply.md: python bench/startup.py -n 15 (here one run each)
    r = subprocess.run([PY, str(REPO / "bench" / "startup.py"), "-n", "1"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for row in ("native", "sandboxctl (profile)", "sandboxctl (plan.json)",
                "sandboxctl (no editable finder)", "sandboxctl ptrace", "CPython floor (no layers)"):
        line = next((l for l in r.stdout.splitlines() if l.startswith(row + " ")), None)
        assert line is not None, r.stdout
        assert float(line[len(row):].split()[0]) > 0


def test_the_floor_launcher_is_a_real_launch() -> None:
    """bench/floor_launch.py, the table's scale row, really does what it is priced for:
    the program is pid 1 of a new pid namespace, in a read-only root, with its own /proc."""
    script = ("echo pid=$$; touch /floor-probe 2>/dev/null && echo writable || echo read-only; "
              "ls /proc | grep -c '^[0-9]'")
    r = subprocess.run([PY, "-S", "-E", str(REPO / "bench" / "floor_launch.py"), "sh", "-c", script],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["pid=1", "read-only", "3"], r.stdout  # sh, ls, grep only
    assert not Path("/floor-probe").exists()
