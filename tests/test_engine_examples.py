"""The example profiles really run: `sandboxctl apply` on each, output checked."""

import http.server
import socket
import threading

import pytest

from _helpers_engine import cli


def apply(tmp_path, *args):
    return cli("apply", *args, env={"SANDBOXCTL_STATE_DIR": str(tmp_path / "state"),
                                    "SANDBOXCTL_CACHE_DIR": str(tmp_path / "cache")})


def test_python_script(tmp_path):
    r = apply(tmp_path, "profiles/examples/python-script.yaml")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "kernel:   Linux 4.4.0 (x86_64)"  # uname from the profile, via the Sentry
    assert lines[1] == "hostname: sandbox"
    assert lines[3] == "primes below 200: 46, largest 199"
    assert lines[5].startswith("write to /work: refused")  # mounted read-only


def test_shell_pipeline(tmp_path):
    r = apply(tmp_path, "profiles/examples/shell-pipeline.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["sum: 5050", "Linux 4.4.0", "A", "B", "6"]


def test_network_client(tmp_path):
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 8080), http.server.SimpleHTTPRequestHandler)
    except OSError:
        pytest.skip("port 8080 is busy on this host")
    with socket.socket() as probe:  # 8081 must be closed on the host for the refusal line
        if probe.connect_ex(("127.0.0.1", 8081)) == 0:
            server.server_close()
            pytest.skip("port 8081 is in use on this host")
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        r = apply(tmp_path, "profiles/examples/network-client.yaml")
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first.startswith("status 200 bytes ")
    assert second == "port 8081: ConnectionRefusedError"  # not in the egress rules
