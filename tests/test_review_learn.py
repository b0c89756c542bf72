"""sandboxctl learn: for a Python script, a coreutils shell pipeline and a network client,
learn then apply succeeds, and the learned profile refuses a call the program never made.
Real sandboxes throughout (sandboxctl apply)."""

from __future__ import annotations

import http.server
import json
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from _helpers_review import cli, sandboxctl, write


def _env(tmp: Path) -> dict[str, str]:
    return {"SANDBOXCTL_STATE_DIR": str(tmp / "state")}


def _learn(tmp: Path, out: str, *command: str):
    r = sandboxctl("learn", "-o", out, "--", *command, cwd=tmp, env=_env(tmp), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (tmp / out).read_text()
    return r, text


def _allowed_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("- {name: "):
            names.add(s.split("name: ")[1].split(",")[0])
        elif s.startswith("- ") and "{" not in s and "/" not in s:
            names.add(s[2:].split()[0])
    return names


def test_learn_python_script(tmp_path):
    write(tmp_path / "data.txt", "3\n1\n2\n")
    write(tmp_path / "app.py", textwrap.dedent("""\
        import ctypes, json, hashlib
        # A critical call the script can do without: learn must not allow it.
        ctypes.CDLL(None).unshare(0x10000000)
        nums = sorted(int(x) for x in open("data.txt"))
        digest = hashlib.sha256(repr(nums).encode()).hexdigest()
        with open("result.json", "w") as fh:
            json.dump({"nums": nums, "sha": digest[:8]}, fh)
        print("ok", nums)
    """))
    r, text = _learn(tmp_path, "app.yaml", "python3", "app.py")
    assert "ok [1, 2, 3]" in r.stdout
    assert "default: {action: deny, errno: EPERM}" in text
    assert f'- {{source: "{tmp_path}", target: "{tmp_path}", readonly: false}}' in text
    names = _allowed_names(text)
    assert {"read", "write", "openat", "mmap", "exit_group"} <= names
    assert "unshare" not in names
    commented = next(ln for ln in text.splitlines() if ln.strip().startswith("# - unshare"))
    assert "critical" in commented and "default.yaml" in commented
    # glibc may look for nscd over a unix socket; an internet socket was never made.
    assert "memfd_create" not in names and "value: AF_INET}" not in text
    (tmp_path / "result.json").unlink()
    # learn, then apply: the script runs under what was learned.
    ran = sandboxctl("apply", "app.yaml", cwd=tmp_path, env=_env(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "ok [1, 2, 3]" in ran.stdout
    assert json.loads((tmp_path / "result.json").read_text())["nums"] == [1, 2, 3]
    # Its inputs in the writable working directory are kept read-only by path rules.
    assert f'  readonly:\n    - "{tmp_path / "app.py"}"\n    - "{tmp_path / "data.txt"}"\n' in text
    tamper = sandboxctl("apply", "app.yaml", "--", "python3", "-c",
                        "try:\n    open('data.txt', 'a')\nexcept OSError as e:\n"
                        "    print('refused', e.errno)\n", cwd=tmp_path, env=_env(tmp_path))
    assert "refused 30" in tamper.stdout, tamper.stdout + tamper.stderr  # EROFS
    # A call the script never made is refused, and explain says it is the learned default.
    probe = sandboxctl("apply", "app.yaml", "--", "python3", "-c",
                       "import os\ntry:\n    os.memfd_create('x')\nexcept OSError as e:\n"
                       "    print('refused', e.errno)\n",
                       cwd=tmp_path, env=_env(tmp_path))
    assert "refused 1" in probe.stdout, probe.stdout + probe.stderr
    why = json.loads(cli("explain", "--json", cwd=tmp_path, env=_env(tmp_path)).stdout)
    memfd = next(d for d in why["denials"] if d["subject"] == "memfd_create")
    assert memfd["rule_where"].startswith("app.yaml:") and "default action" in memfd["rule_text"]


def test_learn_coreutils_pipeline(tmp_path):
    pipeline = "seq 1 100 | sort -rn | head -n 3 | tr 0-9 a-j > out.txt; wc -c < out.txt; uname -s"
    r, text = _learn(tmp_path, "pipe.yaml", "sh", "-c", pipeline)
    assert r.stdout.split() == ["10", "Linux"]
    assert (tmp_path / "out.txt").read_text() == "baa\njj\nji\n"
    (tmp_path / "out.txt").unlink()
    names = _allowed_names(text)
    assert {"pipe2", "wait4", "execve", "uname"} <= names
    assert not ({"socket", "connect", "ptrace"} & names)
    ran = sandboxctl("apply", "pipe.yaml", cwd=tmp_path, env=_env(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.split() == ["10", "Linux"]
    assert (tmp_path / "out.txt").read_text() == "baa\njj\nji\n"
    h = json.loads(cli("explain", "-p", str(tmp_path / "pipe.yaml"), "socket", "AF_INET",
                              "--json").stdout)
    assert h["allowed"] is False and h["outcome"] == "deny EPERM"


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = b"learned\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture()
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_learn_network_client(tmp_path, http_server):
    port = http_server
    # The host's loopback is the netstack gateway (10.0.2.2) seen from the sandbox.
    client = ("import urllib.request\n"
              f"r = urllib.request.urlopen('http://10.0.2.2:{port}/', timeout=10)\n"
              "print(r.status, r.read().decode().strip())\n")
    r, text = _learn(tmp_path, "client.yaml", "python3", "-c", client)
    assert "200 learned" in r.stdout
    assert "mode: netstack" in text
    assert f"- {{cidr: 127.0.0.1/32, ports: [{port}], protocol: tcp}}" in text
    assert "- {name: socket, args: [{index: 0, op: eq, value: AF_INET}]}" in text
    ran = sandboxctl("apply", "client.yaml", cwd=tmp_path, env=_env(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "200 learned" in ran.stdout
    # Never made: an IPv6 socket, and another port of the same host.
    v6 = json.loads(cli("explain", "-p", str(tmp_path / "client.yaml"), "socket",
                               "AF_INET6", "--json").stdout)
    assert v6["allowed"] is False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        other = s.getsockname()[1]
    dest = json.loads(cli("explain", "-p", str(tmp_path / "client.yaml"),
                                 f"127.0.0.1:{other}", "--json").stdout)
    assert dest["allowed"] is False


def test_learn_to_stdout_and_errors(tmp_path):
    r = sandboxctl("learn", cwd=tmp_path, env=_env(tmp_path))
    assert r.returncode == 1 and "learn needs a command" in r.stderr
    r = sandboxctl("learn", "-o", "x.yaml", "--", "no-such-command-here", cwd=tmp_path,
                   env=_env(tmp_path))
    assert r.returncode == 1 and "nothing was recorded" in r.stderr
    assert not (tmp_path / "x.yaml").exists()
    # Without -o the profile is standard output; the command's output goes to stderr.
    r = sandboxctl("learn", "--", "sh", "-c", "echo from-the-command", cwd=tmp_path,
                   env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# Learned by `sandboxctl learn`")
    assert "from-the-command" in r.stderr and "from-the-command\n" not in r.stdout
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(r.stdout)
    assert doc["syscalls"]["default"] == {"action": "deny", "errno": "EPERM"}
    assert "write" in doc["syscalls"]["allow"]
