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
    for name in ("interpreter ready", "_keeper start", "_warm_imports end", "fork_sentry_early end",
                 "EarlySentry.hand_over end", "confine end", "Dispatcher.dispatch start", "run end"):
        assert name in steps, r.stdout
    assert steps["_keeper start"] < steps["EarlySentry.hand_over end"] < steps["run end"]
    # the Sentry is forked and confined before it is handed the listener, and serves after
    assert steps["fork_sentry_early end"] < steps["_recv_report end"] <= steps["EarlySentry.hand_over start"]
    assert steps["confine end"] < steps["Dispatcher.dispatch start"]  # confined before serving


def test_documented_startup_benchmark_runs() -> None:
    # docs/apply.md: python bench/startup.py -n 15 (here one run each)
    r = subprocess.run([PY, str(REPO / "bench" / "startup.py"), "-n", "1"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for row in ("native", "sandboxctl (profile)", "sandboxctl (plan.json)",
                "sandboxctl (pip console script)", "sandboxctl ptrace", "CPython floor (no layers)"):
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


def test_entry_script_starts_without_site_and_runs_apply(tmp_path: Path) -> None:
    """cli/entry.py writes the `sandboxctl` command .ci/setup installs: `python -S`, the
    environment's site-packages and the package folder on sys.path, the same main()."""
    from sandboxctl.cli.entry import install

    script = tmp_path / "sandboxctl"
    install(str(script))
    text = script.read_text()
    assert text.splitlines()[0] == f"#!{sys.executable} -S"
    assert os.access(script, os.X_OK)
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "sandboxctl 0.1.0", r.stderr
    r = subprocess.run([str(script), "apply", "default", "--", "sh", "-c", "echo in; exit 7"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=_env(tmp_path), timeout=60)
    assert (r.returncode, r.stdout) == (7, "in\n"), r.stderr
    # the installed command is this script (so the README's commands use it)
    installed = Path("/usr/local/bin/sandboxctl")
    if installed.exists():
        assert installed.read_text().splitlines()[0].endswith(" -S")


# Modules `apply` does without on its start-up path (each costs 1-10 ms to import; the
# commands that need them import them inside their own code).
_NOT_ON_APPLY_PATH = ("site", "argparse", "gettext", "locale", "dataclasses", "inspect",
                      "pathlib", "shutil", "subprocess", "ctypes.util", "hashlib", "tempfile",
                      "pkgutil", "importlib.util", "traceback", "textwrap", "urllib.parse",
                      "ruamel.yaml", "jsonschema", "rich", "ptrace")


def test_apply_start_up_path_imports_nothing_heavy(tmp_path: Path) -> None:
    """Runs, in the interpreter the installed command starts (python -S, the entry
    script's sys.path), what `sandboxctl apply default -- true` runs before the sandbox
    exists and while it sets itself up: the fast argument parser, the Plan from the
    cache (with the program's filter as BPF), init's imports (which then need neither
    pyseccomp nor the filter code), the launcher, the run record and the supervisor's
    warm imports (Sentry, Gofer, syscall table). None of the heavy modules may be
    imported."""
    from sandboxctl.cli.entry import script_text

    probe = script_text().replace("from sandboxctl.cli.main import main\nsys.exit(main())\n", """
from sandboxctl.cli import main as M
mod = M._load("apply")
args = mod.parse_fast(["default", "--", "true"])
assert args is not None
plan = mod.load_plan(args.profile)  # from the Plan cache
from sandboxctl.sentry.launch import launcher as L
from sandboxctl.sentry.runs import new_run
plan2, bpf = mod.load_plan_and_filter(args.profile)
assert plan2 == plan and bpf and len(bpf) % 8 == 0
L._import_child_side(plan, True)  # init's imports, with the filter ready as BPF
assert "pyseccomp" not in sys.modules and "sandboxctl.engine.filter" not in sys.modules
new_run(plan, ["true"])
assert L._module_exists("sandboxctl.gofer.process")
L._warm_imports(plan)
# the Sentry's and the Gofer's own filters, as the launcher gets them before their forks
from sandboxctl.sentry.confine import sentry_filter_bpf
from sandboxctl.sentry.platform_notify import listener_ioctls, notif_sizes
from sandboxctl.gofer.confine import filter_bpf
assert sentry_filter_bpf(listener_ioctls(notif_sizes())) and filter_bpf()
print(" ".join(sorted(sys.modules)))
""")
    assert "parse_fast" in probe
    script = tmp_path / "probe.py"
    script.write_text(probe)
    # a Plan in the cache first (what every apply of an unchanged profile finds)
    warm = subprocess.run([sys.executable, "-c", "from sandboxctl.cli.cmd_apply import load_plan; "
                           "load_plan('default')"], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=60)
    assert warm.returncode == 0, warm.stderr
    for run in ("fills the caches", "finds them"):
        r = subprocess.run([sys.executable, "-S", str(script)], capture_output=True, text=True,
                           env=_env(tmp_path), timeout=60)
        assert r.returncode == 0, r.stderr
        loaded = set(r.stdout.split())
        assert "sandboxctl.sentry.supervisor" in loaded  # it ran
        heavy = {m for m in loaded for bad in _NOT_ON_APPLY_PATH if m == bad or m.startswith(bad + ".")}
        if run == "finds them":  # the filters and the names from the cache: no libseccomp
            heavy |= {m for m in loaded if m in ("pyseccomp", "typing", "sandboxctl.engine.filter")}
        assert not heavy, f"imported on apply's start-up path ({run}): {sorted(heavy)}"


def test_entry_script_refuses_an_interpreter_path_with_a_space(tmp_path: Path) -> None:
    """A #! line cannot carry a path with a space and an argument: one clear sentence,
    and nothing written."""
    import pytest

    from sandboxctl.cli.entry import install

    target = tmp_path / "sandboxctl"
    with pytest.raises(SystemExit) as e:
        install(str(target), python="/opt/my venv/bin/python3")
    assert "has a space" in str(e.value) and "console script" in str(e.value)
    assert not target.exists()


# Imported by nothing `apply` runs before the keeper's fork: that part runs on one CPU,
# and everything it imports delays the whole sandbox (typing: ~2 ms, and the Plan's
# record types made with it ~2 ms more, engine/record.py; json with re ~2 ms, the Plan
# cache reads its entry with the C scanner alone, engine/cache.py).
_NOT_BEFORE_THE_FORK = ("typing", "json", "re", "glob", "socket", "threading", "selectors",
                        "pyseccomp")


def test_nothing_heavy_before_the_keepers_fork(tmp_path: Path) -> None:
    """The installed command's interpreter runs a real `apply default -- true`; at the
    first fork (the keeper's) it writes down what is imported."""
    from sandboxctl.cli.entry import script_text

    out = tmp_path / "modules.txt"
    probe = script_text().replace("from sandboxctl.cli.main import main\n", f"""
import os
_fork = os.fork
def _first_fork():
    with open({str(out)!r}, "w") as fh:
        fh.write(" ".join(sorted(sys.modules)))
    os.fork = _fork
    return _fork()
os.fork = _first_fork
sys.argv = ["sandboxctl", "apply", "--tty", "never", "default", "--", "true"]
from sandboxctl.cli.main import main
""")
    script = tmp_path / "probe.py"
    script.write_text(probe)
    for _ in range(2):  # the second run finds the Plan in the cache, as most do
        r = subprocess.run([sys.executable, "-S", str(script)], capture_output=True, text=True,
                           env=_env(tmp_path), timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
    modules = set(out.read_text().split())
    assert "sandboxctl.sentry.launch.launcher" in modules  # (the probe saw the right fork)
    assert not modules & set(_NOT_BEFORE_THE_FORK), sorted(modules & set(_NOT_BEFORE_THE_FORK))


def test_a_set_up_error_crosses_the_error_pipe_whole() -> None:
    """The keeper, init and the program report a set-up error on a pipe in a format that
    needs no import (after pivot_root nothing can be imported): type, message, hint."""
    from sandboxctl.engine.errors import HostError, SandboxError
    from sandboxctl.sentry.launch import launcher as L

    def through_pipe(exc: BaseException):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            L._fail(w, exc)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 125
        try:
            return L._read_error(r)
        finally:
            os.close(r)

    err = through_pipe(HostError("no user namespaces here", hint="sysctl -w x=1"))
    assert type(err) is HostError and err.message == "no user namespaces here"
    assert err.hint == "sysctl -w x=1"
    err = through_pipe(FileNotFoundError(2, "No such file or directory"))
    assert type(err) is SandboxError and err.hint is None
    assert err.message == "sandbox set-up failed: No such file or directory"
    err = through_pipe(SandboxError("a\0b ünïcode"))
    assert err.message == "a b ünïcode" and err.hint is None
