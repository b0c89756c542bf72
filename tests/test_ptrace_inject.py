"""InjectFd on ptrace: a host fd reaches the program through calls the tracer injects,
at the number open() would have returned, and no other descriptor is left behind."""

from __future__ import annotations

import os
import sys

import pytest

from _helpers_ptrace import make_plan, run_traced, strace_buffer
from sandboxctl.sentry.call import Continue, InjectFd

CODE = ("import os\nbefore = sorted(os.listdir('/proc/self/fd'))\n"
        "f = open('/magic/file')\n"
        "after = sorted(os.listdir('/proc/self/fd'))\n"
        "print(f.fileno(), os.get_inheritable(f.fileno()), f.read())\n"
        "print(len(after) - len(before))\n")


def _dispatch(host_file: str, opened: list):
    def dispatch(call, mem):
        if call.name == "openat" and mem.read_cstr(call.args[1]) == b"/magic/file":
            fd = os.open(host_file, os.O_RDONLY)
            opened.append(fd)
            return InjectFd(fd, cloexec=True)
        return Continue()
    return dispatch


@pytest.mark.parametrize("strace", [False, True])
def test_inject_fd(tmp_path, capfd, strace):
    host = tmp_path / "host.txt"
    host.write_text("from the host")
    opened: list[int] = []
    log, buf = strace_buffer({"openat"}) if strace else (None, None)
    res, _ = run_traced([sys.executable, "-c", CODE], make_plan(emulate={"openat": "openat"}),
                        dispatch=_dispatch(str(host), opened), strace=log)
    out = capfd.readouterr().out.splitlines()
    assert res.exit_code == 0, out
    fd, inheritable, text = out[0].split(" ", 2)
    assert text == "from the host"
    assert inheritable == "False"  # cloexec was asked
    assert out[1] == "1"  # exactly one new descriptor: no socket left behind
    # the tracer closed its copy (InjectFd.close defaults to True)
    with pytest.raises(OSError):
        os.fstat(opened[0])
    if strace:
        line = [ln for ln in buf.getvalue().splitlines() if "/magic/file" in ln]
        assert line and line[0].endswith("[sentry]") and f"= {fd} " in line[0]


def test_injected_fd_gets_the_lowest_free_number(tmp_path, capfd):
    host = tmp_path / "host.txt"
    host.write_text("x")
    code = "import os\nos.close(0)\nf = open('/magic/file')\nprint(f.fileno())"
    res, _ = run_traced([sys.executable, "-c", code], make_plan(emulate={"openat": "openat"}),
                        dispatch=_dispatch(str(host), []))
    assert res.exit_code == 0
    assert capfd.readouterr().out.strip() == "0"
