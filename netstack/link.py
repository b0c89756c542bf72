"""The sandbox's side of the wire: writes IPv4 frames into the TAP device.

Every frame carries a virtio_net_hdr. TCP and UDP checksums are left to the kernel
(VIRTIO_NET_HDR_F_NEEDS_CSUM with the pseudo-header sum in the field), and TCP segments
larger than the peer's MSS go out as one GSO frame the kernel splits if it must.
"""

from __future__ import annotations

import os

from . import wire

GATEWAY_MAC = bytes.fromhex("525500000202")


class Link:
    """Frame writer bound to one TAP fd. `sandbox_mac` is learnt from the first frame."""

    def __init__(self, fd: int, gateway_ip: bytes, sandbox_ip: bytes,
                 sandbox_ip6: bytes = b"") -> None:
        self.fd = fd
        self.gateway_ip = gateway_ip
        self.sandbox_ip = sandbox_ip
        self.sandbox_ip6 = sandbox_ip6
        self.gateway_mac = GATEWAY_MAC
        self.sandbox_mac = wire.BROADCAST_MAC
        self._ident = 0
        self.frames_out = 0
        self.write_errors = 0
        self._eth = b""
        self._set_eth()

    def learn_mac(self, mac: bytes) -> None:
        """Take the sandbox's MAC from the first frame when the set-up did not give it;
        once known it is fixed (a frame with another source cannot redirect traffic)."""
        if self.sandbox_mac == wire.BROADCAST_MAC and not mac[0] & 1:
            self.sandbox_mac = bytes(mac)
            self._set_eth()

    def _set_eth(self) -> None:
        self._eth = wire.ETH_HDR.pack(self.sandbox_mac, self.gateway_mac, wire.ETH_IP4)
        self._eth6 = wire.ETH_HDR.pack(self.sandbox_mac, self.gateway_mac, wire.ETH_IP6)

    def _write(self, parts: list) -> None:
        try:
            os.writev(self.fd, parts)
            self.frames_out += 1
        except OSError:
            self.write_errors += 1  # queue full or device gone: the peer retransmits

    def send_raw(self, eth_type: int, dst_mac: bytes, body: bytes) -> None:
        self._write([wire.vnet_header(), wire.ETH_HDR.pack(dst_mac, self.gateway_mac, eth_type), body])

    def send_ip4(self, src: bytes, proto: int, l4_header: bytes, payload=None,
                 csum_offset: int = 0, gso_size: int = 0) -> None:
        """Send src -> sandbox. With csum_offset, the L4 checksum field must hold the
        pseudo-header sum; the kernel completes it."""
        plen = len(payload) if payload is not None else 0
        l4_len = len(l4_header) + plen
        self._ident = (self._ident + 1) & 0xFFFF
        ip = wire.ip4_header(src, self.sandbox_ip, proto, l4_len, self._ident)
        if gso_size and plen > gso_size:
            vh = wire.VNET_HDR.pack(wire.VNET_F_NEEDS_CSUM, wire.GSO_TCPV4,
                                    wire.ETH_LEN + 20 + len(l4_header), gso_size,
                                    wire.ETH_LEN + 20, csum_offset)
        elif csum_offset:
            vh = wire.VNET_HDR.pack(wire.VNET_F_NEEDS_CSUM, 0, 0, 0, wire.ETH_LEN + 20, csum_offset)
        else:
            vh = wire.VNET_HDR.pack(0, 0, 0, 0, 0, 0)
        head = vh + self._eth + ip + l4_header
        if plen:
            self._write([head, payload])
        else:
            self._write([head])

    def send_ip6(self, src: bytes, proto: int, l4_header: bytes, payload=None,
                 csum_offset: int = 0, gso_size: int = 0, dst: bytes = b"",
                 hop_limit: int = 64) -> None:
        """Send src -> sandbox (or `dst`) over IPv6; like send_ip4."""
        plen = len(payload) if payload is not None else 0
        l4_len = len(l4_header) + plen
        ip = wire.IP6_HDR.pack(0x60000000, l4_len, proto, hop_limit, src, dst or self.sandbox_ip6)
        start = wire.ETH_LEN + 40
        if gso_size and plen > gso_size:
            vh = wire.VNET_HDR.pack(wire.VNET_F_NEEDS_CSUM, wire.GSO_TCPV6,
                                    start + len(l4_header), gso_size, start, csum_offset)
        elif csum_offset:
            vh = wire.VNET_HDR.pack(wire.VNET_F_NEEDS_CSUM, 0, 0, 0, start, csum_offset)
        else:
            vh = wire.VNET_HDR.pack(0, 0, 0, 0, 0, 0)
        head = vh + self._eth6 + ip + l4_header
        self._write([head, payload] if plen else [head])

    def send_tcp(self, src: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
                 window: int, options: bytes = b"", payload=None, mss: int = 0) -> None:
        """A segment from `src` (4 or 16 bytes: the address family follows it)."""
        plen = len(payload) if payload is not None else 0
        hlen = 20 + len(options)
        if len(src) == 4:
            partial = wire.pseudo_sum4(src, self.sandbox_ip, wire.PROTO_TCP, hlen + plen)
        else:
            partial = wire.pseudo_sum6(src, self.sandbox_ip6, wire.PROTO_TCP, hlen + plen)
        hdr = wire.TCP_HDR.pack(sport, dport, seq, ack, ((hlen >> 2) << 12) | flags, window,
                                partial, 0) + options
        if len(src) == 4:
            self.send_ip4(src, wire.PROTO_TCP, hdr, payload, csum_offset=16, gso_size=mss)
        else:
            self.send_ip6(src, wire.PROTO_TCP, hdr, payload, csum_offset=16, gso_size=mss)

    def send_udp(self, src: bytes, sport: int, dport: int, payload: bytes) -> None:
        ln = 8 + len(payload)
        if len(src) == 4:
            partial = wire.pseudo_sum4(src, self.sandbox_ip, wire.PROTO_UDP, ln)
            self.send_ip4(src, wire.PROTO_UDP, wire.UDP_HDR.pack(sport, dport, ln, partial),
                          payload, csum_offset=6)
        else:
            partial = wire.pseudo_sum6(src, self.sandbox_ip6, wire.PROTO_UDP, ln)
            self.send_ip6(src, wire.PROTO_UDP, wire.UDP_HDR.pack(sport, dport, ln, partial),
                          payload, csum_offset=6)
