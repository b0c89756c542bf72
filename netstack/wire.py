"""Frame formats the netstack reads and writes: virtio_net_hdr, Ethernet, ARP, IPv4, TCP, UDP.

Everything here is pure functions over bytes; no state. Addresses are kept as packed
bytes (4 for IPv4, 16 for IPv6) inside the stack and turned into text only at the edges.

Checksums use the fact that the ones'-complement sum of 16-bit words equals the number's
value modulo 0xFFFF (2**16 == 1 mod 0xFFFF), so `int.from_bytes(..) % 0xFFFF` computes it
in C, not in a Python loop.
"""

from __future__ import annotations

import struct

# -- virtio_net_hdr (linux/virtio_net.h), the 10-byte header IFF_VNET_HDR puts before frames
VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_LEN = VNET_HDR.size
VNET_F_NEEDS_CSUM = 1  # the checksum field holds only the pseudo-header sum
VNET_F_DATA_VALID = 2  # the checksum was verified already
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_ECN = 0x80

ETH_LEN = 14
ETH_IP4 = 0x0800
ETH_ARP = 0x0806
ETH_IP6 = 0x86DD
ETH_HDR = struct.Struct("!6s6sH")

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

IP4_HDR = struct.Struct("!BBHHHBBH4s4s")  # ver_ihl tos len id frag ttl proto csum src dst
IP6_HDR = struct.Struct("!IHBB16s16s")  # ver_class_flow payload_len next_header hop_limit src dst
PROTO_ICMP6 = 58
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
ICMP6_NEIGHBOR_SOLICIT = 135
ICMP6_NEIGHBOR_ADVERT = 136
TCP_HDR = struct.Struct("!HHIIHHHH")  # sport dport seq ack off_flags window csum urg
UDP_HDR = struct.Struct("!HHHH")
ARP_PKT = struct.Struct("!HHBBH6s4s6s4s")

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

SEQ_MOD = 0xFFFFFFFF

BROADCAST_MAC = b"\xff" * 6


def csum_sum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """Ones'-complement sum of `data` (big-endian 16-bit words) plus `start`, folded to
    0..0xFFFE (0 standing for both zeros)."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    return (int.from_bytes(data, "big") + start) % 0xFFFF


def csum_field(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The value to store in a checksum field (the complement of the sum)."""
    s = csum_sum(data, start)
    return 0xFFFF - s if s else 0


def pseudo_sum4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    return int.from_bytes(src + dst + bytes((0, proto)) + length.to_bytes(2, "big"), "big") % 0xFFFF


def pseudo_sum6(src: bytes, dst: bytes, proto: int, length: int) -> int:
    return (int.from_bytes(src + dst + length.to_bytes(4, "big") + bytes((0, 0, 0, proto)), "big")
            % 0xFFFF)


def ip4_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int = 0,
               ttl: int = 64) -> bytes:
    hdr = bytearray(IP4_HDR.pack(0x45, 0, 20 + payload_len, ident & 0xFFFF, 0x4000, ttl, proto,
                                 0, src, dst))
    c = csum_sum(hdr)
    hdr[10:12] = ((0xFFFF - c) if c else 0).to_bytes(2, "big")
    return bytes(hdr)


def vnet_header(csum_start: int = 0, csum_offset: int = 0, gso_type: int = GSO_NONE,
                hdr_len: int = 0, gso_size: int = 0) -> bytes:
    flags = VNET_F_NEEDS_CSUM if csum_offset else 0
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def tcp_options(mss: int | None = None, wscale: int | None = None) -> bytes:
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", 2, 4, mss)
    if wscale is not None:
        out += struct.pack("!BBBB", 1, 3, 3, wscale)  # NOP + window scale
    while len(out) % 4:
        out += b"\x01"
    return out


def parse_tcp_options(opts: bytes | memoryview) -> tuple[int | None, int | None]:
    """(mss, wscale) from a SYN's options; malformed options end the parse."""
    mss = wscale = None
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            break
        ln = opts[i + 1]
        if ln < 2 or i + ln > n:
            break
        if kind == 2 and ln == 4:
            mss = (opts[i + 2] << 8) | opts[i + 3]
        elif kind == 3 and ln == 3:
            wscale = min(opts[i + 2], 14)
        i += ln
    return mss, wscale


def seq_lt(a: int, b: int) -> bool:
    return ((a - b) & SEQ_MOD) > 0x7FFFFFFF


def seq_le(a: int, b: int) -> bool:
    return a == b or seq_lt(a, b)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
