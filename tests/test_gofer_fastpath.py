"""The Gofer's fast path for opens (docs/gofer.md, "Performance"): an OPEN asked with
OPEN_NO_WAIT is served at once, except one that could block (a FIFO without a peer),
which is answered WOULD_BLOCK without being started; the Gofer keeps serving, and the
same request without the bit then waits for the peer as before."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from _helpers_gofer import SandboxNS, make_plan
from sandboxctl.gofer.client import GoferClient
from sandboxctl.gofer.process import start_gofer
from sandboxctl.gofer.protocol import OPEN_NO_WAIT, WOULD_BLOCK, Op, Request


@pytest.fixture
def gofer(tmp_path):
    ns = SandboxNS(tmp_path)
    rw = ns.hostdir / "rw"
    (rw / "f").write_text("data")
    os.mkfifo(rw / "fifo")
    os.chmod(rw, 0o777)
    handle, sock = start_gofer(make_plan(deny=("/rw/secret",)), ns.pid)
    client = GoferClient(sock)
    yield rw, client
    client.close()
    handle.close()
    ns.close()


def _open(client, name: bytes, no_wait: int, flags: int = os.O_RDONLY):
    return client.call(Request(Op.OPEN, name, flags=flags, pid=1, tid=1, a=(no_wait, 0, 0, 0)))


def test_no_wait_open_of_a_regular_file_is_served(gofer):
    rw, client = gofer
    rep = _open(client, b"/rw/f", OPEN_NO_WAIT)
    assert rep.errno == 0 and rep.fd >= 0
    try:
        assert os.read(rep.fd, 10) == b"data"
    finally:
        os.close(rep.fd)
    # refusals and misses are answered as usual (not WOULD_BLOCK)
    assert _open(client, b"/rw/secret", OPEN_NO_WAIT).errno == errno.ENOENT
    assert _open(client, b"/rw/missing", OPEN_NO_WAIT).errno == errno.ENOENT


def test_no_wait_open_of_a_fifo_is_not_started(gofer):
    rw, client = gofer
    rep = _open(client, b"/rw/fifo", OPEN_NO_WAIT)
    assert (rep.errno, rep.fd) == (WOULD_BLOCK, -1)
    # O_NONBLOCK opens cannot block: served at once (a reader needs no writer)
    rep = _open(client, b"/rw/fifo", OPEN_NO_WAIT, os.O_RDONLY | os.O_NONBLOCK)
    assert rep.errno == 0 and rep.fd >= 0
    os.close(rep.fd)
    # the waiting form: blocks in the Gofer (a thread of its own) until a writer comes
    got = []
    t = threading.Thread(target=lambda: got.append(_open(client, b"/rw/fifo", 0)))
    t.start()
    t.join(0.3)
    assert t.is_alive()
    assert client.call(Request(Op.PING)).data == b"pong"  # the Gofer still serves
    w = os.open(rw / "fifo", os.O_WRONLY)
    os.write(w, b"x")
    os.close(w)
    t.join(5)
    assert got and got[0].errno == 0 and got[0].fd >= 0
    assert os.read(got[0].fd, 1) == b"x"
    os.close(got[0].fd)


def test_the_files_benchmark_runs_and_reports_a_trapped_call(tmp_path):
    """docs/gofer.md's benchmark command, small: every runner row and the per-call cost."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench" / "files.py"
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp_path))
    cp = subprocess.run([sys.executable, str(bench), "--count", "300", "--repeat", "1",
                         "--no-runsc", "--no-bwrap"], capture_output=True, text=True,
                        timeout=120, env=env)
    assert cp.returncode == 0, cp.stderr
    rows = {line.split()[0]: line.split() for line in cp.stdout.splitlines()
            if line.split() and line.split()[0] in ("native", "sandboxctl")}
    assert set(rows) == {"native", "sandboxctl"}, cp.stdout
    # trapped calls cost more than native ones: the loop really went through the Sentry
    assert float(rows["sandboxctl"][2]) > float(rows["native"][2]), cp.stdout
    m = re.search(r"one trapped call, us: open .* ([0-9.]+); stat from the attribute cache "
                  r"([0-9.]+); stat through the Gofer \(cache: shared\) ([0-9.]+)", cp.stdout)
    assert m, cp.stdout
    assert all(float(v) > 0 for v in m.groups()), cp.stdout
