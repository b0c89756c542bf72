"""The user-space network stack: one epoll loop over the TAP fd, the host sockets and the
control channel. Frames from the sandbox are parsed here (Ethernet, ARP, IPv4, ICMP, UDP)
and TCP segments are handed to tcp.Tcp.

The gateway address is the host: connections to it go to the host's loopback
(127.0.0.1), and the egress rules are applied to that real destination. UDP to the
gateway's port 53 is the DNS forwarder. IPv6 works the same way (ipv6.py): the IPv6
gateway is the host's ::1; TCP and UDP key connections by packed addresses of either size.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import time
from struct import error as struct_error
from dataclasses import dataclass, field
from typing import Callable

from ..engine.plan import NetworkConfig, Source
from . import dns, ipv6, wire
from .egress import EgressPolicy
from .link import Link
from .tcp import Limits, Tcp

HOST_LOOPBACK = "127.0.0.1"
UDP_IDLE = 60.0
MAX_UDP_FLOWS = 1024
READ_BATCH = 64
FRAME_BUF = 65536 + 4096
DNS_TIMEOUT = 5.0
MAX_DNS_PENDING = 256
REPORT_EVERY = 1.0  # at most one refusal event per destination per second


def _source_dict(src: Source | None) -> dict | None:
    if src is None:
        return None
    return {"file": src.file, "line": src.line, "col": src.col, "text": src.text}


@dataclass
class UdpFlow:
    sock: socket.socket
    sport: int  # sandbox port
    remote_ip: bytes  # as the sandbox addressed it
    rport: int
    last: float


@dataclass
class PublishedFlow:
    listener: socket.socket  # the published host socket
    client: tuple  # the host client's address
    sandbox_port: int
    key: tuple
    last: float


@dataclass
class Stats:
    frames_in: int = 0
    drops: dict = field(default_factory=dict)

    def drop(self, why: str) -> None:
        self.drops[why] = self.drops.get(why, 0) + 1


class Stack:
    """Runs until stop() or the TAP device goes away."""

    def __init__(self, tap_fd: int, config: NetworkConfig, emit: Callable[[dict], None],
                 upstream_dns: list[tuple[str, int]] | None = None,
                 limits: Limits = Limits()) -> None:
        self.config = config
        self.emit = emit
        iface = ipaddress.ip_interface(config.address)
        self.sandbox_ip = iface.ip.packed
        self.gateway_ip = ipaddress.ip_address(config.gateway).packed
        self.sandbox_ip6 = ipv6.packed(ipv6.SANDBOX6)
        self.gateway_ip6 = ipv6.packed(ipv6.GATEWAY6)
        self.tap_fd = tap_fd
        os.set_blocking(tap_fd, False)
        self.link = Link(tap_fd, self.gateway_ip, self.sandbox_ip, self.sandbox_ip6)
        self.epoll = select.epoll()
        self.fdmap: dict[int, tuple] = {}
        self.tcp = Tcp(self.link, self.epoll, self.fdmap, limits)
        self.policy = EgressPolicy(config.egress)
        self.stats = Stats()
        self.udp: dict[tuple, UdpFlow] = {}
        self.dns_pending: dict[int, tuple] = {}  # upstream id -> (sandbox port, orig id, name, t)
        self.upstream = upstream_dns if upstream_dns is not None else host_nameservers(config)
        self.dns_sock: socket.socket | None = None
        self.names: dict[str, str] = {}  # address -> name the sandbox resolved it from
        self.reported: dict[tuple, float] = {}
        self.listeners: list[socket.socket] = []
        self.udp_pub: dict[int, PublishedFlow] = {}  # gateway port -> host client
        self.udp_pub_clients: dict[tuple, int] = {}
        self._next_udp_port = 40000
        self._running = True
        self._buf = bytearray(FRAME_BUF)
        self._view = memoryview(self._buf)
        self.epoll.register(tap_fd, select.EPOLLIN)
        self._open_listeners()

    # -- set-up ---------------------------------------------------------------------------
    def _open_listeners(self) -> None:
        for rule in self.config.publish:
            fam = socket.AF_INET6 if ":" in rule.host_addr else socket.AF_INET
            kind = socket.SOCK_STREAM if rule.protocol == "tcp" else socket.SOCK_DGRAM
            s = socket.socket(fam, kind)
            if kind == socket.SOCK_STREAM:  # (on UDP it would let two sandboxes share a port)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((rule.host_addr, rule.host_port))
            except OSError as exc:
                s.close()
                where = f" at {rule.source.where()}" if rule.source else ""
                raise RuntimeError(
                    f"cannot listen on {rule.host_addr}:{rule.host_port} ({rule.protocol}) for the "
                    f"publish rule{where}: {exc.strerror}; choose another host port") from None
            s.setblocking(False)
            self.listeners.append(s)
            if rule.protocol == "tcp":
                s.listen(128)
                self.fdmap[s.fileno()] = (self._accept, (s, rule.sandbox_port))
            else:
                self.fdmap[s.fileno()] = (self._udp_published, (s, rule.sandbox_port))
            self.epoll.register(s.fileno(), select.EPOLLIN)

    def add_fd(self, fd: int, callback: Callable[[int], None]) -> None:
        """Watch another fd (the control channel) from the loop."""
        self.fdmap[fd] = (lambda _obj, mask: callback(mask), None)
        self.epoll.register(fd, select.EPOLLIN)

    # -- the loop -------------------------------------------------------------------------
    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        last_tick = time.monotonic()
        tap = self.tap_fd
        fdmap = self.fdmap
        while self._running:
            try:
                events = self.epoll.poll(0.1)
            except InterruptedError:
                continue
            for fd, mask in events:
                if fd == tap:
                    if mask & (select.EPOLLHUP | select.EPOLLERR):
                        self._running = False
                        break
                    self._read_tap()
                else:
                    entry = fdmap.get(fd)
                    if entry is not None:
                        try:
                            entry[0](entry[1], mask)
                        except Exception as exc:  # one socket's trouble must not stop the rest
                            self.stats.drop(f"error: {type(exc).__name__}")
            if self.tcp.dirty:
                self.tcp.flush_acks()
            now = time.monotonic()
            if now - last_tick >= 0.05:
                last_tick = now
                self.tcp.tick(now)
                self._expire(now)
        self.close()

    def close(self) -> None:
        self.tcp.close_all()
        for flow in self.udp.values():
            flow.sock.close()
        self.udp.clear()
        for s in self.listeners:
            s.close()
        if self.dns_sock is not None:
            self.dns_sock.close()
        self.epoll.close()

    def _read_tap(self) -> None:
        buf = self._buf
        for _ in range(READ_BATCH):
            try:
                n = os.readv(self.tap_fd, [buf])
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EBADFD, errno.EIO, errno.ENODEV):
                    self._running = False
                    return
                raise
            self.stats.frames_in += 1
            try:
                self.frame(buf, n)
            except (ValueError, IndexError, struct_error) as exc:
                self.stats.drop(f"malformed: {type(exc).__name__}")
            except Exception as exc:  # never die on a frame; count it
                self.stats.drop(f"error: {type(exc).__name__}")

    # -- frames ---------------------------------------------------------------------------
    def frame(self, buf, n: int) -> None:
        if n < wire.VNET_LEN + wire.ETH_LEN:
            self.stats.drop("short")
            return
        vflags = buf[0]
        e = wire.VNET_LEN
        etype = (buf[e + 12] << 8) | buf[e + 13]
        ip = e + wire.ETH_LEN
        if etype == wire.ETH_IP4:
            self.link.learn_mac(buf[e + 6:e + 12])
            self._ip4(buf, ip, n, vflags)
        elif etype == wire.ETH_ARP:
            self._arp(buf, ip, n)
        elif etype == wire.ETH_IP6:
            self._ip6(buf, ip, n, vflags)
        else:
            self.stats.drop("ethertype")

    def _ip4(self, buf, ip: int, n: int, vflags: int) -> None:
        if n - ip < 20:
            self.stats.drop("short ip")
            return
        vihl = buf[ip]
        ihl = (vihl & 0x0F) * 4
        total = (buf[ip + 2] << 8) | buf[ip + 3]
        if vihl >> 4 != 4 or ihl < 20 or total < ihl or ip + total > n:
            self.stats.drop("bad ip header")
            return
        if wire.csum_sum(buf[ip:ip + ihl]) != 0:
            self.stats.drop("bad ip checksum")
            return
        frag = ((buf[ip + 6] << 8) | buf[ip + 7])
        if frag & 0x3FFF:  # MF set or an offset: fragments are not reassembled
            self.stats.drop("fragment")
            return
        src = bytes(buf[ip + 12:ip + 16])
        dst = bytes(buf[ip + 16:ip + 20])
        if src != self.sandbox_ip:
            self.stats.drop("spoofed source")
            return
        proto = buf[ip + 9]
        l4 = ip + ihl
        end = ip + total
        if not vflags & (wire.VNET_F_NEEDS_CSUM | wire.VNET_F_DATA_VALID) and \
                (proto == wire.PROTO_TCP or proto == wire.PROTO_UDP):
            # the checksum is complete: verify it (frames the kernel sends use offload)
            if proto == wire.PROTO_UDP and end - l4 >= 8 and buf[l4 + 6] == 0 and buf[l4 + 7] == 0:
                pass  # UDP without checksum
            elif wire.csum_sum(buf[l4:end], wire.pseudo_sum4(src, dst, proto, end - l4)) != 0:
                self.stats.drop("bad l4 checksum")
                return
        if proto == wire.PROTO_TCP:
            self.tcp.segment(buf, l4, end, src, dst, self._connect_tcp)
        elif proto == wire.PROTO_UDP:
            self._udp(buf, l4, end, dst)
        elif proto == wire.PROTO_ICMP:
            self._icmp(buf, l4, end, dst)
        else:
            self.stats.drop("protocol")

    def _ip6(self, buf, ip: int, n: int, vflags: int) -> None:
        if n - ip < 40 or buf[ip] >> 4 != 6:
            self.stats.drop("bad ipv6 header")
            return
        plen = (buf[ip + 4] << 8) | buf[ip + 5]
        nh = buf[ip + 6]
        l4 = ip + 40
        end = l4 + plen
        if end > n:
            self.stats.drop("bad ipv6 header")
            return
        src = bytes(buf[ip + 8:ip + 24])
        dst = bytes(buf[ip + 24:ip + 40])
        if nh == wire.PROTO_ICMP6:
            self._icmp6(buf, l4, end, src, dst)
            return
        if nh != wire.PROTO_TCP and nh != wire.PROTO_UDP:
            self.stats.drop("ipv6 next header")  # extension headers included
            return
        if src != self.sandbox_ip6:
            self.stats.drop("spoofed source")
            return
        if not vflags & (wire.VNET_F_NEEDS_CSUM | wire.VNET_F_DATA_VALID):
            if wire.csum_sum(buf[l4:end], wire.pseudo_sum6(src, dst, nh, end - l4)) != 0:
                self.stats.drop("bad l4 checksum")
                return
        if nh == wire.PROTO_TCP:
            self.tcp.segment(buf, l4, end, src, dst, self._connect_tcp)
        else:
            self._udp(buf, l4, end, dst)

    def _icmp6(self, buf, off: int, end: int, src: bytes, dst: bytes) -> None:
        msg = bytes(buf[off:end])
        if len(msg) < 8 or wire.csum_sum(msg, wire.pseudo_sum6(src, dst, wire.PROTO_ICMP6, len(msg))):
            self.stats.drop("bad icmp checksum")
            return
        target = ipv6.solicited_target(msg)
        if target is not None:
            if target == self.gateway_ip6 and src != bytes(16):
                na = ipv6.neighbor_advert(self.gateway_ip6, self.link.gateway_mac, src)
                self.link.send_ip6(self.gateway_ip6, wire.PROTO_ICMP6, na, dst=src, hop_limit=255)
            return
        if msg[0] == wire.ICMP6_ECHO_REQUEST and dst == self.gateway_ip6:
            reply = ipv6.icmp6_message(dst, src, bytes((wire.ICMP6_ECHO_REPLY, 0)) + msg[2:])
            self.link.send_ip6(dst, wire.PROTO_ICMP6, reply, dst=src)
            return
        self.stats.drop("icmp6")  # router solicitations, MLD reports, ...

    def _arp(self, buf, off: int, n: int) -> None:
        if n - off < wire.ARP_PKT.size:
            self.stats.drop("short arp")
            return
        htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = wire.ARP_PKT.unpack_from(buf, off)
        if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4 or op != 1:
            self.stats.drop("arp")
            return
        if tpa != self.gateway_ip or spa != self.sandbox_ip:
            return
        self.link.learn_mac(sha)
        reply = wire.ARP_PKT.pack(1, 0x0800, 6, 4, 2, self.link.gateway_mac, self.gateway_ip,
                                  sha, spa)
        self.link.send_raw(wire.ETH_ARP, sha, reply)

    def _icmp(self, buf, off: int, end: int, dst: bytes) -> None:
        if end - off < 8 or buf[off] != 8 or dst != self.gateway_ip:
            self.stats.drop("icmp")
            return
        if wire.csum_sum(buf[off:end]) != 0:
            self.stats.drop("bad icmp checksum")
            return
        msg = bytearray(buf[off:end])
        msg[0] = 0  # echo reply
        msg[2:4] = b"\0\0"
        msg[2:4] = wire.csum_field(msg).to_bytes(2, "big")
        self.link.send_ip4(dst, wire.PROTO_ICMP, bytes(msg))

    # -- egress ---------------------------------------------------------------------------
    def _real_dest(self, dst: bytes) -> str:
        if len(dst) == 16:
            return ipv6.HOST_LOOPBACK6 if dst == self.gateway_ip6 else socket.inet_ntop(socket.AF_INET6, dst)
        return HOST_LOOPBACK if dst == self.gateway_ip else socket.inet_ntoa(dst)

    def _allowed(self, dst: bytes, port: int, proto: str) -> str | None:
        """The host address to use, or None (and an event) when the rules refuse it."""
        real = self._real_dest(dst)
        verdict = self.policy.decide(real, port, proto)
        if verdict.allowed:
            return real
        key = (real, port, proto)
        now = time.monotonic()
        if now - self.reported.get(key, -REPORT_EVERY) >= REPORT_EVERY:
            if len(self.reported) > 4096:
                self.reported.clear()
            self.reported[key] = now
            self.emit({
                "time": time.time(), "kind": "network", "action": "deny", "dest": real,
                "port": port, "protocol": proto, "host": self.names.get(real),
                "sandbox_dest": str(ipaddress.ip_address(dst)),
                "rule": None,
                "near": _source_dict(verdict.near.source) if verdict.near else None,
                "default": _source_dict(self.config.source),
            })
        return None

    def _connect_tcp(self, dst: bytes, port: int, _sport: int):
        real = self._allowed(dst, port, "tcp")
        if real is None:
            return None, ""
        try:
            s = socket.socket(socket.AF_INET6 if len(dst) == 16 else socket.AF_INET, socket.SOCK_STREAM)
        except OSError:  # out of descriptors: refuse, as a full host would
            self.stats.drop("no socket")
            return None, ""
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex((real, port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            return None, ""
        return s, f"{real}:{port}"

    # -- UDP --------------------------------------------------------------------------------
    def _udp(self, buf, off: int, end: int, dst: bytes) -> None:
        if end - off < 8:
            self.stats.drop("short udp")
            return
        sport, dport, ln, _c = wire.UDP_HDR.unpack_from(buf, off)
        if ln < 8 or off + ln > end:
            self.stats.drop("bad udp length")
            return
        payload = bytes(buf[off + 8:off + ln])
        if dst == self.gateway_ip:
            if dport == 53:
                self._dns_query(sport, payload)
                return
            pub = self.udp_pub.get(dport)
            if pub is not None and pub.sandbox_port == sport:
                pub.last = time.monotonic()
                try:
                    pub.listener.sendto(payload, pub.client)
                except OSError:
                    self.stats.drop("udp send")
                return
        key = (sport, dst, dport)
        flow = self.udp.get(key)
        if flow is None:
            if len(self.udp) >= MAX_UDP_FLOWS:
                self.stats.drop("udp flows full")
                return
            real = self._allowed(dst, dport, "udp")
            if real is None:
                return
            try:
                s = socket.socket(socket.AF_INET6 if len(dst) == 16 else socket.AF_INET, socket.SOCK_DGRAM)
            except OSError:
                self.stats.drop("no socket")
                return
            s.setblocking(False)
            try:
                s.connect((real, dport))
            except OSError:
                s.close()
                return
            flow = UdpFlow(s, sport, dst, dport, time.monotonic())
            self.udp[key] = flow
            self.fdmap[s.fileno()] = (self._udp_ready, flow)
            self.epoll.register(s.fileno(), select.EPOLLIN)
        flow.last = time.monotonic()
        try:
            flow.sock.send(payload)
        except OSError:
            self.stats.drop("udp send")

    def _udp_ready(self, flow: UdpFlow, _mask: int) -> None:
        for _ in range(16):
            try:
                data = flow.sock.recv(65507)
            except BlockingIOError:
                return
            except OSError:
                return  # ICMP errors from the host side: the sandbox just sees silence
            flow.last = time.monotonic()
            self.link.send_udp(flow.remote_ip, flow.rport, flow.sport, data)

    def _expire(self, now: float) -> None:
        for key, flow in tuple(self.udp.items()):
            if now - flow.last > UDP_IDLE:
                self._drop_flow(key)
        for port, pub in tuple(self.udp_pub.items()):
            if now - pub.last > UDP_IDLE:
                del self.udp_pub[port]
                self.udp_pub_clients.pop(pub.key, None)
        for ident, entry in tuple(self.dns_pending.items()):
            if now - entry[3] > DNS_TIMEOUT:
                del self.dns_pending[ident]

    def _drop_flow(self, key: tuple) -> None:
        flow = self.udp.pop(key)
        self.fdmap.pop(flow.sock.fileno(), None)
        self.epoll.unregister(flow.sock.fileno())
        flow.sock.close()

    # -- published UDP ports: each host client gets a gateway port of its own ------------
    def _udp_published(self, entry: tuple, _mask: int) -> None:
        listener, sandbox_port = entry
        for _ in range(16):
            try:
                data, client = listener.recvfrom(65507)
            except (BlockingIOError, OSError):
                return
            key = (listener.fileno(), client)
            port = self.udp_pub_clients.get(key)
            if port is None:
                if len(self.udp_pub) >= MAX_UDP_FLOWS:
                    self.stats.drop("udp publish flows")
                    continue
                port = self._udp_pub_port()
                self.udp_pub[port] = PublishedFlow(listener, client, sandbox_port, key, time.monotonic())
                self.udp_pub_clients[key] = port
            flow = self.udp_pub[port]
            flow.last = time.monotonic()
            self.link.send_udp(self.gateway_ip, port, sandbox_port, data)

    def _udp_pub_port(self) -> int:
        while True:
            self._next_udp_port = 40000 + (self._next_udp_port - 39999) % 25000
            if self._next_udp_port not in self.udp_pub:
                return self._next_udp_port

    # -- DNS forwarder ------------------------------------------------------------------------
    def _dns_query(self, sport: int, msg: bytes) -> None:
        try:
            q = dns.parse_question(msg)
        except dns.DnsError:
            self.stats.drop("bad dns query")
            return
        if not self.policy.may_resolve(q.name):
            # a name no rule could use: answering would only open a channel out (DNS
            # tunnelling) under a default-deny policy
            self._dns_reply(sport, dns.failure(msg, q, dns.RCODE_REFUSED))
            self._dns_event(q.name, [], "refused")
            return
        if not self.upstream or len(self.dns_pending) >= MAX_DNS_PENDING:
            self._dns_reply(sport, dns.failure(msg, q))
            self._dns_event(q.name, [], "servfail")
            return
        if self.dns_sock is None:
            self.dns_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.dns_sock.setblocking(False)
            self.fdmap[self.dns_sock.fileno()] = (self._dns_ready, None)
            self.epoll.register(self.dns_sock.fileno(), select.EPOLLIN)
        ident = int.from_bytes(os.urandom(2), "big")
        while ident in self.dns_pending:
            ident = (ident + 1) & 0xFFFF
        self.dns_pending[ident] = (sport, q.ident, q.name, time.monotonic(), msg, q)
        out = ident.to_bytes(2, "big") + msg[2:]
        for server in self.upstream:
            try:
                self.dns_sock.sendto(out, server)
            except OSError:
                continue

    def _dns_ready(self, _obj, _mask: int) -> None:
        assert self.dns_sock is not None
        for _ in range(16):
            try:
                data, addr = self.dns_sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                return
            if len(data) < 12 or addr not in self.upstream:
                continue
            entry = self.dns_pending.pop(int.from_bytes(data[:2], "big"), None)
            if entry is None:
                continue
            sport, orig_id, name, _t, _msg, _q = entry
            try:
                _qname, answers = dns.parse_answers(data)
            except dns.DnsError:
                answers = []
            for a in answers:
                if len(self.names) > 65536:
                    self.names.clear()
                self.names[a] = name.rstrip(".").lower()
            self.policy.bind(name, answers)
            self._dns_event(name, answers, "answer")
            if HOST_LOOPBACK in answers:
                # the host's loopback is the gateway address, seen from the sandbox
                try:
                    data = dns.rewrite_a(data, socket.inet_aton(HOST_LOOPBACK), self.gateway_ip)
                except dns.DnsError:
                    pass
            self._dns_reply(sport, orig_id.to_bytes(2, "big") + data[2:])

    def _dns_reply(self, sport: int, msg: bytes) -> None:
        self.link.send_udp(self.gateway_ip, 53, sport, msg)

    def _dns_event(self, name: str, answers: list[str], result: str) -> None:
        self.emit({"time": time.time(), "kind": "dns", "name": name, "answers": answers,
                   "result": result, "rule": None})

    # -- published ports ------------------------------------------------------------------
    def _accept(self, entry: tuple, _mask: int) -> None:
        listener, sandbox_port = entry
        for _ in range(16):
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, OSError):
                return
            self.tcp.open_inbound(sock, sandbox_port)

    # -- introspection ---------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {
            "frames_in": self.stats.frames_in, "frames_out": self.link.frames_out,
            "drops": dict(self.stats.drops), "tcp": dict(self.tcp.counters),
            "tcp_connections": len(self.tcp.conns), "tcp_states": self.tcp.states(),
            "tcp_buffered": sum(len(c.pending) + len(c.sndbuf) for c in self.tcp.conns.values()), "udp_flows": len(self.udp), "udp_published_flows": len(self.udp_pub),
            "dns_pending": len(self.dns_pending), "fds": len(self.fdmap),
            "write_errors": self.link.write_errors, "sandbox_mac": wire.mac_text(self.link.sandbox_mac),
        }


def host_nameservers(config: NetworkConfig) -> list[tuple[str, int]]:
    """The forwarder's upstream servers: the profile's `dns` list ("addr" or "addr:port"),
    else the host's /etc/resolv.conf."""
    out: list[tuple[str, int]] = []
    entries = list(config.dns)
    if not entries:
        try:
            with open("/etc/resolv.conf") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver" and "." in parts[1]:
                        entries.append(parts[1])
        except OSError:
            pass
    for e in entries:
        host, _, port = e.rpartition(":") if e.count(":") == 1 else (e, "", "")
        out.append((host, int(port)) if port else (e, 53))
    return out

__all__ = ["Stack", "host_nameservers"]
