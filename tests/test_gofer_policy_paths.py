"""Path calls and the path rules, through `sandboxctl apply` (issue 4 follow-up):

- every path-taking call is trapped in gofer mode: served through the Gofer (statfs,
  xattr reads, inotify_add_watch, utime/utimes/futimesat, mknod, fchmodat2) or refused
  with an event (setxattr, chroot, ...), and the deny globs hold for each of them;
- the kernel's cwd is the program's: `cd d && ./prog`, relative opens after cd, getcwd;
- deny paths are hidden by the kernel too, in both modes: chdir and execve (which the
  kernel resolves) get ENOENT.
"""

from __future__ import annotations

import pytest

from _helpers_gofer import apply, events, write_profile

PROFILE = """\
filesystem:
  mediation: {mode}
"""

CD_SCRIPT = r"""
mkdir -p /tmp/d && cp /bin/true /tmp/d/t && cd /tmp/d && ./t && pwd
echo data > rel && cat /tmp/d/rel
python3 - <<'EOF'
import errno, os
print("cwd", os.getcwd(), open("rel").read().strip())
os.mkdir("sub"); os.chdir("sub"); open("../sub/f", "w").write("x")
print("cwd2", os.getcwd(), os.listdir("."), os.path.exists("../rel"))
fd = os.open("/tmp", os.O_RDONLY); os.fchdir(fd); print("cwd3", os.getcwd(), os.path.isdir("d"))
for what, fn in (("chdir", lambda: os.chdir("/root")),
                 ("exec", lambda: os.execv("/etc/shadow", ["x"])),
                 ("stat", lambda: os.stat("/etc/shadow"))):
    try:
        fn()
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
EOF
"""


@pytest.mark.parametrize("mode", ["gofer", "direct"])
def test_kernel_cwd_and_kernel_hiding(tmp_path, mode):
    prof = write_profile(tmp_path, PROFILE.format(mode=mode))
    cp, run = apply(prof, ["sh", "-c", CD_SCRIPT], tmp_path / "state")
    out = cp.stdout.decode().splitlines()
    assert cp.returncode == 0, cp.stderr.decode()
    assert out[:2] == ["/tmp/d", "data"]
    assert "cwd /tmp/d data" in out
    assert "cwd2 /tmp/d/sub ['f'] True" in out
    assert "cwd3 /tmp True" in out
    # denied paths: ENOENT from the kernel itself (chdir, execve) and from the Gofer (stat)
    assert "chdir ENOENT" in out and "exec ENOENT" in out and "stat ENOENT" in out
    if mode == "gofer":
        evs = [e for e in events(run, "file") if e.get("path") == "/etc/shadow"]
        assert any(e["syscall"] in ("newfstatat", "statx", "stat") for e in evs), evs


CALLS = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *args)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
S = b"/etc/shadow"
buf = ctypes.create_string_buffer(4096)
open("/tmp/w", "w").close()
ifd = libc.inotify_init1(0)
tv = ctypes.create_string_buffer(32)
res = {
  "statfs-denied": sc(137, S, buf), "statfs-ok": sc(137, b"/tmp", buf),
  "getxattr-denied": sc(191, S, b"user.x", buf, ctypes.c_size_t(64)),
  "lgetxattr-denied": sc(192, S, b"user.x", buf, ctypes.c_size_t(64)),
  "listxattr-denied": sc(194, S, buf, ctypes.c_size_t(64)),
  "listxattr-ok": sc(194, b"/etc/passwd", buf, ctypes.c_size_t(64)),
  "inotify-denied": sc(254, ifd, S, 2), "inotify-ok": sc(254, ifd, b"/tmp/w", 2),
  "utime-denied": sc(132, S, None), "utimes-denied": sc(235, S, None),
  "futimesat-denied": sc(261, -100, S, None), "utime-ok": sc(132, b"/tmp/w", None),
  "mknod-denied": sc(133, S, 0o10644, 0), "mknod-ok": sc(133, b"/tmp/fifo", 0o10644, 0),
  "fchmodat2-denied": sc(452, -100, S, 0o600, 0),
  "setxattr": sc(188, b"/tmp/w", b"user.x", b"1", ctypes.c_size_t(1), 0),
  "chroot": sc(161, b"/tmp"),
}
os.chdir("/etc")
res["statfs-rel-denied"] = sc(137, b"shadow", buf)
res["statvfs"] = os.statvfs("/tmp").f_bsize > 0
res["fifo"] = os.path.exists("/tmp/fifo")
for k in sorted(res):
    print(k, res[k])
"""


def test_every_path_call_is_mediated(tmp_path):
    prof = write_profile(tmp_path, PROFILE.format(mode="gofer"))
    cp, run = apply(prof, ["python3", "-c", CALLS], tmp_path / "state")
    assert cp.returncode == 0, cp.stderr.decode()
    res = dict(line.split(" ", 1) for line in cp.stdout.decode().splitlines())
    for k, v in res.items():
        if k.endswith("-denied"):
            assert v == "ENOENT", (k, v)
    assert res["statfs-ok"] == res["listxattr-ok"] == res["inotify-ok"] == "ok"
    assert res["utime-ok"] == res["mknod-ok"] == "ok"
    assert res["statvfs"] == res["fifo"] == "True"
    assert res["setxattr"] == "ENOTSUP" and res["chroot"] == "EPERM"
    evs = events(run, "file")
    denied = {e["syscall"] for e in evs if e.get("path") == "/etc/shadow"}
    for call in ("statfs", "getxattr", "lgetxattr", "listxattr", "inotify_add_watch", "utime",
                 "utimes", "futimesat", "mknod", "fchmodat2"):
        assert call in denied, (call, denied)
    rule = next(e["rule"] for e in evs if e["syscall"] == "statfs" and e["path"] == "/etc/shadow")
    assert rule and "/etc/shadow" in rule["text"] and rule["file"].endswith("default.yaml")
    refused = {e["syscall"]: e for e in evs if e.get("reason") == "path call the Gofer does not serve"}
    assert refused["setxattr"]["path"] == "/tmp/w" and refused["chroot"]["path"] == "/tmp"
