"""`--strace` on the ptrace platform: every call, decoded by python-ptrace."""

from __future__ import annotations

import errno
import re

from _helpers_ptrace import make_plan, run_traced, strace_buffer


def test_cat_etc_hostname_openat_and_read():
    with open("/etc/hostname", "rb") as fh:
        size = len(fh.read())
    log, buf = strace_buffer()
    res, _ = run_traced(["cat", "/etc/hostname"], make_plan(), strace=log)
    assert res.exit_code == 0
    text = buf.getvalue()
    assert re.search(r"^\[pid \d+\] openat\(AT_FDCWD, '/etc/hostname', O_RDONLY\) = (\d+) "
                     r"<\d+\.\d{6}>$", text, re.M), text
    fd = re.search(r"openat\(AT_FDCWD, '/etc/hostname', O_RDONLY\) = (\d+)", text).group(1)
    # coreutils' cat reads with read(2), or copy_file_range(2) when it can
    reads = re.findall(rf"^\[pid \d+\] (read|copy_file_range)\({fd}, .*\) = {size} <", text, re.M)
    assert reads, text


def test_strace_syscalls_narrows_and_shows_errno():
    log, buf = strace_buffer(frozenset({"openat"}))
    res, _ = run_traced(["cat", "/nonexistent/x"], make_plan(), strace=log)
    assert res.exit_code == 1
    lines = buf.getvalue().splitlines()
    assert lines and all(" openat(" in ln for ln in lines)
    assert any("'/nonexistent/x'" in ln and "= -2 ENOENT (No such file or directory)" in ln
               for ln in lines)


def test_strace_shows_sentry_answers():
    log, buf = strace_buffer(frozenset({"uname"}))
    res, _ = run_traced(["uname", "-n"], make_plan(deny={"uname": errno.EPERM}), strace=log)
    assert res.exit_code == 1
    line = buf.getvalue().strip()
    assert re.match(r"\[pid \d+\] uname\(.*\) = -1 EPERM \(Operation not permitted\) "
                    r"<\d+\.\d+> \[sentry\]$", line), line


def test_long_path_is_truncated_not_lost():
    path = "/nonexistent/" + "d" * 200
    log, buf = strace_buffer(frozenset({"openat"}))
    res, _ = run_traced(["cat", path], make_plan(), strace=log)
    assert res.exit_code == 1
    line = [ln for ln in buf.getvalue().splitlines() if "/nonexistent/" in ln]
    assert line and "'/nonexistent/ddd" in line[0] and "'..." in line[0], line
    assert "ENOENT" in line[0]
