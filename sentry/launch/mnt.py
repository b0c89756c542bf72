"""The mount namespace: build the sandbox's root from plan.gofer with real kernel mounts.

Runs in the sandbox's init (pid 1 of the new pid namespace, full capabilities in the new
user namespace), in this order, like bubblewrap:

1. make every mount private, so nothing propagates back to the host;
2. mount a staging tmpfs over /tmp (in our namespace only) and pivot_root into it, the
   host's tree now at /oldroot; all host paths below are read through /oldroot;
3. the root: overlayfs over the source with a tmpfs upper ("memory": writes stay in
   memory), a directory upper ("dir"), or a recursive bind ("none", read-only if asked);
4. /dev (tmpfs with bind mounts of the host's null, zero, full, random, urandom, tty; a new
   devpts instance, ptmx, shm), /proc (a new procfs, /proc/sys & friends read-only, kcore
   & friends masked), then the profile's mounts in order (bind, tmpfs, proc, dev);
5. synthetic files (read-only binds of in-memory files), `deny` paths hidden and
   `readonly` paths made read-only, in both mediation modes (with the Gofer this is the
   second layer: it holds even if the Sentry is bypassed, and it is what chdir and execve,
   which the kernel resolves, see). A denied path on an in-memory overlay is removed
   through the overlay (a whiteout in the upper layer: ENOENT, the host copy untouched);
   elsewhere it is covered by an empty mode-0000 tmpfs or file;
6. detach the host tree and pivot_root into the new root. The staging tmpfs, and every
   temporary file in it, disappears with the mount namespace.
"""

from __future__ import annotations

import errno
import os
import stat

from ...engine.errors import SandboxError
from ...engine.plan import GoferConfig, Mount, PathRule, RootConfig, SyntheticFile
from ...engine.record import record
from ...gofer.sys import fstatfs_type
from . import kernel as k

STAGE = "/tmp"  # host directory a private tmpfs is mounted over (in our mount ns only)
NEWROOT = "/newroot"
OLDROOT = "/oldroot"
FILES = "/files"

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
PROC_READONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
PROC_MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                     "/proc/latency_stats")
PROC_MASKED_DIRS = ("/proc/acpi", "/proc/scsi")

_OPTION_ATTRS = {"ro": k.MOUNT_ATTR_RDONLY, "nosuid": k.MOUNT_ATTR_NOSUID,
                 "nodev": k.MOUNT_ATTR_NODEV, "noexec": k.MOUNT_ATTR_NOEXEC}


@record
class RootRequest:
    """What the sandbox init needs to build the root, with host paths already resolved
    (symlinks followed in the host's namespace, before the host tree moves)."""

    gofer: GoferConfig
    sources: tuple[tuple[int, str], ...]  # (index in gofer.mounts, resolved host source)
    root_source: str
    synthetic: tuple[SyntheticFile, ...]
    direct: bool  # direct mediation: hide deny paths and apply readonly rules with mounts
    upper_base: str | None = None  # overlay "dir": host directory of the upper layers


def prepare(gofer: GoferConfig, synthetic: tuple[SyntheticFile, ...]) -> RootRequest:
    """Resolve and check host paths in the supervisor; errors name the profile line."""
    root_source = os.path.realpath(gofer.root.source)
    if not os.path.isdir(root_source):
        raise SandboxError(f"the root source {gofer.root.source} is not a directory",
                           hint="set filesystem.root.source to an existing host directory")
    if gofer.root.overlay == "dir":
        if not gofer.root.upper_dir or not os.path.isdir(gofer.root.upper_dir):
            raise SandboxError("filesystem.root.overlay is 'dir' but upper_dir is not an existing directory",
                               hint="create the directory or use overlay: memory")
    sources = []
    for i, m in enumerate(gofer.mounts):
        if m.type != "bind":
            continue
        where = f" ({m.source_loc.where()})" if m.source_loc else ""
        if not m.source:
            raise SandboxError(f"bind mount on {m.target}{where} has no source",
                               hint="give the mount a source path")
        real = os.path.realpath(m.source)
        if not os.path.exists(real):
            raise SandboxError(f"bind mount source {m.source}{where} does not exist on the host",
                               hint="create it or fix the path in filesystem.mounts")
        sources.append((i, real))
    seen: dict[str, SyntheticFile] = {}
    for f in synthetic:
        seen[f.path] = f
    upper = upper_layers(gofer.root) if gofer.root.overlay == "dir" else None
    return RootRequest(gofer=gofer, sources=tuple(sources), root_source=root_source,
                       synthetic=tuple(seen.values()), direct=gofer.mediation == "direct",
                       upper_base=upper)


