"""The netstack under hostile traffic: malformed frames, bad checksums, SYN floods,
half-open and half-closed connections, and a soak of thousands of connections. It must
never crash and must hold nothing for a closed connection."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

from _helpers_net import PY, EgressRule, TcpEcho, config, netstack, wait_for
from sandboxctl.netstack.tcp import Limits

FRAMES = os.path.join(os.path.dirname(__file__), "_helpers_net_frames.py")
CHECK = """
import socket
s = socket.create_connection(("10.0.2.2", {port}), timeout=5); s.sendall(b"ok"); print(s.recv(10).decode())
"""


def _inject(ns, kind: str, count: int, port: int, seed: int = 7) -> int:
    r = subprocess.run(ns.cmd([PY, FRAMES, kind, str(seed), str(count), str(port)]),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_malformed_frames_are_dropped_and_stack_survives():
    echo = TcpEcho()
    with netstack(config([EgressRule(cidr="127.0.0.1/32", ports=(echo.port,))])) as (ns, h, _e):
        sent = _inject(ns, "bad", 3000, echo.port)
        assert sent == 3000
        assert ns.py(CHECK.format(port=echo.port)).stdout.split() == ["echo:ok"]
        st = h.stats()
        assert h.alive()
        drops = st["drops"]
        for why in ("bad ip checksum", "bad l4 checksum", "fragment", "spoofed source",
                    "bad udp length", "bad icmp checksum", "protocol", "ipv6 next header"):
            assert drops.get(why, 0) > 0, (why, drops)
        assert st["tcp"]["bad_segments"] > 0 and st["tcp"]["resets_sent"] > 0
        # every bad frame was recognised as such: none reached an exception handler
        assert not [k for k in drops if k.startswith(("error", "malformed"))], drops
        # a SYN with a bad checksum never reached the host: only valid SYNs were connected
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0)
    echo.close()


def test_mutated_frames_reach_the_parsers_and_are_handled():
    """Valid frames of each kind with random bytes changed and checksums redone, so the
    damage gets past the checksum checks into the ARP/IPv4/IPv6/TCP/UDP/DNS/ICMP code."""
    echo = TcpEcho()
    rule = EgressRule(cidr="127.0.0.1/32", ports=(echo.port,))
    with netstack(config([rule], dns=["127.0.0.1:9"])) as (ns, h, _e):
        for seed in (1, 2, 3):
            _inject(ns, "mutate", 1500, echo.port, seed)
        assert ns.py(CHECK.format(port=echo.port)).stdout.split() == ["echo:ok"]
        st = h.stats()
        assert h.alive() and st["frames_in"] > 4000, st
        assert not [k for k in st["drops"] if k.startswith(("error", "malformed"))], st["drops"]
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0, timeout=10)
    echo.close()


def test_syn_flood_is_bounded_and_cleaned_up():
    echo = TcpEcho()
    limits = Limits(max_conns=256)
    from sandboxctl.netstack.setup import attach
    from _helpers_net import Netns

    ns = Netns()
    events: list = []
    h = attach(config([EgressRule(cidr="127.0.0.1/32", ports=(echo.port,))]), ns.pid, events.append,
               limits=limits)
    try:
        _inject(ns, "synflood", 2000, echo.port)          # allowed port: host connects, sandbox resets
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0, timeout=10)
        t0 = time.monotonic()
        _inject(ns, "synflood", 2000, echo.port + 1, 8)   # denied port: reset, rate-limited events
        took = time.monotonic() - t0
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0, timeout=10)
        st = h.stats()
        assert st["tcp"]["refused"] > 0  # denied ones, and the ones above max_conns
        assert st["fds"] == 1  # only the control channel is left in the loop
        # one event per destination per second, not one per SYN
        assert wait_for(lambda: [e for e in events if e["port"] == echo.port + 1])
        assert len([e for e in events if e["port"] == echo.port + 1]) <= took + 2
        assert ns.py(CHECK.format(port=echo.port)).stdout.split() == ["echo:ok"]
        assert h.alive()
    finally:
        h.close()
        ns.close()
        echo.close()


def _talker():
    """A host server that sends a line every 50 ms after accepting: its data keeps coming
    after the sandbox has gone silent."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    ended: list[str] = []

    def run():
        c, _ = srv.accept()
        c.recv(10)
        c.sendall(b"hello\n")
        try:
            for _ in range(400):
                time.sleep(0.05)
                c.sendall(b"more\n")
            ended.append("still open")
        except OSError as exc:
            ended.append(type(exc).__name__)

    threading.Thread(target=run, daemon=True).start()
    return srv, ended


