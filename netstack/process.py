"""The netstack process: `python -m sandboxctl.netstack.process CONTROL_FD`.

Started by setup.attach(); reads its NetworkConfig as the first JSON line on the control
socket (the TAP fd comes with it, SCM_RIGHTS), answers {"ready": true} once listening, then sends {"event": {...}} lines and
answers {"cmd": "stats"} / {"cmd": "stop"}. It dies with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import sys

from ..engine.plan import NetworkConfig, _from_plain
from .confine import confine
from .stack import Stack
from .tcp import Limits

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        sys.exit(1)


def _first_message(ctl: socket.socket) -> tuple[bytes, list[int]]:
    """The set-up line and the TAP fd that comes with it (SCM_RIGHTS)."""
    buf = b""
    fds: list[int] = []
    while b"\n" not in buf:
        data, got, _flags, _addr = socket.recv_fds(ctl, 65536, 1)
        fds += got
        if not data:
            return b"", fds
        buf += data
    return buf.partition(b"\n")[0], fds


def main(argv: list[str]) -> int:
    ctl_fd = int(argv[0])
    _die_with_parent()
    # one descriptor per connection and flow: take all the hard limit allows
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctl = socket.socket(fileno=ctl_fd)
    first, fds = _first_message(ctl)
    if not first or len(fds) != 1:
        return 1
    tap_fd = fds[0]

    def send(msg: dict) -> None:
        try:
            ctl.sendall((json.dumps(msg) + "\n").encode())
        except OSError:
            pass

    try:
        init = json.loads(first)
        config = _from_plain(NetworkConfig, init["config"])
        limits = Limits(**init.get("limits", {}))
        stack = Stack(tap_fd, config, lambda e: send({"event": e}), limits=limits)
        if init.get("sandbox_mac"):
            stack.link.learn_mac(bytes.fromhex(init["sandbox_mac"]))
    except Exception as exc:  # reported to attach(), which raises it
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    signal.signal(signal.SIGTERM, lambda *_: stack.stop())
    ctl.setblocking(False)
    pending = bytearray()

    def on_control(_mask: int) -> None:
        try:
            data = ctl.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            stack.stop()
            return
        pending.extend(data)
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            try:
                cmd = json.loads(line).get("cmd")
            except ValueError:
                continue
            if cmd == "stats":
                send({"stats": stack.snapshot()})
            elif cmd == "stop":
                stack.stop()

    stack.add_fd(ctl.fileno(), on_control)
    try:
        confine()
    except Exception as exc:
        send({"error": f"cannot confine the netstack: {exc}"})
        return 1
    if os.getppid() == 1:  # the supervisor died before PR_SET_PDEATHSIG was set again
        return 1
    send({"ready": True})
    stack.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
