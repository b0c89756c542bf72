"""netstack mode: a client in the sandbox reaches servers on the host's loopback when the
egress rules allow it; refused otherwise, with an event; publish rules; UDP, DNS, ICMP."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

import pytest

from _helpers_net import (EgressRule, PublishRule, TcpEcho, UdpEcho, config, free_port,
                          netstack, src, wait_for)
from sandboxctl.netstack import dns


def test_tcp_allowed_and_refused_with_event():
    echo, other = TcpEcho(), TcpEcho()
    rule = EgressRule(cidr="127.0.0.1/32", ports=(echo.port,), protocol="tcp", source=src(12, "- cidr"))
    with netstack(config([rule])) as (ns, handle, events):
        out = ns.py(f"""
import socket
s = socket.create_connection(("10.0.2.2", {echo.port}), timeout=5)
s.sendall(b"hello"); print(s.recv(100).decode())
try:
    socket.create_connection(("10.0.2.2", {other.port}), timeout=5)
    print("CONNECTED")
except ConnectionRefusedError:
    print("REFUSED")
""").stdout.split()
        assert out == ["echo:hello", "REFUSED"]
        assert other.accepted == 0 and echo.accepted == 1
        ev = wait_for(lambda: [e for e in events if e["kind"] == "network"])
        assert len(ev) == 1
        e = ev[0]
        assert (e["dest"], e["port"], e["protocol"], e["rule"]) == ("127.0.0.1", other.port, "tcp", None)
        # the rule that named the address but not the port, and the network section
        assert e["near"]["line"] == 12 and e["default"]["line"] == 30
        assert wait_for(lambda: handle.stats()["tcp_connections"] == 0)  # both closed by now
    echo.close(), other.close()


def test_default_deny_and_unreachable_destination():
    echo = TcpEcho()
    with netstack(config([])) as (ns, _h, events):
        r = ns.py(f"""
import socket
for port in ({echo.port}, 1):
    try:
        socket.create_connection(("10.0.2.2", port), timeout=5); print("CONNECTED")
    except ConnectionRefusedError:
        print("REFUSED")
""")
        assert r.stdout.split() == ["REFUSED", "REFUSED"]
        assert echo.accepted == 0
        assert {e["port"] for e in wait_for(lambda: events if len(events) == 2 else None)} == {echo.port, 1}
    with netstack(config([EgressRule(cidr="127.0.0.0/8")])) as (ns, _h, events):
        port = free_port()  # allowed, but nothing listens: the host's refusal is passed on
        r = ns.py(f"""
import socket
try:
    socket.create_connection(("10.0.2.2", {port}), timeout=5); print("CONNECTED")
except ConnectionRefusedError:
    print("REFUSED")
""")
        assert r.stdout.split() == ["REFUSED"] and events == []
    echo.close()


def test_host_name_rule_binds_resolved_addresses():
    echo = TcpEcho()
    # "localhost" resolves to 127.0.0.1 on the host: the rule allows exactly that address
    rule = EgressRule(host="localhost", ports=(echo.port,), source=src(14))
    with netstack(config([rule])) as (ns, _h, events):
        r = ns.py(f"""
import socket
s = socket.create_connection(("10.0.2.2", {echo.port}), timeout=5); s.sendall(b"x"); print(s.recv(10).decode())
""")
        assert r.stdout.split() == ["echo:x"] and events == []
    echo.close()


@pytest.mark.parametrize("mtu", [65520, 1500])  # at 1500, both directions use GSO/TSO frames
def test_large_transfer_both_directions_is_intact(mtu):
    echo = TcpEcho()
    with netstack(config([EgressRule(cidr="127.0.0.1/32")], mtu=mtu)) as (ns, handle, _e):
        r = ns.py(f"""
import socket, hashlib, threading, os
data = os.urandom(1 << 20) * 24          # 24 MiB up, echoed back down
s = socket.create_connection(("10.0.2.2", {echo.port}), timeout=20)
t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
t.start()
got = bytearray()
while True:
    d = s.recv(1 << 20)
    if not d: break
    got += d