# -- helpers -------------------------------------------------------------------------

def _in_root(path: str, root: str = NEWROOT) -> str:
    """`path` (absolute, inside the sandbox) as a path under `root`, following symlinks
    inside the sandbox's tree the way the sandbox will see them (never out of it)."""
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    hops = 0
    while parts:
        comp = parts.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        cur = os.path.join(root, *done, comp)
        if os.path.islink(cur):
            hops += 1
            if hops > 40:
                raise SandboxError(f"too many symlinks resolving {path} in the sandbox root")
            target = os.readlink(cur)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        done.append(comp)
    return os.path.join(root, *done)


def _ensure(target: str, is_dir: bool, can_create: bool, what: str) -> None:
    """Make the mount point `target` (under NEWROOT) without changing the host: directly
    on the root's skeleton or on its overlay; under anything else (a directory bound
    from the host, read-only or not), on a tmpfs layer listing the same names."""
    if os.path.lexists(target):
        return
    anc = os.path.dirname(target)
    while not os.path.isdir(anc):
        anc = os.path.dirname(anc)
    if not (anc + "/").startswith(NEWROOT + "/"):
        raise SandboxError(f"{what}: cannot make the mount point {target[len(NEWROOT):]}",
                           hint="pick a target that exists in the root")
    sealed = None
    if os.stat(anc).st_dev != os.stat(NEWROOT).st_dev and not (can_create and _on_overlay(anc)):
        sealed = _stage_layer(anc)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        with open(target, "a"):
            pass
    if sealed:
        k.mount_setattr(sealed, k.MOUNT_ATTR_RDONLY)


def _on_overlay(path: str) -> bool:
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return fstatfs_type(fd) == OVERLAYFS_SUPER_MAGIC
    finally:
        os.close(fd)


_NO_STAGING = (0x9FA0, 0x62656572, 0x1CD1)  # proc, sysfs, devpts


