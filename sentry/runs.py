"""Run records: one directory per sandbox run under the user's state directory.

    $XDG_STATE_HOME/sandboxctl/runs/<run-id>/   (default ~/.local/state/sandboxctl/runs/;
                                                 SANDBOXCTL_STATE_DIR replaces .../sandboxctl)
        plan.json      the Plan that ran
        events.jsonl   one JSON object per line, written by the Sentry
        status.json    command, profile, start/end, exit status, killed_by
        sentry.log     with --debug

Run ids sort by time: 20261122-063012-3f9a.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, TextIO

from ..engine.errors import SandboxctlError
from ..engine.plan import Plan

EVENTS = "events.jsonl"
STATUS = "status.json"
PLAN = "plan.json"
SENTRY_LOG = "sentry.log"


def state_dir() -> Path:
    """The sandboxctl state directory (holds runs/)."""
    override = os.environ.get("SANDBOXCTL_STATE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "sandboxctl"


def runs_dir() -> Path:
    return state_dir() / "runs"


def _new_id(bump: int = 0) -> str:
    """UTC seconds, then the fraction of the second in 16 bits (hex), so ids sort by
    start time even within one second; `bump` steps past a taken id."""
    now = time.time()
    frac = (int((now % 1) * 0x10000) + bump) & 0xFFFF
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{frac:04x}"


class RunRecord:
    """A run's directory. The supervisor creates it (new_run) and finishes it; the Sentry
    appends events through an EventWriter opened on `events_path`."""

    def __init__(self, id: str, dir: Path, status: dict[str, Any] | None = None,
                 _events: "EventWriter | None" = None) -> None:
        self.id = id
        self.dir = dir
        self.status: dict[str, Any] = status if status is not None else {}
        self._events = _events

    def __repr__(self) -> str:
        return f"RunRecord(id={self.id!r}, dir={str(self.dir)!r})"

    @property
    def events_path(self) -> Path:
        return self.dir / EVENTS

    @property
    def log_path(self) -> Path:
        return self.dir / SENTRY_LOG

    def event(self, ev: dict[str, Any]) -> None:
        """Append one event (from the supervisor's side; the Sentry uses its own writer)."""
        if self._events is None:
            self._events = EventWriter(self.events_path, buffered=False)
        self._events.write(ev)

    def finish(self, exit_code: int | None, signal: int | None = None,
               killed_by: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write status.json. With no `killed_by` given, the last `kill` event the Sentry
        recorded (if any: a process of the run was killed by a kill rule, the program
        itself or one of its children) is used, so the run says which call did it.
        Call it after the Sentry has exited (it flushes the events then)."""
        if self._events is not None:
            self._events.close()
            self._events = None
        if killed_by is None:
            killed_by = last_kill_event(self.dir)
        self.status.update({"ended": time.time(), "exit_code": exit_code, "signal": signal,
                            "killed_by": killed_by})
        _write_json(self.dir / STATUS, self.status)
        return self.status


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def new_run(plan: Plan, command: list[str] | tuple[str, ...]) -> RunRecord:
    """Create the run directory with plan.json and a first status.json."""
    root = runs_dir()
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for attempt in range(20):
            rid = _new_id(attempt)
            d = root / rid
            try:
                d.mkdir(mode=0o700)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 20 collisions of 16 random bits in one second
            raise SandboxctlError(f"cannot allocate a run id in {root}")
    except PermissionError as exc:
        raise SandboxctlError(f"cannot create the run directory {root}: {exc.strerror}",
                              hint="set SANDBOXCTL_STATE_DIR to a writable directory") from exc
    (d / PLAN).write_text(plan.to_json(indent=None))  # compact: json's C encoder, ~1 ms
    (d / EVENTS).touch()
    rec = RunRecord(rid, d)
    rec.status = {"run": rid, "command": list(command), "profile": plan.profile_file,
                  "profile_name": plan.profile_name, "started": time.time(), "ended": None,
                  "exit_code": None, "signal": None, "killed_by": None,
                  "platform": plan.launch.platform}
    _write_json(d / STATUS, rec.status)
    return rec


# -- reading runs back (ps, logs, explain) ---------------------------------------------


def list_runs() -> list[Path]:
    """Run directories, oldest first."""
    root = runs_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / STATUS).exists())


def find_run(ref: str | None) -> Path:
    """A run by id, unique id prefix, or the latest run when `ref` is None/"latest"."""
    runs = list_runs()
    if not runs:
        raise SandboxctlError(f"no runs recorded in {runs_dir()}",
                              hint="run a command with `sandboxctl apply` first")
    if ref in (None, "", "latest"):
        return runs[-1]
    exact = [p for p in runs if p.name == ref]
    if exact:
        return exact[0]
    matches = [p for p in runs if p.name.startswith(ref) or p.name.endswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SandboxctlError(f"no run {ref!r} in {runs_dir()}",
                              hint="`sandboxctl ps` lists the runs")
    raise SandboxctlError(f"run {ref!r} is ambiguous ({len(matches)} runs match)",
                          hint="give more of the run id")


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / STATUS).read_text())
    except (OSError, ValueError):
        return {"run": run_dir.name}


def read_events(run_dir: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = open(run_dir / EVENTS, encoding="utf-8")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue  # a line cut by a crash


def last_kill_event(run_dir: Path) -> dict[str, Any] | None:
    last = None
    for ev in read_events(run_dir):
        if ev.get("action") == "kill":
            last = ev
    return last


# -- the Sentry's writer ------------------------------------------------------------------


class EventWriter:
    """Appends events as JSON lines. Buffered in the Sentry (flushed by the loop every
    so often and at exit); the caller serialises access."""

    def __init__(self, path: Path | str, buffered: bool = True) -> None:
        self._fh: TextIO = open(path, "a", encoding="utf-8", buffering=(1 << 16) if buffered else 1)
        self.count = 0

    def fileno(self) -> int:
        return self._fh.fileno()

    def write(self, ev: dict[str, Any]) -> None:
        if "time" not in ev:
            ev["time"] = time.time()
        self._fh.write(json.dumps(ev, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


__all__ = ["RunRecord", "new_run", "state_dir", "runs_dir", "list_runs", "find_run",
           "read_status", "read_events", "last_kill_event", "EventWriter"]