t.join()
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(bytes(got[5:])).hexdigest(), len(got) - 5)
""", timeout=60)
        a, b, n = r.stdout.split()
        assert a == b and int(n) == 24 << 20
        # the offloads work: the kernel hands over large frames and takes large ones back
        # (24 MiB each way in MTU-sized frames would be >17000 frames per direction at 1500)
        st = handle.stats()
        assert st["frames_in"] < (24 << 20) // 8000 and st["frames_out"] < (24 << 20) // 8000, st
    echo.close()


def test_publish_reaches_server_in_sandbox():
    port = free_port()
    rule = PublishRule(host_addr="127.0.0.1", host_port=port, sandbox_port=8080, source=src(20))
    with netstack(config(publish=[rule])) as (ns, handle, _e):
        server = ns.popen("""
import socket, hashlib
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 8080)); l.listen(); print("ready", flush=True)
for _ in range(2):
    c, addr = l.accept()
    got = bytearray()
    while True:
        d = c.recv(1 << 16)
        if not d: break
        got += d
    c.sendall(hashlib.sha256(got).hexdigest().encode() + b" " + addr[0].encode()); c.close()
""")
        assert server.stdout.readline().strip() == "ready"
        payload = bytes(range(256)) * 40000  # ~10 MB into the sandbox
        for data in (b"hi", payload):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(data)
                c.shutdown(socket.SHUT_WR)
                reply = b""
                while True:
                    d = c.recv(4096)
                    if not d:
                        break
                    reply += d
            digest, peer = reply.decode().split()
            assert digest == hashlib.sha256(data).hexdigest()
            assert peer == "10.0.2.2"  # the sandbox sees connections from the gateway
        server.wait(timeout=10)
        assert wait_for(lambda: handle.stats()["tcp_connections"] == 0)


def test_publish_to_closed_sandbox_port_is_closed_on_host():
    port = free_port()
    with netstack(config(publish=[PublishRule("127.0.0.1", port, 9, source=src(21))])) as (_ns, h, _e):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.settimeout(5)
            try:
                assert c.recv(10) == b""
            except ConnectionResetError:
                pass
        assert wait_for(lambda: h.stats()["tcp_connections"] == 0)


def test_udp_allowed_and_refused():
    echo = UdpEcho()
    denied = UdpEcho()
    with netstack(config([EgressRule(cidr="127.0.0.1/32", ports=(echo.port,), protocol="udp")])) as (ns, h, events):
        r = ns.py(f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.sendto(b"ping", ("10.0.2.2", {echo.port})); print(s.recvfrom(100)[0].decode())
s.sendto(b"ping", ("10.0.2.2", {denied.port}))
try:
    s.recvfrom(100); print("ANSWERED")
except socket.timeout:
    print("SILENT")
# a TCP connection to the UDP-only rule's port is refused too
try:
    socket.create_connection(("10.0.2.2", {echo.port}), timeout=3)
except ConnectionRefusedError:
    print("TCP-REFUSED")
""")
        assert r.stdout.split() == ["udp:ping", "SILENT", "TCP-REFUSED"]
        ev = wait_for(lambda: events if len(events) == 2 else None)
        assert [(e["port"], e["protocol"]) for e in ev] == [(denied.port, "udp"), (echo.port, "tcp")]
        assert h.stats()["udp_flows"] == 1
    echo.close(), denied.close()


def _dns_server(names: dict[str, list[str]]):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                msg, addr = s.recvfrom(4096)
            except OSError:
                return
            q = dns.parse_question(msg)
            if q.name in names:
                s.sendto(dns.answer(msg, names[q.name]), addr)
            else:
                s.sendto(dns.failure(msg, q, 3), addr)

    threading.Thread(target=serve, daemon=True).start()
    return s


