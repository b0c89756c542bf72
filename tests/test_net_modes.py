"""Each network mode through `sandboxctl apply`: what works, what is refused, and the
events a refusal leaves in the run record."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from _helpers_launch import apply, write_profile
from _helpers_net import TcpEcho, free_port, wait_for

CLIENT = """
import socket, sys
def try_connect(addr, port):
    try:
        s = socket.create_connection((addr, port), timeout=5); s.sendall(b"hi"); return s.recv(20).decode()
    except OSError as exc:
        return type(exc).__name__
print(" ".join(try_connect(a, int(p)) for a, p in (x.split(":") for x in sys.argv[1:])))
"""

LOOPBACK_INSIDE = """
import socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); a, _ = l.accept(); c.sendall(b"x"); print("inside", a.recv(1).decode())
"""


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _events(state: Path) -> list[dict]:
    runs = sorted((state / "runs").iterdir())
    lines = (runs[-1] / "events.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def test_mode_none_has_loopback_only(tmp_path):
    echo = TcpEcho()
    prof = write_profile(tmp_path, "network: {mode: none}\n")
    r = apply(prof, "python3", "-c", CLIENT, f"127.0.0.1:{echo.port}", f"10.0.2.2:{echo.port}",
              state=tmp_path / "state")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ConnectionRefusedError", "OSError"]  # own lo; no route at all
    assert echo.accepted == 0
    r = apply(prof, "python3", "-c", LOOPBACK_INSIDE, state=tmp_path / "state")
    assert r.stdout.split() == ["inside", "x"], r.stderr
    echo.close()


def test_mode_passthrough_uses_host_stack_and_socket_rules(tmp_path):
    echo = TcpEcho()
    prof = write_profile(tmp_path, """
        syscalls:
          deny:
            - {name: socket, args: [{index: 0, op: eq, value: AF_INET6}]}
        network: {mode: passthrough}
        """)
    code = CLIENT + """
try:
    socket.socket(socket.AF_INET6, socket.SOCK_STREAM); print("INET6-OK")
except PermissionError:
    print("INET6-EPERM")
"""
    r = apply(prof, "python3", "-c", code, f"127.0.0.1:{echo.port}", state=tmp_path / "state")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["echo:hi", "INET6-EPERM"]
    assert echo.accepted == 1
    ev = [e for e in _events(tmp_path / "state") if e.get("syscall") == "socket"]
    assert ev and ev[0]["action"] == "deny" and ev[0]["rule"]["line"] == _line_of(prof, "AF_INET6")
    echo.close()


def test_mode_netstack_egress_and_events(tmp_path):
    echo, other = TcpEcho(), TcpEcho()
    prof = write_profile(tmp_path, f"""
        network:
          mode: netstack
          egress:
            - {{cidr: 127.0.0.1/32, ports: [{echo.port}], protocol: tcp}}
        """)
    code = CLIENT + """
import os
print(sorted(int(x) for x in os.listdir("/proc/self/fd")))
print(open("/etc/resolv.conf").read().split()[:2])
"""
    r = apply(prof, "python3", "-c", code, f"10.0.2.2:{echo.port}", f"10.0.2.2:{other.port}",
              state=tmp_path / "state")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["echo:hi", "ConnectionRefusedError"]
    assert lines[1] == "[0, 1, 2, 3]"  # no netstack or TAP descriptor reached the program
    assert lines[2] == "['nameserver', '10.0.2.2']"
    assert echo.accepted == 1 and other.accepted == 0
    ev = [e for e in _events(tmp_path / "state") if e["kind"] == "network"]
    assert len(ev) == 1
    assert (ev[0]["dest"], ev[0]["port"], ev[0]["protocol"]) == ("127.0.0.1", other.port, "tcp")
    assert ev[0]["rule"] is None and ev[0]["near"]["line"] == _line_of(prof, "cidr:")  # the port's rule
    echo.close(), other.close()


def test_mode_netstack_publish(tmp_path):
    port = free_port()
    prof = write_profile(tmp_path, f"""
        network:
          mode: netstack
          publish:
            - {{host: "127.0.0.1:{port}", sandbox: 8080}}
        """)
    server = """
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 8080)); l.listen()
c, addr = l.accept(); c.sendall(b"from-sandbox " + c.recv(100)); c.close()
"""
    import subprocess
    from _helpers_launch import apply_cmd, env_for

    proc = subprocess.Popen(apply_cmd(prof, "python3", "-c", server), env=env_for(tmp_path / "state"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        def exchange():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"ping")
                    return c.recv(100)
            except OSError:
                return None

        # the listener is up once the netstack is; the server in the sandbox may start later
        reply = wait_for(lambda: exchange() or None, timeout=20, step=0.2)
        assert reply == b"from-sandbox ping"
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


SERVER = """
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(); print("listening", flush=True)
l.settimeout(float(sys.argv[2]))
try:
    c, _ = l.accept(); c.sendall(b"from-sandbox"); c.close(); print("served")
except socket.timeout:
    print("nobody came")
"""


def _serve_in_sandbox(tmp_path, mode: str, wait: float):
    import subprocess
    from _helpers_launch import apply_cmd, env_for

    port = free_port()
    prof = write_profile(tmp_path, f"network: {{mode: {mode}}}\n", name=f"{mode}.yaml")
    proc = subprocess.Popen(apply_cmd(prof, "python3", "-c", SERVER, str(port), str(wait)),
                            env=env_for(tmp_path / "state"), stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline().strip() == "listening"
    return proc, port


def test_server_in_sandbox_passthrough_is_on_the_host_and_none_is_not(tmp_path):
    proc, port = _serve_in_sandbox(tmp_path, "passthrough", 10)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            assert c.recv(100) == b"from-sandbox"
        assert proc.stdout.read().split() == ["served"]
    finally:
        proc.kill()
        proc.wait()
    proc, port = _serve_in_sandbox(tmp_path, "none", 1.5)
    try:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            reached = True
        except ConnectionRefusedError:
            reached = False
        assert not reached  # its 127.0.0.1 is its own loopback, not the host's
        assert proc.stdout.read().split() == ["nobody", "came"]
    finally:
        proc.kill()
        proc.wait()
