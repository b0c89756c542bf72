"""Mount targets that do not exist in the root are made without changing the host: on
the skeleton or the in-memory overlay, or, under a read-only bind of a host directory
(overlay: none), on a tmpfs layer listing the same names."""

from __future__ import annotations

import os

import pytest

from _helpers_gofer import apply, write_profile

BODY = """\
filesystem:
  mediation: {mode}
  root: {{source: /, readonly: true, overlay: {overlay}}}
  mounts:
    - {{source: {src}, target: /rw}}
    - {{source: {src}, target: /usr/share/sbx-new/deep, readonly: true}}
    - {{type: tmpfs, target: /usr/local/sbx-tmp/t, size: 1Mi}}
"""

SCRIPT = r"""
cat /rw/a /usr/share/sbx-new/deep/a
echo y > /rw/b && echo wrote-rw
echo z > /usr/local/sbx-tmp/t/f && cat /usr/local/sbx-tmp/t/f
echo q > /usr/share/sbx-new/deep/c 2>/dev/null || echo ro-mount
ls /usr/share | grep -c . >/dev/null && test -d /usr/share/doc && echo listing-kept
"""


@pytest.mark.parametrize("mode,overlay", [("gofer", "none"), ("direct", "none"),
                                          ("gofer", "memory")])
def test_missing_mount_points_are_made(tmp_path, mode, overlay):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("A\n")
    os.chmod(src, 0o777)
    prof = write_profile(tmp_path, BODY.format(mode=mode, overlay=overlay, src=src))
    cp, _ = apply(prof, ["sh", "-c", SCRIPT], tmp_path / "state")
    assert cp.returncode == 0, cp.stderr.decode()
    out = cp.stdout.decode().split()
    assert out == ["A", "A", "wrote-rw", "z", "ro-mount", "listing-kept"], (out, cp.stderr)
    assert (src / "b").read_text() == "y\n"  # the writable bind reaches the host
    for host in ("/rw", "/usr/share/sbx-new", "/usr/local/sbx-tmp"):
        assert not os.path.exists(host)  # no mount point was made on the host


def test_staged_directory_stays_read_only(tmp_path):
    prof = write_profile(tmp_path, BODY.format(mode="direct", overlay="none", src=tmp_path))
    cp, _ = apply(prof, ["sh", "-c", "touch /usr/share/x 2>&1; ls /usr/share/sbx-new"],
                  tmp_path / "state")
    assert b"Read-only file system" in cp.stdout and b"deep" in cp.stdout
    assert not os.path.exists("/usr/share/x")


def test_mount_point_under_a_writable_host_bind_leaves_the_host_alone(tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "kept").write_text("k\n")
    body = f"""\
filesystem:
  mounts:
    - {{source: {src}, target: /data}}
    - {{type: tmpfs, target: /data/new/t, size: 1Mi}}
"""
    prof = write_profile(tmp_path, body)
    cp, _ = apply(prof, ["sh", "-c", "echo x > /data/new/t/f && cat /data/new/t/f /data/kept"],
                  tmp_path / "state")
    assert cp.returncode == 0, cp.stderr.decode()
    assert cp.stdout.decode().split() == ["x", "k"]
    assert sorted(p.name for p in src.iterdir()) == ["kept"]  # no mount point on the host


def test_no_mount_point_inside_proc(tmp_path):
    body = """\
filesystem:
  root: {source: /, readonly: true, overlay: none}
  mounts:
    - {type: tmpfs, target: /proc/nonexistent/x}
"""
    prof = write_profile(tmp_path, body)
    cp, _ = apply(prof, ["true"], tmp_path / "state")
    assert cp.returncode != 0 and b"cannot make a mount point in /proc" in cp.stderr
