"""TCP between the sandbox and the netstack, each connection spliced to a host socket.

Outbound: the sandbox's SYN makes the stack check the egress policy and connect a real
host socket; the SYN-ACK goes back only once the host connect succeeded (so a refused or
denied destination is an RST, i.e. ECONNREFUSED in the sandbox). Published ports: an
accepted host connection makes the stack send a SYN into the sandbox.

What is implemented: handshake both ways, MSS and window scale options, sequence and
acknowledgement numbers, receive window from the buffer toward the host, the peer's
window for sending, retransmission (RTO with backoff, go-back-N; fast retransmit after
three duplicate ACKs), zero-window probes, FIN both ways (half close), RST both ways.
Out-of-order segments are dropped and re-ACKed (the link is a TAP device, reordering
does not happen on it). No timestamps or SACK. Nothing is kept for a closed connection.
"""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable

from . import wire
from .wire import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, seq_lt

M = wire.SEQ_MOD

CONNECTING, SYN_RCVD, SYN_SENT, ESTABLISHED = range(4)
STATE_NAMES = ("connecting", "syn-rcvd", "syn-sent", "established")

RCV_WSCALE = 7
RCV_BUF = 4 << 20  # most a connection buffers each way (sandbox->host pending, host->sandbox unacked)
BUF_FLOOR = 16 << 10  # the least buffer a connection gets, however many are open
SEG_MAX = 65000  # one frame's payload (a GSO frame when above the peer's MSS)
RTO_MIN = 0.2


@dataclass(frozen=True)
class Limits:
    """Bounds that keep hostile or vanished peers from holding resources."""

    max_conns: int = 4096  # beyond: new connections are reset
    rto_min: float = RTO_MIN
    rto_max: float = 10.0
    max_retries: int = 8  # retransmissions without progress before both ends are reset
    handshake_timeout: float = 20.0  # not established by then: reset
    buffer_budget: int = 128 << 20  # bytes buffered over all connections (each way), about
    closing_timeout: float = 60.0  # FIN sent or received, then silence: reset
EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT


class Conn:
    __slots__ = ("key", "sock", "fd", "state", "remote_ip", "rport", "sport", "iss", "snd_una",
                 "snd_nxt", "snd_wnd", "snd_wscale", "mss", "sndbuf", "host_eof", "fin_sent",
                 "rcv_nxt", "rcv_wscale", "pending", "rcvd_fin", "shut_wr", "rto", "deadline",
                 "retries", "dupacks", "created", "last_activity", "mask", "adv_wnd", "dest",
                 "peer_syn")

    def __init__(self, key: tuple, sock: socket.socket, remote_ip: bytes, rport: int,
                 sport: int, now: float) -> None:
        self.key = key
        self.sock = sock
        self.fd = sock.fileno()
        self.state = CONNECTING
        self.remote_ip = remote_ip  # the address the sandbox sees for the other end
        self.rport = rport
        self.sport = sport  # the sandbox's port
        self.iss = int.from_bytes(os.urandom(4), "big")
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.snd_wnd = 0
        self.snd_wscale = 0
        self.mss = 536
        self.sndbuf = bytearray()
        self.host_eof = False
        self.fin_sent = False
        self.rcv_nxt = 0
        self.rcv_wscale = 0
        self.pending = bytearray()
        self.rcvd_fin = False
        self.shut_wr = False
        self.rto = RTO_MIN
        self.deadline = 0.0
        self.retries = 0
        self.dupacks = 0
        self.created = now
        self.last_activity = now
        self.mask = 0
        self.adv_wnd = 0
        self.dest = ""
        self.peer_syn = 0