def test_half_open_peer_that_vanished_is_reset():
    srv, ended = _talker()
    port = srv.getsockname()[1]
    limits = Limits(rto_min=0.05, max_retries=4)
    from sandboxctl.netstack.setup import attach
    from _helpers_net import Netns

    ns = Netns()
    h = attach(config([EgressRule(cidr="127.0.0.1/32")]), ns.pid, None, limits=limits)
    try:
        # connect, then take the sandbox's link down: it can neither answer nor reset
        ns.py(f"""
import socket, subprocess
s = socket.create_connection(("10.0.2.2", {port}), timeout=5); s.sendall(b"x"); s.recv(6)
subprocess.run(["ip", "link", "set", "eth0", "down"], check=True)
""")
        assert wait_for(lambda: ended, timeout=15)
        assert ended[0] in ("ConnectionResetError", "BrokenPipeError")
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0)
    finally:
        h.close()
        ns.close()
        srv.close()


def test_half_closed_connection_times_out():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    keep = []
    threading.Thread(target=lambda: keep.append(srv.accept()), daemon=True).start()
    from sandboxctl.netstack.setup import attach
    from _helpers_net import Netns

    ns = Netns()
    h = attach(config([EgressRule(cidr="127.0.0.1/32")]), ns.pid, None,
               limits=Limits(closing_timeout=1.0))
    try:
        # the sandbox sends FIN, the host never closes; the sandbox then goes away silently
        ns.py(f"""
import socket, subprocess
s = socket.create_connection(("10.0.2.2", {port}), timeout=5); s.shutdown(socket.SHUT_WR)
import time; time.sleep(0.2)
subprocess.run(["ip", "link", "set", "eth0", "down"], check=True)
""")
        assert h.stats()["tcp_connections"] == 1
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0, timeout=10)
    finally:
        h.close()
        ns.close()
        srv.close()


def test_soak_thousands_of_connections_leave_nothing_behind():
    echo = TcpEcho()
    with netstack(config([EgressRule(cidr="127.0.0.1/32", ports=(echo.port,))])) as (ns, h, _e):
        code = f"""
import socket, threading
errors = []
def worker(n):
    for i in range(n):
        try:
            s = socket.create_connection(("10.0.2.2", {echo.port}), timeout=10)
            s.sendall(b"%d" % i)
            assert s.recv(100) == b"echo:%d" % i
            s.close()
        except Exception as exc:
            errors.append(repr(exc))
ts = [threading.Thread(target=worker, args=(N,)) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(errors), errors[:3])
"""
        r = ns.py(code.replace("N,", "125,"), timeout=120)  # 1000 connections to warm up
        assert r.stdout.startswith("0 ")
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0)
        rss_before = _rss_kb(h.pid)
        r = ns.py(code.replace("N,", "375,"), timeout=120)  # 3000 more
        assert r.stdout.startswith("0 "), r.stdout
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0)
        st = h.stats()
        assert st["tcp"]["opened"] == st["tcp"]["closed"] == 4000
        assert st["fds"] == 1
        grown = _rss_kb(h.pid) - rss_before
        assert grown < 4096, f"netstack RSS grew by {grown} KiB over 3000 connections"
        assert echo.accepted == 4000
    echo.close()