def _stage_layer(anc: str) -> str | None:
    """Cover the directory `anc` with a tmpfs holding its names (directories and files
    bound back in, symlinks copied). Returns `anc` when it was read-only: the caller
    seals the tmpfs once the mount point is made."""
    fd = os.open(anc, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        kind = fstatfs_type(fd)
    finally:
        os.close(fd)
    if kind in _NO_STAGING:  # their names are live (/proc/self): a copy would lie
        raise SandboxError(f"cannot make a mount point in {anc[len(NEWROOT):]}, "
                           "a proc, sysfs or devpts directory",
                           hint="pick a mount target outside /proc, /sys and /dev/pts")
    readonly = bool(os.statvfs(anc).f_flag & os.ST_RDONLY)
    n = 0
    while os.path.lexists(f"/layer{n}"):
        n += 1
    stage = f"/layer{n}"
    os.mkdir(stage)
    _tmpfs(stage, mode=f"{os.stat(anc).st_mode & 0o7777:o}")
    for name in sorted(os.listdir(anc)):
        s, d = os.path.join(anc, name), os.path.join(stage, name)
        if os.path.islink(s):
            os.symlink(os.readlink(s), d)
        elif os.path.isdir(s):
            os.mkdir(d)
            _bind(s, d)
        elif os.path.exists(s):
            with open(d, "w"):
                pass
            _bind(s, d, recursive=False)
        else:
            continue
        if readonly and not os.path.islink(d):
            k.mount_setattr(d, k.MOUNT_ATTR_RDONLY, recursive=os.path.isdir(d))
    k.mount(stage, anc, None, MS_MOVE)
    return anc if readonly else None


def _attrs(options: tuple[str, ...], readonly: bool) -> int:
    attrs = k.MOUNT_ATTR_RDONLY if readonly else 0
    for opt in options:
        attrs |= _OPTION_ATTRS.get(opt, 0)
    return attrs


def _bind(src: str, dst: str, attrs: int = 0, recursive: bool = True) -> None:
    k.mount(src, dst, None, k.MS_BIND | (k.MS_REC if recursive else 0))
    if attrs:
        k.mount_setattr(dst, attrs, recursive=recursive)


def _tmpfs(dst: str, mode: str = "1777", size: int | None = None, attrs: int = 0) -> None:
    data = f"mode={mode}" + (f",size={size}" if size else "")
    k.mount("tmpfs", dst, "tmpfs", k.MS_NOSUID | k.MS_NODEV, data)
    if attrs:
        k.mount_setattr(dst, attrs)


def _escape_overlay(path: str) -> str:
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


# -- the steps -----------------------------------------------------------------------

def _stage() -> None:
    k.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
    k.mount("tmpfs", STAGE, "tmpfs", k.MS_NOSUID | k.MS_NODEV, "mode=0755")
    os.chdir(STAGE)
    for d in ("newroot", "oldroot", "files", "ovl"):
        os.mkdir(d)
    k.pivot_root(STAGE, "oldroot")
    os.chdir("/")


def upper_layers(root: RootConfig) -> str:
    """Where the upper layers of overlay "dir" live on the host: `upper_dir/layers` when
    they are kept, else a directory of this run that the supervisor removes."""
    base = os.path.realpath(root.upper_dir or "")
    if root.keep_upper:
        return os.path.join(base, "layers")
    return os.path.join(base, f".sandboxctl-run-{os.getpid()}-{os.urandom(3).hex()}")


SKIP_TOP = ("proc", "sys", "dev")  # replaced by the sandbox's own (sys stays empty)


class _Layers:
    """Lay the host tree under NEWROOT, one directory at a time.

    A user namespace cannot overlay or non-recursively bind a directory that has mounts
    below it (the kernel locks them), and a recursive bind would bring the host's other
    mounts along. So NEWROOT is a tmpfs skeleton, and each directory of the source is an
    overlay (or bind) of its own; a directory with a mount below it is descended into,
    and a mount point met on the way is left empty: the sandbox sees the root file
    system's contents and only the mounts the profile makes.
    """

    def __init__(self, overlay: str, readonly: bool, base: str | None,
                 hide: tuple[str, ...] = (), above_mounts: frozenset[str] = frozenset()) -> None:
        self.overlay = overlay
        self.readonly = readonly
        self.base = base
        self.hide = hide  # sandbox paths to whiteout in the upper layers (memory overlay)
        self.n = 0
        self.binds: list[str] = []
        # directories with a mount somewhere below them: an overlay or a bind of one fails
        # (EINVAL, ~1.2 ms each in the kernel here), so they are descended into at once
        self.above_mounts = above_mounts

    def _one(self, src: str, dst: str) -> None:
        if self.overlay == "none":
            k.mount(src, dst, None, k.MS_BIND)
            self.binds.append(dst)
            return
        self.n += 1
        # one layer per directory, named after it (so a kept upper_dir is readable and
        # is reused by the next run)
        name = dst[len(NEWROOT):].strip("/").replace("/", "%") or "%"
        upper, work = f"{self.base}/{name}/upper", f"{self.base}/{name}/work"
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        st = os.stat(src)
        os.chmod(upper, st.st_mode & 0o7777)
        rel = dst[len(NEWROOT):]
        for path in self.hide:
            if path.startswith(rel + "/"):
                # a whiteout (0:0 character device) before the mount: the name is gone
                white = os.path.join(upper, path[len(rel) + 1:])
                os.makedirs(os.path.dirname(white), exist_ok=True)
                os.mknod(white, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        data = (f"lowerdir={_escape_overlay(src)},upperdir={_escape_overlay(upper)},"
                f"workdir={_escape_overlay(work)},userxattr")
        k.mount("overlay", dst, "overlay", 0, data)

    def tree(self, src: str, dst: str, top: bool = False) -> None:
        dev = os.stat(src).st_dev
        for name in sorted(os.listdir(src)):
            s, d = os.path.join(src, name), os.path.join(dst, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
                continue
            try:
                st = os.stat(s)
            except OSError:
                continue
            if os.path.isdir(s):
                os.mkdir(d)
                os.chmod(d, st.st_mode & 0o7777)
                if (top and name in SKIP_TOP) or st.st_dev != dev:
                    continue  # another mount: not part of the root file system
                if s in self.above_mounts:
                    self.tree(s, d)  # a mount below it: descend
                    continue
                try:
                    self._one(s, d)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.EPERM):
                        raise
                    self.tree(s, d)  # a mount below it: descend
            elif os.path.isfile(s):
                with open(d, "w"):
                    pass
                k.mount(s, d, None, k.MS_BIND)
                # a single file cannot be overlaid: the host's copy is never writable
                k.mount_setattr(d, k.MOUNT_ATTR_RDONLY)

    def seal(self) -> None:
        if self.overlay == "none" and self.readonly:
            for d in self.binds:
                k.mount_setattr(d, k.MOUNT_ATTR_RDONLY)


def _dirs_above_mounts() -> frozenset[str]:
    """Every directory that has a mount point somewhere below it, from this mount
    namespace's mount table (read before _stage: /proc is not in the staging root), as
    paths under OLDROOT, where _stage puts the host's tree. (If the table cannot be read,
    every directory is tried, and descended into when that fails.)"""
    out: set[str] = set()
    for point, _, _ in k.mount_table():
        while point not in ("/", ""):
            point = os.path.dirname(point)
            if point in out:
                break  # and so are its ancestors
            out.add(point)
    return frozenset(OLDROOT + p if p != "/" else OLDROOT for p in out)


def has_wildcards(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _matches(pattern: str) -> list[str]:
    """glob.glob(pattern); for a pattern without wildcards, without glob (which imports
    re: init imports only what its profile needs, launcher._import_child_side)."""
    if has_wildcards(pattern):
        import glob

        return glob.glob(pattern)
    return [pattern] if os.path.lexists(pattern) else []


def _whiteouts(rules: tuple[PathRule, ...], lower: str) -> tuple[str, ...]:
    """Sandbox paths of the root file system the `deny` rules name, reached without a
    symlink (those are hidden later, resolved inside the new root)."""
    out: set[str] = set()
    for rule in rules:
        pattern = rule.glob
        while pattern.endswith("/**") or pattern.endswith("/*"):
            pattern = pattern.rsplit("/", 1)[0]
        if not pattern.startswith("/") or pattern == "/":
            continue
        for m in _matches(lower + pattern):
            rel = m[len(lower):]
            if rel.count("/") > 1 and os.path.realpath(m) == os.path.normpath(m):
                out.add(rel)  # not a top-level name: those are skeleton names, removed later
    return tuple(sorted(out))


def _root(req: RootRequest, above_mounts: frozenset[str] = frozenset()) -> _Layers:
    """Lay the root out on NEWROOT; returns the layers (sealed read-only at the end)."""
    root = req.gofer.root
    lower = OLDROOT + req.root_source if req.root_source != "/" else OLDROOT
    k.mount("tmpfs", NEWROOT, "tmpfs", k.MS_NOSUID | k.MS_NODEV, "mode=0755")
    base = None
    if root.overlay == "memory":
        k.mount("tmpfs", "/ovl", "tmpfs", k.MS_NOSUID | k.MS_NODEV, "mode=0755")
        base = "/ovl"
    elif root.overlay == "dir":
        base = OLDROOT + (req.upper_base or upper_layers(root))
    hide = _whiteouts(req.gofer.deny, lower) if root.overlay == "memory" else ()
    layers = _Layers(root.overlay, root.readonly, base, hide, above_mounts)
    layers.tree(lower, NEWROOT, top=True)
    return layers


def _dev(target: str, can_create: bool) -> None:
    _ensure(target, True, can_create, "/dev")
    _tmpfs(target, mode="0755", size=1 << 20)
    for name in DEV_NODES:
        node = os.path.join(target, name)
        with open(node, "a"):
            pass
        _bind(OLDROOT + "/dev/" + name, node, recursive=False)
    pts = os.path.join(target, "pts")
    os.mkdir(pts)
    k.mount("devpts", pts, "devpts", k.MS_NOSUID | k.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", os.path.join(target, "ptmx"))
    shm = os.path.join(target, "shm")
    os.mkdir(shm)
    _tmpfs(shm, mode="1777")
    for name, dest in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(dest, os.path.join(target, name))
    k.mount_setattr(target, k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOSUID | k.MOUNT_ATTR_NOEXEC)


def _proc(target: str, can_create: bool) -> None:
    _ensure(target, True, can_create, "/proc")
    k.mount("proc", target, "proc", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
    inner = target[len(NEWROOT):]
    for path in PROC_READONLY:
        p = NEWROOT + inner + path[len("/proc"):]
        if os.path.exists(p):
            _bind(p, p, k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOSUID | k.MOUNT_ATTR_NODEV
                  | k.MOUNT_ATTR_NOEXEC)
    for path in PROC_MASKED_FILES:
        p = NEWROOT + inner + path[len("/proc"):]
        if os.path.exists(p):
            _bind(OLDROOT + "/dev/null", p, recursive=False)
    for path in PROC_MASKED_DIRS:
        p = NEWROOT + inner + path[len("/proc"):]
        if os.path.isdir(p):
            _tmpfs(p, mode="0555", size=4096, attrs=k.MOUNT_ATTR_RDONLY)


def _mount_one(m: Mount, source: str | None, can_create: bool) -> None:
    where = f" ({m.source_loc.where()})" if m.source_loc else ""
    what = f"mount {m.type} on {m.target}{where}"
    target = _in_root(m.target)
    try:
        if m.type == "bind":
            assert source is not None
            _ensure(target, os.path.isdir(OLDROOT + source), can_create, what)
            _bind(OLDROOT + source, target, _attrs(m.options, m.readonly))
        elif m.type == "tmpfs":
            _ensure(target, True, can_create, what)
            _tmpfs(target, size=m.size, attrs=_attrs(m.options, m.readonly))
        elif m.type == "proc":
            _proc(target, can_create)
        elif m.type == "dev":
            _dev(target, can_create)
        else:
            raise SandboxError(f"{what}: unknown mount type {m.type!r}")
    except OSError as exc:
        raise SandboxError(f"{what}: {exc.strerror or exc}",
                           hint="check the path and that the host allows this mount") from exc


def _synthetic(files: tuple[SyntheticFile, ...], can_create: bool) -> None:
    for i, f in enumerate(files):
        staged = os.path.join(FILES, str(i))
        with open(staged, "w") as fh:
            fh.write(f.content)
        os.chmod(staged, f.mode)
        target = _in_root(f.path)
        if not os.path.lexists(target):
            if not can_create or not os.path.isdir(os.path.dirname(target)):
                continue  # nowhere to put it without changing the host; the Sentry serves it
            _ensure(target, False, True, f"synthetic file {f.path}")
        if os.path.isdir(target):
            continue
        _bind(staged, target, k.MOUNT_ATTR_RDONLY, recursive=False)


def _deny_targets(rule: PathRule) -> list[str]:
    pattern = rule.glob
    while pattern.endswith("/**") or pattern.endswith("/*"):
        pattern = pattern.rsplit("/", 1)[0]  # hiding the directory hides what is below it
    if has_wildcards(pattern):
        # a match may be a symlink: resolve it inside the sandbox's tree, never the host's
        return sorted({_in_root(m[len(NEWROOT):]) for m in _matches(NEWROOT + pattern)})
    resolved = _in_root(pattern or "/")
    return [resolved] if os.path.lexists(resolved) else []


OVERLAYFS_SUPER_MAGIC = 0x794C7630
MS_MOVE = 0x2000
WHITEOUT_MAX = 5000  # entries below a denied directory removed through the overlay


def _mounted_on(path: str) -> bool:
    """Something is mounted on `path` (a directory or a single file), not a symlink."""
    if os.path.islink(path) or not os.path.lexists(path):
        return False
    if os.path.isdir(path):
        return os.path.ismount(path)
    return os.lstat(path).st_dev != os.lstat(os.path.dirname(path)).st_dev


def _whiteout(target: str) -> bool:
    """Remove `target` through its in-memory overlay (the upper layer records a whiteout;
    the lower, host, copy is untouched). False when that is not possible here."""
    parent = os.path.dirname(target)
    if _mounted_on(target) and os.stat(parent).st_dev == os.stat(NEWROOT).st_dev:
        # a name of the skeleton (a layer of its own, or a single file bound in): take
        # the mounts on it away, then the name
        while _mounted_on(target):
            k.umount2(target, k.MNT_DETACH)
        if os.path.isdir(target):
            os.rmdir(target)
        else:
            os.unlink(target)
        return True
    try:
        fd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fstatfs_type(fd) != OVERLAYFS_SUPER_MAGIC or os.path.ismount(target):
            return False
    finally:
        os.close(fd)
    try:
        if os.path.isdir(target) and not os.path.islink(target):
            n = 0
            for _top, dirs, files in os.walk(target):
                n += len(dirs) + len(files)
                if n > WHITEOUT_MAX:
                    return False  # too big to remove one name at a time: cover it instead
            for top, dirs, files in os.walk(target, topdown=False):
                for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
                    os.unlink(os.path.join(top, name))
                for name in dirs:
                    if not os.path.islink(os.path.join(top, name)):
                        os.rmdir(os.path.join(top, name))
            os.rmdir(target)
        else:
            os.unlink(target)
    except OSError:
        return not os.path.lexists(target)
    return True


def _hide(rules: tuple[PathRule, ...], in_memory: bool) -> None:
    """Hide the `deny` paths in the kernel's tree."""
    denied_file = os.path.join(FILES, "denied")
    with open(denied_file, "w"):
        pass
    os.chmod(denied_file, 0)
    for rule in rules:
        for target in _deny_targets(rule):
            if target.rstrip("/") == NEWROOT:
                continue
            if in_memory and _whiteout(target):
                continue
            if os.path.isdir(target) and not os.path.islink(target):
                _tmpfs(target, mode="0000", size=4096, attrs=k.MOUNT_ATTR_RDONLY)
            elif os.path.isfile(target):
                _bind(denied_file, target, k.MOUNT_ATTR_RDONLY, recursive=False)


def _readonly(rules: tuple[PathRule, ...]) -> None:
    for rule in rules:
        for target in _deny_targets(rule):
            if os.path.exists(target):
                _bind(target, target, k.MOUNT_ATTR_RDONLY)


def _enter() -> None:
    # pivot_root(".", ".") stacks the staging root (with the host's tree at OLDROOT under
    # it) on the new root; one lazy umount detaches it and everything below it. (Each
    # umount that frees mounts waits for an expedited RCU grace period: one, not two.)
    os.chdir(NEWROOT)
    k.pivot_root(".", ".")
    k.umount2(".", k.MNT_DETACH)
    os.chdir("/")


def build_root(req: RootRequest) -> None:
    """Build the root and pivot into it. Raises SandboxError naming the failed step."""
    step = "prepare the mount namespace"
    try:
        above_mounts = _dirs_above_mounts()
        _stage()
        step = "mount the root"
        layers = _root(req, above_mounts)
        layers.seal()  # before the profile's mounts go on top of the host's directories
        can_create = req.gofer.root.overlay != "none"
        mounts = list(req.gofer.mounts)
        types = {m.type for m in mounts}
        if "dev" not in types:
            mounts.insert(0, Mount(type="dev", target="/dev"))
        if "proc" not in types:
            mounts.insert(0, Mount(type="proc", target="/proc"))
        sources = dict(req.sources)
        offset = len(mounts) - len(req.gofer.mounts)
        for i, m in enumerate(mounts):
            _mount_one(m, sources.get(i - offset), can_create)
        step = "place synthetic files"
        _synthetic(req.synthetic, can_create)
        step = "hide denied paths"
        _hide(req.gofer.deny, req.gofer.root.overlay == "memory")
        step = "make readonly paths read-only"
        _readonly(req.gofer.readonly)
        step = "make the root read-only"
        if req.gofer.root.overlay == "none" and req.gofer.root.readonly:
            k.mount_setattr(NEWROOT, k.MOUNT_ATTR_RDONLY)
        step = "pivot_root into the new root"
        _enter()
    except OSError as exc:
        raise SandboxError(f"cannot {step}: {exc.strerror or exc}",
                           hint="this host may forbid mounts in user namespaces; "
                           "check `unshare -Urm true` works") from exc
