"""The examples of docs/network.md, run as written: profiles from its `# file:` blocks and
every `$ command`, whose shown output lines must appear in what it prints."""

from __future__ import annotations

import http.server
import os
import re
import shlex
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

from _helpers_net import free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "network.md"


def _blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(\w*)\n(.*?)```", text, re.S)


def _commands(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for lang, body in _blocks(text):
        if lang:
            continue
        cur = None
        for line in body.splitlines():
            if line.startswith("$ "):
                cur = (line[2:], [])
                out.append(cur)
            elif cur is not None and line.strip():
                cur[1].append(line.strip())
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


class _Server(socketserver.TCPServer):
    allow_reuse_address = True


def _http_server(port: int, directory: str):
    handler = lambda *a, **k: _Quiet(*a, directory=directory, **k)  # noqa: E731
    srv = _Server(("127.0.0.1", port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_doc_examples_run_as_written(tmp_path):
    # the doc's host ports, moved to free ones (other test runs may share this host)
    text = DOC.read_text()
    ports = {p: free_port() for p in ("18080", "18081", "18082", "18090")}
    for old, new in ports.items():
        text = text.replace(old, str(new))
    for lang, body in _blocks(text):
        first = body.splitlines()[0] if body else ""
        if lang == "yaml" and first.startswith("# file: "):
            (tmp_path / first[len("# file: "):].strip()).write_text(body)
    assert (tmp_path / "web-client.yaml").exists() and (tmp_path / "web-server.yaml").exists()
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env.get("PATH", "/usr/bin:/bin")
    web = _http_server(ports["18080"], str(tmp_path))
    background: list[subprocess.Popen] = []
    ran = 0
    try:
        for cmd, expected in _commands(text):
            argv = shlex.split(cmd.split("  #")[0])
            if argv[0] == "python":
                argv[0] = sys.executable
            if "http.server" in cmd:  # a server that runs until stopped: start it, go on
                background.append(subprocess.Popen(argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                continue
            if argv[0] == "curl":  # the published port: wait until the sandbox's server is up
                wait_for(lambda: subprocess.run(argv, capture_output=True).stdout.strip() == b"200",
                         timeout=20, step=0.2)
            cwd = REPO if "bench/" in cmd else tmp_path
            r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
            # list numbers ("1. ...") depend on event order, which is not the point
            unnumber = lambda x: re.sub(r"^\d+\. ", "", x.strip())  # noqa: E731
            lines = [unnumber(x) for x in (r.stdout + r.stderr).splitlines()]
            for want in map(unnumber, expected):
                assert want in lines, f"{cmd!r}: {want!r} not in output:\n{r.stdout}\n{r.stderr}"
            if "bench/network.py" in cmd:
                row = next(x for x in lines if x.startswith("netstack"))
                assert float(row.split()[1]) > 100, row  # Mbit/s
            ran += 1
    finally:
        for p in background:
            p.kill()
            p.wait()
        web.shutdown()
        web.server_close()
    assert ran >= 5
