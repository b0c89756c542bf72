"""Helpers for the netstack tests: a network namespace standing in for the sandbox (the
launcher's child), real servers on the host's loopback, and commands run inside."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

from sandboxctl.engine.plan import EgressRule, NetworkConfig, PublishRule, Source

PY = sys.executable


def src(line: int, text: str = "") -> Source:
    return Source("net-test.yaml", line, 7, text)


class Netns:
    """A process alone in a new network namespace (like the sandbox's init)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{self.proc.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            if time.monotonic() > deadline:
                raise RuntimeError("unshare did not create a network namespace")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cmd(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", *argv]

    def py(self, code: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(self.cmd([PY, "-c", code]), capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"sandbox code failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def popen(self, code: str) -> subprocess.Popen:
        return subprocess.Popen(self.cmd([PY, "-c", code]), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class TcpEcho:
    """An echo server on the host's loopback: answers b"echo:" + what it read until EOF."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    @staticmethod
    def _one(c: socket.socket) -> None:
        with c:
            try:
                c.settimeout(30)
                first = True
                while True:
                    d = c.recv(1 << 16)
                    if not d:
                        break
                    c.sendall((b"echo:" if first else b"") + d)
                    first = False
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


class UdpEcho:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                d, a = self.sock.recvfrom(65535)
                self.sock.sendto(b"udp:" + d, a)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(egress=(), publish=(), dns=(), mtu: int = 65520) -> NetworkConfig:
    return NetworkConfig(mode="netstack", egress=tuple(egress), publish=tuple(publish),
                         dns=tuple(dns), mtu=mtu, source=src(30, "network:"))


@contextmanager
def netstack(cfg: NetworkConfig):
    """(Netns, NetHandle, events) with the stack attached; everything closed after."""
    from sandboxctl.netstack.setup import attach

    ns = Netns()
    events: list[dict] = []
    handle = None
    try:
        handle = attach(cfg, ns.pid, events.append)
        yield ns, handle, events
    finally:
        if handle is not None:
            handle.close()
        ns.close()


def wait_for(pred, timeout: float = 5.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


__all__ = ["Netns", "TcpEcho", "UdpEcho", "free_port", "config", "netstack", "wait_for", "src",
           "EgressRule", "PublishRule"]
