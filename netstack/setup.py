"""Attach the netstack to a sandbox: the supervisor's entry point for network mode
"netstack".

    handle = attach(plan.network, child_pid, run)   # child already in its new net ns
    ...
    handle.close()

attach() creates the TAP device inside the child's network namespace, then starts the
netstack as a separate host process (`python -m sandboxctl.netstack.process`) holding the
only copy of the TAP fd. Its events come back over a control socket and are passed to
`run.event(dict)` (a RunRecord) or to `run(dict)` when `run` is a plain callable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import socket
import subprocess
import sys
import threading
from typing import Any, Callable

from ..engine.errors import HostError, SandboxError
from ..engine.plan import NetworkConfig, _to_plain
from .tap import open_tap
from .tcp import Limits

READY_TIMEOUT = 30.0


def resolv_conf(config: NetworkConfig) -> str:
    """/etc/resolv.conf as the sandbox should see it in netstack mode."""
    return f"nameserver {config.gateway}\noptions edns0\n"


def _event_sink(run: Any) -> Callable[[dict], None]:
    if run is None:
        return lambda _e: None
    if hasattr(run, "event"):
        return run.event
    if callable(run):
        return run
    raise TypeError("run must be a RunRecord (with .event) or a callable(dict)")


class NetHandle:
    """The running netstack of one sandbox. close() stops it and releases everything."""

    def __init__(self, proc: subprocess.Popen, ctl: socket.socket,
                 on_event: Callable[[dict], None]) -> None:
        self.proc = proc
        self._ctl = ctl
        self._on_event = on_event
        self._replies: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="netstack-events", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        try:
            self._read_lines()
        except (OSError, ValueError):  # the netstack went away mid-line, or close() raced us
            pass
        self._replies.put({"error": "netstack exited"})

    def _read_lines(self) -> None:
        with self._ctl.makefile("r", encoding="utf-8") as f:
            for line in f:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "event" in msg:
                    try:
                        self._on_event(msg["event"])
                    except Exception:  # a broken sink must not stop the network
                        pass
                elif "ready" in msg or "error" in msg:
                    self._replies.put(msg)
                    self._ready.set()
                else:
                    self._replies.put(msg)

    def _send(self, msg: dict, fd: int | None = None) -> None:
        data = (json.dumps(msg) + "\n").encode()
        with self._lock:
            if fd is not None:  # the descriptor rides with the message's first bytes
                sent = socket.send_fds(self._ctl, [data], [fd])
                data = data[sent:]
            self._ctl.sendall(data)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        try:
            msg = self._replies.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise SandboxError("the netstack did not start in time; see its stderr.") from None
        if "error" in msg:
            self.close()
            raise HostError(f"the netstack could not start: {msg['error']}")

    def stats(self, timeout: float = 5.0) -> dict:
        """Counters of the running stack (connections, flows, drops, frames)."""
        self._send({"cmd": "stats"})
        msg = self._replies.get(timeout=timeout)
        if "stats" not in msg:
            raise SandboxError(f"the netstack did not answer: {msg}")
        return msg["stats"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"cmd": "stop"})
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            self._ctl.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._ctl.close()
        self._reader.join(timeout=2)


def attach(config: NetworkConfig, child_pid: int, run: Any = None,
           netns_path: str | None = None, limits: Limits | None = None) -> NetHandle:
    """Give the sandbox whose init is `child_pid` its TAP device and start the netstack.

    `run`: a RunRecord (events go to run.event) or a callable(dict), or None.
    `netns_path` overrides /proc/<child_pid>/ns/net; `limits` the TCP bounds (tests).
    """
    if config.mode != "netstack":
        raise SandboxError(f"attach() is for network mode netstack, not {config.mode!r}")
    # The netstack process starts first; its interpreter start-up overlaps the TAP set-up
    # (pyroute2's import alone is ~0.25 s). The TAP fd follows over the control socket.
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandboxctl.netstack.process", str(child.fileno())],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
    finally:
        child.close()
    handle = NetHandle(proc, parent, _event_sink(run))
    try:
        tap_fd, mac = open_tap(netns_path or f"/proc/{child_pid}/ns/net", config)
    except BaseException:
        handle.close()
        raise
    try:
        handle._send({"config": _to_plain(config), "sandbox_mac": mac.hex(),
                      "limits": dataclasses.asdict(limits or Limits())}, fd=tap_fd)
    finally:
        os.close(tap_fd)  # the netstack process holds the only copy now
    handle.wait_ready()
    return handle


__all__ = ["attach", "NetHandle", "resolv_conf"]