class Tcp:
    """All TCP connections of one sandbox link."""

    def __init__(self, link, epoll: select.epoll, fdmap: dict, limits: Limits = Limits()) -> None:
        self.link = link
        self.epoll = epoll
        self.fdmap = fdmap
        self.conns: dict[tuple, Conn] = {}
        self.limits = limits
        self.max_conns = limits.max_conns
        self.dirty: set[Conn] = set()  # owe the sandbox an ACK
        self.counters = {"opened": 0, "closed": 0, "refused": 0, "resets_sent": 0,
                         "retransmits": 0, "bad_segments": 0}
        self._next_port = 40000

    # -- frames from the sandbox ---------------------------------------------------------
    def segment(self, buf, off: int, end: int, src: bytes, dst: bytes,
                connect: Callable[[bytes, int, int], tuple[socket.socket | None, str]]) -> None:
        """One TCP segment buf[off:end] from src (the sandbox) to dst."""
        if end - off < 20:
            self.counters["bad_segments"] += 1
            return
        sport, dport, seq, ack, offflags, win, _c, _u = wire.TCP_HDR.unpack_from(buf, off)
        doff = (offflags >> 12) * 4
        if doff < 20 or off + doff > end:
            self.counters["bad_segments"] += 1
            return
        flags = offflags & 0x3F
        key = (sport, dst, dport)
        c = self.conns.get(key)
        plen = end - off - doff
        if c is None:
            if flags & TCP_RST:
                return
            if flags & TCP_SYN and not flags & TCP_ACK:
                self._new_outbound(key, buf, off, doff, src, dst, sport, dport, seq, win, connect)
                return
            # unknown connection: reset it (RFC 793 "CLOSED" state behaviour)
            if flags & TCP_ACK:
                self._rst(dst, dport, sport, ack, 0, TCP_RST)
            else:
                fin_syn = (1 if flags & TCP_FIN else 0) + (1 if flags & TCP_SYN else 0)
                self._rst(dst, dport, sport, 0, (seq + plen + fin_syn) & M, TCP_RST | TCP_ACK)
            return
        c.last_activity = time.monotonic()
        if flags & TCP_RST:
            if c.state == SYN_SENT:
                if flags & TCP_ACK and ack == (c.iss + 1) & M:
                    self.close(c)
                return
            # accept a reset whose sequence number is inside the window
            if seq == c.rcv_nxt or (seq_lt(c.rcv_nxt, seq) and seq_lt(seq, (c.rcv_nxt + RCV_BUF) & M)) \
                    or c.state == CONNECTING:
                self.close(c, reset_host=True)
            return
        if c.state == SYN_SENT:
            if flags & TCP_SYN and flags & TCP_ACK and ack == (c.iss + 1) & M:
                mss, ws = wire.parse_tcp_options(buf[off + 20:off + doff])
                c.rcv_nxt = (seq + 1) & M
                if ws is None:
                    c.rcv_wscale = 0  # scaling only when both sides offered it
                self._peer_options(c, mss, ws, win)
                c.snd_una = c.snd_nxt = ack
                c.state = ESTABLISHED
                self._ack(c)
                self._update_mask(c)
            return
        if flags & TCP_SYN:
            if c.state == SYN_RCVD and seq == c.peer_syn:
                self._send_synack(c)  # our SYN-ACK was lost
            elif c.state == ESTABLISHED:
                self.dirty.add(c)
            return
        if c.state == CONNECTING:
            return
        if not flags & TCP_ACK:
            return
        # -- acknowledgement -------------------------------------------------------------
        if c.state == SYN_RCVD:
            if ack != (c.iss + 1) & M:
                self._rst(dst, dport, sport, ack, 0, TCP_RST)
                return
            c.state = ESTABLISHED
            c.snd_una = c.snd_nxt = ack
            c.deadline = 0.0
            c.retries = 0
            self._update_mask(c)
        self._on_ack(c, ack, win, plen == 0 and not flags & TCP_FIN)
        if c.key not in self.conns:
            return
        # -- data ------------------------------------------------------------------------
        if plen or flags & TCP_FIN:
            self._on_data(c, buf, off + doff, plen, seq, flags & TCP_FIN)
        if c.key in self.conns:
            self._push(c)
            self._maybe_finish(c)

    def _peer_options(self, c: Conn, mss: int | None, ws: int | None, win: int) -> None:
        c.mss = max(64, min(mss or 536, 65495))
        if ws is not None:
            c.snd_wscale = ws
            c.rcv_wscale = RCV_WSCALE
        c.snd_wnd = win  # a SYN's window is never scaled

    def _new_outbound(self, key, buf, off, doff, src, dst, sport, dport, seq, win, connect) -> None:
        if len(self.conns) >= self.max_conns:
            self.counters["refused"] += 1
            self._rst(dst, dport, sport, 0, (seq + 1) & M, TCP_RST | TCP_ACK)
            return
        sock, why = connect(dst, dport, sport)
        if sock is None:
            self.counters["refused"] += 1
            self._rst(dst, dport, sport, 0, (seq + 1) & M, TCP_RST | TCP_ACK)
            return
        now = time.monotonic()
        c = Conn(key, sock, dst, dport, sport, now)
        c.rto = self.limits.rto_min
        c.dest = why
        c.peer_syn = seq
        c.rcv_nxt = (seq + 1) & M
        mss, ws = wire.parse_tcp_options(buf[off + 20:off + doff])
        self._peer_options(c, mss, ws, win)
        self.conns[key] = c
        self.fdmap[c.fd] = (self.host_ready, c)
        c.mask = EPOLLOUT
        self.epoll.register(c.fd, EPOLLOUT)
        c.deadline = now + self.limits.handshake_timeout
        self.counters["opened"] += 1

    def _on_ack(self, c: Conn, ack: int, win: int, pure: bool) -> None:
        new_wnd = win << c.snd_wscale
        una = c.snd_una
        if ack != una and seq_lt(una, ack) and wire.seq_le(ack, c.snd_nxt):
            n = (ack - una) & M
            data_acked = min(n, len(c.sndbuf))
            del c.sndbuf[:data_acked]
            c.snd_una = ack
            c.dupacks = 0
            c.retries = 0
            c.rto = self.limits.rto_min
            c.deadline = time.monotonic() + c.rto if c.snd_nxt != ack else 0.0
            if not c.host_eof and len(c.sndbuf) < self._cap():
                self._update_mask(c)
        elif ack == una and pure and c.snd_nxt != una and new_wnd == c.snd_wnd:
            c.dupacks += 1
            if c.dupacks == 3:
                self._retransmit(c)
        c.snd_wnd = new_wnd

    def _on_data(self, c: Conn, buf, start: int, plen: int, seq: int, fin: int) -> None:
        if c.rcvd_fin:
            self.dirty.add(c)
            return
        skip = (c.rcv_nxt - seq) & M
        if skip and not (skip < plen or (skip == plen and fin)):
            self.dirty.add(c)  # old or out-of-order: repeat our ACK
            return
        if not skip or skip < plen:
            data = memoryview(buf)[start + skip:start + plen]
            room = max(0, self._cap() - len(c.pending))
            if len(data) > room:
                data = data[:room]
                fin = 0
            if data:
                if not c.pending and not c.shut_wr:
                    try:
                        sent = c.sock.send(data)
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        data.release()
                        self.abort(c)
                        return
                    if sent < len(data):
                        c.pending += data[sent:]
                        self._update_mask(c)
                else:
                    c.pending += data
                c.rcv_nxt = (c.rcv_nxt + len(data)) & M
            data.release()
        if fin:
            c.rcv_nxt = (c.rcv_nxt + 1) & M
            c.rcvd_fin = True
            if not c.pending:
                self._shut_host(c)
        self.dirty.add(c)

    def _shut_host(self, c: Conn) -> None:
        if not c.shut_wr:
            c.shut_wr = True
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    # -- frames to the sandbox ------------------------------------------------------------
    def _cap(self) -> int:
        """Each connection's share of the buffer budget, per direction: 4 MiB for a few
        connections, down to 16 KiB each when thousands are open, so the total stays
        near the budget whatever the sandbox opens."""
        return max(BUF_FLOOR, min(RCV_BUF, self.limits.buffer_budget // max(1, len(self.conns))))

    def _window(self, c: Conn) -> int:
        avail = max(0, self._cap() - len(c.pending))
        c.adv_wnd = avail
        return min(avail >> c.rcv_wscale, 0xFFFF)

    def _ack(self, c: Conn) -> None:
        self.link.send_tcp(c.remote_ip, c.rport, c.sport, c.snd_nxt, c.rcv_nxt, TCP_ACK,
                           self._window(c))
        self.dirty.discard(c)

    def _send_synack(self, c: Conn) -> None:
        opts = wire.tcp_options(65495, RCV_WSCALE if c.rcv_wscale else None)
        self.link.send_tcp(c.remote_ip, c.rport, c.sport, c.iss, c.rcv_nxt, TCP_SYN | TCP_ACK,
                           min(RCV_BUF, 0xFFFF), opts)

    def _rst(self, src: bytes, sport: int, dport: int, seq: int, ack: int, flags: int) -> None:
        self.counters["resets_sent"] += 1
        self.link.send_tcp(src, sport, dport, seq, ack, flags, 0)

    def _push(self, c: Conn) -> None:
        """Send what the peer's window allows, then the FIN once the host side ended."""
        if c.state != ESTABLISHED or c.fin_sent:
            return
        inflight = (c.snd_nxt - c.snd_una) & M
        unsent = len(c.sndbuf) - inflight
        room = c.snd_wnd - inflight
        sent_any = False
        if unsent > 0 and room > 0:
            mv = memoryview(c.sndbuf)
            try:
                while unsent > 0 and room > 0:
                    n = min(unsent, room, SEG_MAX)
                    self.link.send_tcp(c.remote_ip, c.rport, c.sport, c.snd_nxt, c.rcv_nxt,
                                       TCP_ACK | TCP_PSH, self._window(c), b"",
                                       mv[inflight:inflight + n], c.mss)
                    c.snd_nxt = (c.snd_nxt + n) & M
                    inflight += n
                    unsent -= n
                    room -= n
                    sent_any = True
            finally:
                mv.release()
        if c.host_eof and unsent == 0:
            self.link.send_tcp(c.remote_ip, c.rport, c.sport, c.snd_nxt, c.rcv_nxt,
                               TCP_ACK | TCP_FIN, self._window(c))
            c.snd_nxt = (c.snd_nxt + 1) & M
            c.fin_sent = True
            sent_any = True
        if sent_any:
            self.dirty.discard(c)
            if not c.deadline:
                c.deadline = time.monotonic() + c.rto
        elif unsent > 0 and c.snd_wnd == 0 and not c.deadline:
            c.deadline = time.monotonic() + c.rto  # persist timer: probe the zero window

    def _retransmit(self, c: Conn) -> None:
        """Go back to the first unacknowledged byte and send again."""
        self.counters["retransmits"] += 1
        c.snd_nxt = c.snd_una
        if c.fin_sent:
            c.fin_sent = False
        if c.snd_wnd == 0 and len(c.sndbuf):
            # zero-window probe: one byte past the window
            mv = memoryview(c.sndbuf)
            self.link.send_tcp(c.remote_ip, c.rport, c.sport, c.snd_nxt, c.rcv_nxt, TCP_ACK,
                               self._window(c), b"", mv[:1])
            mv.release()
            c.snd_nxt = (c.snd_nxt + 1) & M
        else:
            self._push(c)

    def flush_acks(self) -> None:
        for c in tuple(self.dirty):
            if c.key in self.conns:
                self._ack(c)
        self.dirty.clear()

    # -- host sockets --------------------------------------------------------------------
    def host_ready(self, c: Conn, mask: int) -> None:
        if c.key not in self.conns:
            return
        c.last_activity = time.monotonic()
        if c.state == CONNECTING:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.counters["refused"] += 1
                self._rst(c.remote_ip, c.rport, c.sport, 0, c.rcv_nxt, TCP_RST | TCP_ACK)
                self.close(c)
                return
            c.state = SYN_RCVD
            c.deadline = time.monotonic() + c.rto
            self._send_synack(c)
            c.snd_nxt = (c.iss + 1) & M
            self._update_mask(c)
            return
        if mask & EPOLLOUT and c.pending:
            try:
                sent = c.sock.send(c.pending)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.abort(c)
                return
            before = c.adv_wnd
            del c.pending[:sent]
            if not c.pending and c.rcvd_fin:
                self._shut_host(c)
            cap = self._cap()
            if before < cap // 4 and cap - len(c.pending) >= cap // 4:
                self._ack(c)  # window update
            self._update_mask(c)
        if mask & (EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and not c.host_eof \
                and c.state == ESTABLISHED:
            space = self._cap() - len(c.sndbuf)
            if space > 0:
                try:
                    data = c.sock.recv(min(space, 262144))
                except BlockingIOError:
                    return
                except OSError:
                    self.abort(c)
                    return
                if data:
                    c.sndbuf += data
                else:
                    c.host_eof = True
                self._push(c)
                self._update_mask(c)
                self._maybe_finish(c)

    def _update_mask(self, c: Conn) -> None:
        if c.key not in self.conns:
            return
        want = 0
        if c.state == CONNECTING:
            want = EPOLLOUT
        elif c.state in (ESTABLISHED, SYN_RCVD, SYN_SENT):
            if c.state == ESTABLISHED and not c.host_eof and len(c.sndbuf) < self._cap():
                want |= EPOLLIN
            if c.pending:
                want |= EPOLLOUT
        if want != c.mask:
            # an fd with nothing wanted leaves the epoll set: EPOLLHUP would still wake us
            if not want:
                self.epoll.unregister(c.fd)
            elif not c.mask:
                self.epoll.register(c.fd, want)
            else:
                self.epoll.modify(c.fd, want)
            c.mask = want

    def _maybe_finish(self, c: Conn) -> None:
        if c.rcvd_fin and c.fin_sent and c.snd_una == c.snd_nxt and not c.pending:
            self.close(c)

    # -- published ports (the stack opens the connection into the sandbox) ---------------
    def open_inbound(self, sock: socket.socket, sandbox_port: int) -> None:
        if len(self.conns) >= self.max_conns:
            sock.close()
            return
        for _ in range(25000):
            self._next_port = 40000 + (self._next_port - 39999) % 25000
            key = (sandbox_port, self.link.gateway_ip, self._next_port)
            if key not in self.conns:
                break
        else:
            sock.close()
            return
        sock.setblocking(False)
        now = time.monotonic()
        c = Conn(key, sock, self.link.gateway_ip, self._next_port, sandbox_port, now)
        c.rto = self.limits.rto_min
        c.state = SYN_SENT
        c.rcv_wscale = RCV_WSCALE
        c.snd_nxt = (c.iss + 1) & M
        self.conns[key] = c
        self.fdmap[c.fd] = (self.host_ready, c)
        c.deadline = now + c.rto
        self.counters["opened"] += 1
        self._send_syn(c)

    def _send_syn(self, c: Conn) -> None:
        self.link.send_tcp(c.remote_ip, c.rport, c.sport, c.iss, 0, TCP_SYN, 0xFFFF,
                           wire.tcp_options(65495, RCV_WSCALE))

    # -- timers and teardown ------------------------------------------------------------
    def tick(self, now: float) -> None:
        lim = self.limits
        for c in tuple(self.conns.values()):
            if now - c.created > lim.handshake_timeout and c.state != ESTABLISHED:
                self.abort(c)
                continue
            if (c.rcvd_fin or c.fin_sent) and now - c.last_activity > lim.closing_timeout:
                self.abort(c)
                continue
            if c.deadline and now >= c.deadline:
                if c.retries >= lim.max_retries:
                    self.abort(c)
                    continue
                c.retries += 1
                c.rto = min(c.rto * 2, lim.rto_max)
                c.deadline = now + c.rto
                if c.state == SYN_RCVD:
                    self._send_synack(c)
                elif c.state == SYN_SENT:
                    self._send_syn(c)
                elif c.state == ESTABLISHED:
                    if c.snd_nxt != c.snd_una or (c.snd_wnd == 0 and c.sndbuf):
                        self._retransmit(c)
                    else:
                        c.deadline = 0.0
                        c.retries = 0

    def abort(self, c: Conn) -> None:
        """Reset both ends."""
        if c.key in self.conns and c.state != CONNECTING:
            self._rst(c.remote_ip, c.rport, c.sport, c.snd_nxt, c.rcv_nxt, TCP_RST | TCP_ACK)
        self.close(c, reset_host=True)

    def close(self, c: Conn, reset_host: bool = False) -> None:
        if self.conns.pop(c.key, None) is None:
            return
        self.counters["closed"] += 1
        self.dirty.discard(c)
        self.fdmap.pop(c.fd, None)
        if c.mask:
            try:
                self.epoll.unregister(c.fd)
            except (OSError, ValueError):
                pass
            c.mask = 0
        if reset_host:
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            except OSError:
                pass
        c.sock.close()
        c.sndbuf = bytearray()
        c.pending = bytearray()

    def states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.conns.values():
            name = STATE_NAMES[c.state]
            out[name] = out.get(name, 0) + 1
        return out

    def close_all(self) -> None:
        for c in tuple(self.conns.values()):
            self.abort(c)


__all__ = ["Tcp", "Conn", "Limits", "STATE_NAMES"]
