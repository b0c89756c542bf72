"""Run records: one directory per sandbox run under the user's state directory.

    $XDG_STATE_HOME/sandboxctl/runs/<run-id>/   (default ~/.local/state/sandboxctl/runs/;
                                                 SANDBOXCTL_STATE_DIR replaces .../sandboxctl)
        plan.json      the Plan that ran
        events.jsonl   one JSON object per line, written by the Sentry
        status.json    command, profile, start/end, exit status, killed_by
        sentry.log     with --debug

Run ids sort by time: 20261122-063012-3f9a.

The writing side (new_run, RunRecord, EventWriter: `apply`'s start-up path) works on
path strings; pathlib (~3 ms to import) is imported only by the reading side and by
RunRecord.dir.
"""

from __future__ import annotations

import os
import time

from ..engine.errors import SandboxctlError
from ..engine.plan import Plan

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any, Iterator, TextIO
    from pathlib import Path

EVENTS = "events.jsonl"
STATUS = "status.json"
PLAN = "plan.json"
SENTRY_LOG = "sentry.log"


def _state_path() -> str:
    override = os.environ.get("SANDBOXCTL_STATE_DIR")
    if override:
        return override
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "sandboxctl")


def state_dir() -> Path:
    """The sandboxctl state directory (holds runs/)."""
    from pathlib import Path

    return Path(_state_path())


def runs_dir() -> Path:
    from pathlib import Path

    return Path(_state_path(), "runs")


def _new_id(bump: int = 0) -> str:
    """UTC seconds, then the fraction of the second in 16 bits (hex), so ids sort by
    start time even within one second; `bump` steps past a taken id."""
    now = time.time()
    frac = (int((now % 1) * 0x10000) + bump) & 0xFFFF
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{frac:04x}"


class RunRecord:
    """A run's directory. The supervisor creates it (new_run) and finishes it; the Sentry
    appends events through an EventWriter opened on `events_path`."""

    def __init__(self, id: str, dir: str | os.PathLike[str], status: dict[str, Any] | None = None,
                 _events: "EventWriter | None" = None) -> None:
        self.id = id
        self.path = os.fspath(dir)  # the run's directory
        self.status: dict[str, Any] = status if status is not None else {}
        self._events = _events

    def __repr__(self) -> str:
        return f"RunRecord(id={self.id!r}, dir={self.path!r})"

    @property
    def dir(self) -> Path:
        from pathlib import Path

        return Path(self.path)

    def file(self, name: str) -> str:
        """The path of one file of the run (EVENTS, STATUS, ...)."""
        return os.path.join(self.path, name)

    @property
    def events_path(self) -> str:
        return self.file(EVENTS)

    @property
    def log_path(self) -> str:
        return self.file(SENTRY_LOG)

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
            killed_by = last_kill_event(self.path)
        self.status.update({"ended": time.time(), "exit_code": exit_code, "signal": signal,
                            "killed_by": killed_by})
        _write_json(self.file(STATUS), self.status)
        return self.status


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_json(path: str, data: Any) -> None:
    import json  # (not at the top: this module is imported before the keeper's fork)

    tmp = os.path.splitext(path)[0] + ".tmp"
    _write_text(tmp, json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def new_run(plan: Plan, command: list[str] | tuple[str, ...]) -> RunRecord:
    """Create the run directory with plan.json and a first status.json."""
    root = os.path.join(_state_path(), "runs")
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        for attempt in range(20):
            rid = _new_id(attempt)
            d = os.path.join(root, rid)
            try:
                os.mkdir(d, mode=0o700)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 20 collisions of 16 random bits in one second
            raise SandboxctlError(f"cannot allocate a run id in {root}")
    except PermissionError as exc:
        raise SandboxctlError(f"cannot create the run directory {root}: {exc.strerror}",
                              hint="set SANDBOXCTL_STATE_DIR to a writable directory") from exc
    _write_text(os.path.join(d, PLAN), plan.to_json(indent=None))  # compact: C encoder
    _write_text(os.path.join(d, EVENTS), "")
    rec = RunRecord(rid, d)
    rec.status = {"run": rid, "command": list(command), "profile": plan.profile_file,
                  "profile_name": plan.profile_name, "started": time.time(), "ended": None,
                  "exit_code": None, "signal": None, "killed_by": None,
                  "platform": plan.launch.platform}
    _write_json(rec.file(STATUS), rec.status)
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


def read_status(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    import json

    try:
        with open(os.path.join(run_dir, STATUS), encoding="utf-8") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        return {"run": os.path.basename(run_dir)}


def read_events(run_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    import json

    try:
        fh = open(os.path.join(run_dir, EVENTS), encoding="utf-8")
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


def last_kill_event(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    last = None
    for ev in read_events(run_dir):
        if ev.get("action") == "kill":
            last = ev
    return last


# -- the Sentry's writer ------------------------------------------------------------------


class EventWriter:
    """Appends events as JSON lines. Buffered in the Sentry (flushed by the loop every
    so often and at exit); the caller serialises access."""

    def __init__(self, path: str | os.PathLike[str], buffered: bool = True) -> None:
        import json

        self._fh: TextIO = open(path, "a", encoding="utf-8", buffering=(1 << 16) if buffered else 1)
        self._dumps = json.dumps
        self.count = 0

    def fileno(self) -> int:
        return self._fh.fileno()

    def write(self, ev: dict[str, Any]) -> None:
        if "time" not in ev:
            ev["time"] = time.time()
        self._fh.write(self._dumps(ev, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


__all__ = ["RunRecord", "new_run", "state_dir", "runs_dir", "list_runs", "find_run",
           "read_status", "read_events", "last_kill_event", "EventWriter"]