def test_dns_forwarder_records_and_binds_names():
    echo = TcpEcho()
    upstream = _dns_server({"svc.internal.test": ["127.0.0.1"], "other.test": ["127.0.0.9"]})
    up = f"127.0.0.1:{upstream.getsockname()[1]}"
    rule = EgressRule(host="svc.internal.test", ports=(echo.port,), source=src(16))
    with netstack(config([rule], dns=[up])) as (ns, _h, events):
        # the test's namespace shares the host's /etc/resolv.conf: ask the forwarder directly
        r = ns.py(f"""
import socket, sys
from sandboxctl.netstack import dns
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(dns.query("svc.internal.test"), ("10.0.2.2", 53))
name, answers = dns.parse_answers(s.recv(4096)); print(answers[0])
c = socket.create_connection((answers[0], {echo.port}), timeout=5); c.sendall(b"n"); print(c.recv(10).decode())
s.sendto(dns.query("other.test"), ("10.0.2.2", 53))
print(s.recv(4096)[3] & 15)
try:
    socket.create_connection((answers[0], {echo.port + 1}), timeout=5)
except ConnectionRefusedError:
    print("REFUSED")
""")
        # other.test: no rule names it, so it is not resolved at all (REFUSED, rcode 5)
        assert r.stdout.split() == ["10.0.2.2", "echo:n", "5", "REFUSED"]
        refused = [e for e in events if e["kind"] == "network"]
        assert len(refused) == 1 and refused[0]["host"] == "svc.internal.test"
        assert refused[0]["near"]["line"] == 16
        recorded = [(e["name"], e["answers"]) for e in events if e["kind"] == "dns"]
        assert ("svc.internal.test", ["127.0.0.1"]) in recorded
        assert ("other.test", []) in recorded
        assert [e["result"] for e in events if e["kind"] == "dns"] == ["answer", "refused"]
    # with a rule for any address, every name is forwarded (and NXDOMAIN comes from upstream)
    with netstack(config([EgressRule(cidr="0.0.0.0/0", ports=(443,))], dns=[up])) as (ns, _h, events):
        r = ns.py(f"""
import socket, sys
from sandboxctl.netstack import dns
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
for name in ("other.test", "nosuch.test"):
    s.sendto(dns.query(name), ("10.0.2.2", 53)); m = s.recv(4096)
    print(m[3] & 15, dns.parse_answers(m)[1])
""")
        assert r.stdout.splitlines() == ["0 ['127.0.0.9']", "3 []"]
    upstream.close(), echo.close()


def test_icmp_echo_to_gateway():
    with netstack(config()) as (ns, _h, _e):
        r = ns.py("""
import socket, struct, os
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(3)
body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"payload"
body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
s.sendto(body, ("10.0.2.2", 0))
reply = s.recv(1000)
ihl = (reply[0] & 15) * 4
t, _c, _s, ident, seq = struct.unpack("!BBHHH", reply[ihl:ihl + 8])
print(t, hex(ident), seq, reply[ihl + 8:].decode(), csum(reply[ihl:]))
""")
        assert r.stdout.split() == ["0", "0x4242", "1", "payload", "0"]


def test_resolv_conf_points_at_gateway():
    from sandboxctl.netstack.setup import resolv_conf

    assert resolv_conf(config()).splitlines()[0] == "nameserver 10.0.2.2"


def test_attach_to_missing_process_fails_cleanly():
    from sandboxctl.engine.errors import SandboxctlError
    from sandboxctl.netstack.setup import attach

    with pytest.raises(SandboxctlError):
        attach(config(), 2 ** 22 + 12345)


