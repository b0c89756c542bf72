"""Resource limits through cgroups, on cgroup v1 controllers, cgroup v2, or both (hybrid).

The supervisor creates one directory per controller it can use, below its own cgroup,
named `sandboxctl-<supervisor pid>-<n>`, and opens their cgroup.procs files; the keeper
moves the sandbox's init into them through those descriptors while init builds the
root; init waits for that before it unshares its cgroup namespace and starts the
program. A limit that cannot be applied is one warning line, never a
silent no-op. Directories are removed after the run; ones left by a supervisor that was
killed are swept at the next start.
"""

from __future__ import annotations

import errno
import os
import time

from ...engine.plan import Resources
from ...engine.record import record
from .kernel import mount_table

CGROUP_ROOT = "/sys/fs/cgroup"
PREFIX = "sandboxctl-"
CFS_PERIOD_US = 100_000


@record
class Hierarchy:
    """One mounted cgroup hierarchy (v1 controller or v2) and where the run's group goes."""

    version: int  # 1 or 2
    mount: str  # /sys/fs/cgroup/memory, /sys/fs/cgroup/unified, /sys/fs/cgroup
    path: str  # this process's cgroup in that hierarchy ("/process_api/...")
    controllers: frozenset[str]


class CgroupSet:
    """The directories made for one sandbox; `procs_files` are what the child writes to."""

    def __init__(self, dirs: list[str] | None = None, procs_files: list[str] | None = None,
                 warnings: list[str] | None = None) -> None:
        self.dirs: list[str] = dirs if dirs is not None else []
        self.procs_files: list[str] = procs_files if procs_files is not None else []
        self.warnings: list[str] = warnings if warnings is not None else []

    def cleanup(self) -> None:
        for d in reversed(self.dirs):
            rmdir_retry(d)
        self.dirs.clear()


def rmdir_retry(path: str, dir_fd: int | None = None, timeout: float = 2.0) -> None:
    """rmdir, waiting (up to `timeout` s) while the kernel still counts exiting tasks."""
    for _ in range(max(1, int(timeout / 0.01))):
        try:
            os.rmdir(path, dir_fd=dir_fd)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
            time.sleep(0.01)


def hierarchies() -> list[Hierarchy]:
    """The cgroup hierarchies this process is in, with the controllers each offers."""
    mounts: dict[str, tuple[int, str, frozenset[str]]] = {}
    table = mount_table()
    if not table:
        return []
    for point, fstype, options in table:
        if fstype == "cgroup2":
            ctrls = frozenset()
            try:
                with open(os.path.join(point, "cgroup.controllers")) as c:
                    ctrls = frozenset(c.read().split())
            except OSError:
                pass
            mounts["2"] = (2, point, ctrls)
        elif fstype == "cgroup":
            opts = set(options.split(","))
            ctrls = frozenset(o for o in opts if o in ("memory", "pids", "cpu"))
            for c in ctrls:
                mounts.setdefault(c, (1, point, frozenset({c})))
    mine: dict[str, str] = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls == "":
                mine["2"] = path
            for c in ctrls.split(","):
                mine[c] = path
    out = []
    for key, (version, point, ctrls) in mounts.items():
        if key in mine:
            out.append(Hierarchy(version, point, mine[key], ctrls))
    return out


def _write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _sweep(parent: str) -> None:
    """Remove empty directories left by supervisors that no longer exist."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            pid = int(name[len(PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not os.path.exists(f"/proc/{pid}"):
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


def _v1_limits(ctrl: str, res: Resources) -> list[tuple[str, str]]:
    if ctrl == "memory" and res.memory:
        return [("memory.limit_in_bytes", str(res.memory))]
    if ctrl == "pids" and res.pids:
        return [("pids.max", str(res.pids))]
    if ctrl == "cpu" and res.cpu:
        return [("cpu.cfs_period_us", str(CFS_PERIOD_US)),
                ("cpu.cfs_quota_us", str(int(res.cpu * CFS_PERIOD_US)))]
    return []


def _v2_limits(ctrl: str, res: Resources) -> list[tuple[str, str]]:
    if ctrl == "memory" and res.memory:
        return [("memory.max", str(res.memory)), ("memory.swap.max", "0")]
    if ctrl == "pids" and res.pids:
        return [("pids.max", str(res.pids))]
    if ctrl == "cpu" and res.cpu:
        return [("cpu.max", f"{int(res.cpu * CFS_PERIOD_US)} {CFS_PERIOD_US}")]
    return []


def create(res: Resources, tag: str) -> CgroupSet:
    """Make the cgroups for one sandbox and set its limits. Never raises: what cannot be
    done is reported in `warnings`."""
    out = CgroupSet()
    wanted = [c for c, v in (("memory", res.memory), ("pids", res.pids), ("cpu", res.cpu)) if v]
    if not wanted:
        return out
    hs = hierarchies()
    name = f"{PREFIX}{os.getpid()}-{tag}"
    done: set[str] = set()
    v1 = {next(iter(h.controllers)): h for h in hs if h.version == 1}
    v2 = next((h for h in hs if h.version == 2), None)
    problems: list[str] = []
    for ctrl in wanted:
        h = v1.get(ctrl)
        if h is None and v2 is not None and ctrl in v2.controllers:
            h = v2
        if h is None:
            problems.append(f"{ctrl} (no cgroup controller for it on this host)")
            continue
        parent = os.path.join(h.mount, h.path.lstrip("/"))
        d = os.path.join(parent, name)
        try:
            if d not in out.dirs:
                _sweep(parent)
                os.mkdir(d)
                out.dirs.append(d)
                out.procs_files.append(os.path.join(d, "cgroup.procs"))
            limits = _v1_limits(ctrl, res) if h.version == 1 else _v2_limits(ctrl, res)
            for fname, value in limits:
                try:
                    _write(os.path.join(d, fname), value)
                except FileNotFoundError:
                    if fname != "memory.swap.max":
                        raise
            done.add(ctrl)
        except OSError as exc:
            problems.append(f"{ctrl} ({exc.strerror or exc} at {d})")
    if problems:
        out.warnings.append(
            "sandboxctl: warning: resource limits not applied: " + "; ".join(problems)
            + (" — run as root or delegate a cgroup to this user" if os.geteuid() != 0 else ""))
    return out