def test_udp_flood_is_bounded():
    from sandboxctl.netstack.stack import MAX_UDP_FLOWS

    # every port of 127.0.0.1 is allowed: each datagram to a new port opens a host socket
    with netstack(config([EgressRule(cidr="127.0.0.1/32", protocol="udp")])) as (ns, h, events):
        # (the TAP queue drops what the stack cannot take at once: send until it is full)
        for i in range(6):
            _inject(ns, "udpflood", 600, 20000 + 600 * i)
            if wait_for(lambda: h.stats()["drops"].get("udp flows full"), timeout=2):
                break
        st = h.stats()
        assert st["drops"].get("udp flows full", 0) > 0 and st["udp_flows"] == MAX_UDP_FLOWS, st
        assert st["fds"] == MAX_UDP_FLOWS + 1
        assert h.alive() and events == []


def test_out_of_descriptors_refuses_instead_of_crashing():
    """With a descriptor limit of 48, a SYN flood to an allowed port runs the netstack out
    of sockets: it refuses those connections and keeps serving."""
    import json
    import resource

    echo = TcpEcho()
    code = f"""
import json, sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
import test_net_robust as T
from _helpers_net import Netns, EgressRule, config, wait_for
from sandboxctl.netstack.setup import attach
ns = Netns()
h = attach(config([EgressRule(cidr="127.0.0.1/32", ports=({echo.port},))]), ns.pid)
try:
    T._inject(ns, "synflood", 600, {echo.port})
    wait_for(lambda: h.stats()["tcp_connections"] == 0, timeout=10)
    ok = ns.py(T.CHECK.format(port={echo.port})).stdout.split()
    wait_for(lambda: h.stats()["tcp_connections"] == 0, timeout=10)  # the check's, closing
    print(json.dumps({{"stats": h.stats(), "alive": h.alive(), "check": ok}}))
finally:
    h.close(); ns.close()
"""
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["alive"] and out["check"] == ["echo:ok"]
    assert out["stats"]["drops"].get("no socket", 0) > 0, out["stats"]
    assert out["stats"]["tcp_connections"] == 0
    echo.close()


def test_link_outage_recovers_by_retransmission():
    """The sandbox's link goes down for a moment mid-transfer (frames are lost both ways):
    the netstack retransmits and the stream arrives intact."""
    import hashlib

    data = os.urandom(1 << 20) * 8
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        c, _ = srv.accept()
        with c:
            c.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    with netstack(config([EgressRule(cidr="127.0.0.1/32")])) as (ns, h, _e):
        r = ns.py(f"""
import socket, subprocess, time, hashlib
s = socket.create_connection(("10.0.2.2", {srv.getsockname()[1]}), timeout=30)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
got = bytearray(s.recv(1 << 16))
subprocess.run(["ip", "link", "set", "eth0", "down"], check=True)
time.sleep(0.8)
got += s.recv(1 << 20)   # whatever was already queued
subprocess.run(["ip", "link", "set", "eth0", "up"], check=True)
while True:
    d = s.recv(1 << 20)
    if not d: break
    got += d
print(len(got), hashlib.sha256(got).hexdigest())
""", timeout=60)
        n, digest = r.stdout.split()
        assert int(n) == len(data) and digest == hashlib.sha256(data).hexdigest()
        st = h.stats()
        assert st["tcp"]["retransmits"] > 0 and st["write_errors"] > 0, st
    srv.close()


def test_netstack_dies_with_its_supervisor():
    """Nothing runs unsupervised: SIGKILL the process that attached, the netstack goes."""
    import signal

    code = f"""
import sys, time
sys.path.insert(0, {os.path.dirname(__file__)!r})
from _helpers_net import Netns, config
from sandboxctl.netstack.setup import attach
ns = Netns()
h = attach(config(), ns.pid)
print(h.pid, ns.pid, flush=True)
time.sleep(60)
"""
    sup = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
    stack_pid, ns_pid = map(int, sup.stdout.readline().split())
    try:
        assert os.path.exists(f"/proc/{stack_pid}")
        sup.send_signal(signal.SIGKILL)
        sup.wait()

        def gone() -> bool:
            try:
                with open(f"/proc/{stack_pid}/stat") as f:
                    return f.read().split(")")[1].split()[0] == "Z"
            except FileNotFoundError:
                return True

        assert wait_for(gone, timeout=5)
    finally:
        os.kill(ns_pid, signal.SIGKILL)