def test_netstack_process_is_confined():
    with netstack(config()) as (_ns, handle, _e):
        status = {}
        with open(f"/proc/{handle.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.split()
        assert status["Uid"] == ["65534"] * 4 and status["Gid"] == ["65534"] * 4
        assert int(status["CapEff"][0], 16) == 0 and int(status["CapPrm"][0], 16) == 0
        assert status["NoNewPrivs"] == ["1"] and status["Seccomp"] == ["2"]
        # only the TAP device, the control socket, epoll and std streams are open
        fds = os.listdir(f"/proc/{handle.pid}/fd")
        targets = sorted(os.readlink(f"/proc/{handle.pid}/fd/{fd}").split(":")[0] for fd in fds)
        assert "/dev/net/tun" in targets and len(fds) <= 6, targets
        assert handle.stats()["tcp_connections"] == 0  # and it still works


def test_publish_udp_and_busy_host_port():
    port = free_port()
    rule = PublishRule("127.0.0.1", port, 5300, protocol="udp", source=src(22))
    with netstack(config(publish=[rule])) as (ns, handle, _e):
        server = ns.popen("""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5300)); print("ready", flush=True)
for _ in range(2):
    d, a = s.recvfrom(100); s.sendto(b"sbx:" + d + b" from " + a[0].encode(), a)
""")
        assert server.stdout.readline().strip() == "ready"
        replies = []
        for msg in (b"one", b"two"):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(5)
            c.sendto(msg, ("127.0.0.1", port))
            replies.append(c.recv(100))
            c.close()
        assert replies == [b"sbx:one from 10.0.2.2", b"sbx:two from 10.0.2.2"]
        assert handle.stats()["udp_published_flows"] == 2
        server.wait(timeout=5)
        # the same host port again, for a second sandbox: refused with the rule's place
        from sandboxctl.engine.errors import SandboxctlError
        from sandboxctl.netstack.setup import attach
        from _helpers_net import Netns

        other = Netns()
        try:
            with pytest.raises(SandboxctlError) as err:
                attach(config(publish=[rule]), other.pid)
            assert f"127.0.0.1:{port}" in str(err.value) and "net-test.yaml:22:7" in str(err.value)
        finally:
            other.close()


def test_ipv6_tcp_udp_icmp_through_the_gateway():
    """IPv6: the gateway fd00:10:0:2::2 is the host's ::1; rules apply to ::1."""
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def serve():
        c, _ = srv.accept()
        with c:
            c.sendall(b"v6:" + c.recv(10))

    threading.Thread(target=serve, daemon=True).start()
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.bind(("::1", 0))
    threading.Thread(target=lambda: (lambda d, a: u.sendto(b"u6:" + d, a))(*u.recvfrom(100)),
                     daemon=True).start()
    rules = [EgressRule(cidr="::1/128", ports=(port,), protocol="tcp", source=src(40)),
             EgressRule(cidr="::1/128", ports=(u.getsockname()[1],), protocol="udp", source=src(41))]
    with netstack(config(rules)) as (ns, _h, events):
        r = ns.py(f"""
import socket
gw = "fd00:10:0:2::2"
s = socket.create_connection((gw, {port}), timeout=5); s.sendall(b"hi"); print(s.recv(10).decode())
try:
    socket.create_connection((gw, {port + 1}), timeout=5); print("CONNECTED")
except ConnectionRefusedError:
    print("REFUSED")
d = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); d.settimeout(3)
d.sendto(b"x", (gw, {u.getsockname()[1]})); print(d.recv(10).decode())
p = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); p.settimeout(3)
p.sendto(bytes([128, 0, 0, 0, 0, 7, 0, 1]) + b"ping6", (gw, 0))   # the kernel fills the checksum
while True:
    m = p.recv(100)
    if m[0] == 129: break
print(m[0], m[8:].decode())
""")
        assert r.stdout.split() == ["v6:hi", "REFUSED", "u6:x", "129", "ping6"]
        ev = [e for e in events if e["kind"] == "network"]
        assert [(e["dest"], e["port"], e["sandbox_dest"]) for e in ev] == [("::1", port + 1, "fd00:10:0:2::2")]
        assert ev[0]["near"]["line"] == 40
    srv.close(), u.close()
