"""IPv6 on the sandbox link: the addresses (a unique-local /64 that exists only inside the
sandbox's namespace), and the ICMPv6 the gateway must answer (neighbor discovery, echo).

The gateway's IPv6 address is the host's IPv6 loopback (::1), as the IPv4 gateway is
127.0.0.1; every other destination goes through the egress rules like IPv4.
"""

from __future__ import annotations

import ipaddress
import struct

from . import wire

SANDBOX6 = "fd00:10:0:2::100/64"
GATEWAY6 = "fd00:10:0:2::2"
HOST_LOOPBACK6 = "::1"

NA_ROUTER = 0x80000000
NA_SOLICITED = 0x40000000
NA_OVERRIDE = 0x20000000


def packed(addr: str) -> bytes:
    return ipaddress.ip_interface(addr).ip.packed


def icmp6_message(src: bytes, dst: bytes, body: bytes) -> bytes:
    """`body` (type, code, zero checksum, rest) with its checksum filled in."""
    msg = bytearray(body)
    msg[2:4] = b"\0\0"
    c = wire.csum_field(msg, wire.pseudo_sum6(src, dst, wire.PROTO_ICMP6, len(msg)))
    msg[2:4] = c.to_bytes(2, "big")
    return bytes(msg)


def neighbor_advert(gateway: bytes, gateway_mac: bytes, to: bytes) -> bytes:
    """A solicited neighbor advertisement for `gateway`, as a router, with its MAC."""
    body = (struct.pack("!BBHI", wire.ICMP6_NEIGHBOR_ADVERT, 0, 0,
                        NA_ROUTER | NA_SOLICITED | NA_OVERRIDE)
            + gateway + bytes((2, 1)) + gateway_mac)  # option 2: target link-layer address
    return icmp6_message(gateway, to, body)


def solicited_target(msg: bytes | memoryview) -> bytes | None:
    """The target address of a neighbor solicitation, or None when `msg` is not one."""
    if len(msg) < 24 or msg[0] != wire.ICMP6_NEIGHBOR_SOLICIT or msg[1] != 0:
        return None
    return bytes(msg[8:24])
