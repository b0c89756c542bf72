"""Hostile traffic from inside the sandbox's namespace, sent with an AF_PACKET socket on the
TAP device (so the kernel passes the frames to the netstack exactly as written).

    python _helpers_net_frames.py bad SEED COUNT ALLOWED_PORT   # malformed frames
    python _helpers_net_frames.py synflood SEED COUNT PORT      # SYNs from random ports
    python _helpers_net_frames.py udpflood SEED COUNT PORT      # datagrams to COUNT ports
    python _helpers_net_frames.py mutate SEED COUNT PORT        # valid frames, bytes changed

Prints the number of frames sent. Frames go to the gateway only (inside the namespace).
"""

from __future__ import annotations

import random
import socket
import struct
import sys

from sandboxctl.netstack import dns, wire

SANDBOX = socket.inet_aton("10.0.2.100")
GATEWAY = socket.inet_aton("10.0.2.2")
GW_MAC = bytes.fromhex("525500000202")


def _my_mac() -> bytes:
    # SIOCGIFHWADDR on a socket of this namespace (/sys may belong to another one)
    import fcntl
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s.fileno(), 0x8927, struct.pack("256s", b"eth0"))
    return ifr[18:24]


def eth(payload: bytes, etype: int = 0x0800, src: bytes = b"") -> bytes:
    return wire.ETH_HDR.pack(GW_MAC, src or MY_MAC, etype) + payload


def ip4(proto: int, l4: bytes, src: bytes = SANDBOX, dst: bytes = GATEWAY, frag: int = 0x4000) -> bytes:
    hdr = bytearray(wire.IP4_HDR.pack(0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0, src, dst))
    hdr[10:12] = wire.csum_field(hdr).to_bytes(2, "big")
    return bytes(hdr) + l4


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, opts: bytes = b"",
        payload: bytes = b"", good_csum: bool = True, doff: int | None = None) -> bytes:
    hl = 20 + len(opts)
    d = (doff if doff is not None else hl // 4)
    seg = bytearray(wire.TCP_HDR.pack(sport, dport, seq, ack, (d << 12) | flags, 65535, 0, 0)
                    + opts + payload)
    c = wire.csum_field(seg, wire.pseudo_sum4(SANDBOX, GATEWAY, 6, len(seg)))
    seg[16:18] = (c if good_csum else (c ^ 0x5A5A)).to_bytes(2, "big")
    return bytes(seg)


def udp(sport: int, dport: int, payload: bytes, length: int | None = None) -> bytes:
    ln = length if length is not None else 8 + len(payload)
    seg = bytearray(wire.UDP_HDR.pack(sport, dport, ln, 0) + payload)
    seg[6:8] = wire.csum_field(seg, wire.pseudo_sum4(SANDBOX, GATEWAY, 17, len(seg))).to_bytes(2, "big")
    return bytes(seg)


def bad_frames(rng: random.Random, count: int, port: int):
    evil_dns = [
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer loop
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f" + b"a" * 10,  # label past end
        b"\x00",
        b"\x12\x34\x81\x80" + b"\x00" * 8,  # a response, not a query
        dns.query("x" * 60 + ".test")[:-3],
    ]
    makers = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120))),  # noise
        lambda: eth(bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))),  # junk IPv4
        lambda: eth(ip4(6, tcp(rng.randrange(1024, 65535), port, 1, 0, wire.TCP_SYN))[:rng.randrange(14, 40)]),
        lambda: eth(ip4(6, tcp(rng.randrange(1024, 65535), port, 1, 0, wire.TCP_SYN, good_csum=False))),
        lambda: (lambda f: f[:24] + bytes([f[24] ^ 0xFF]) + f[25:])(eth(ip4(6, tcp(5, port, 1, 0, wire.TCP_SYN)))),  # bad ip csum
        lambda: eth(ip4(6, tcp(rng.randrange(1024, 65535), port, 1, 0, wire.TCP_SYN, doff=15))),  # doff past end
        lambda: eth(ip4(6, tcp(rng.randrange(1024, 65535), port, 1, 0, wire.TCP_SYN, doff=2))),
        lambda: eth(ip4(6, tcp(rng.randrange(1024, 65535), port, 0, 0, wire.TCP_SYN,
                              opts=bytes([2, 0, 3, 9, 8, 200, 1, 1])))),  # broken options, valid csum
        lambda: eth(ip4(6, tcp(rng.randrange(1024, 65535), rng.randrange(1, 65535), rng.getrandbits(32),
                              rng.getrandbits(32), rng.getrandbits(6), payload=b"zz"))),  # stray segments
        lambda: eth(ip4(6, tcp(5, port, 1, 0, wire.TCP_SYN), frag=0x2000)),  # fragment
        lambda: eth(ip4(6, tcp(5, port, 1, 0, wire.TCP_SYN), src=socket.inet_aton("10.0.2.77"))),  # spoofed
        lambda: eth(ip4(17, udp(5353, 53, rng.choice(evil_dns)))),
        lambda: eth(ip4(17, udp(5353, 9, b"abc", length=400))),  # UDP length past the end
        lambda: eth(ip4(1, bytes([8, 0, 0, 0]) + b"bad-icmp")),  # bad ICMP checksum
        lambda: eth(ip4(99, b"unknown protocol")),
        lambda: eth(bytes(rng.getrandbits(8) for _ in range(28)), etype=0x0806),  # junk ARP
        lambda: eth(bytes([0x60]) + bytes(60), etype=0x86DD),  # IPv6
        lambda: eth(bytes([0x46, 0, 0, 20]) + bytes(16)),  # ihl beyond total length
    ]
    for _ in range(count):
        yield rng.choice(makers)()


def syn_flood(rng: random.Random, count: int, port: int):
    for _ in range(count):
        yield eth(ip4(6, tcp(rng.randrange(1024, 65535), port, rng.getrandbits(32), 0, wire.TCP_SYN,
                             opts=wire.tcp_options(1460, 7))))


def udp_flood(rng: random.Random, count: int, port: int):
    """Datagrams to `count` different destination ports from `port` upwards."""
    for i in range(count):
        yield eth(ip4(17, udp(rng.randrange(1024, 65535), port + i, b"flood")))


def _reseal(frame: bytearray) -> bytes:
    """Recompute the IPv4 header and L4 checksums of a (mutated) frame where the lengths
    still allow it, so the mutation reaches the parsers behind the checksum checks."""
    if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
        ihl = (frame[14] & 15) * 4
        if ihl >= 20 and len(frame) >= 14 + ihl:
            frame[24:26] = b"\0\0"
            frame[24:26] = wire.csum_field(frame[14:14 + ihl]).to_bytes(2, "big")
            l4 = 14 + ihl
            proto = frame[23]
            pos = {6: 16, 17: 6, 1: 2}.get(proto)
            if pos is not None and len(frame) >= l4 + pos + 2:
                frame[l4 + pos:l4 + pos + 2] = b"\0\0"
                start = 0 if proto == 1 else wire.pseudo_sum4(bytes(frame[26:30]), bytes(frame[30:34]),
                                                                 proto, len(frame) - l4)
                frame[l4 + pos:l4 + pos + 2] = wire.csum_field(frame[l4:], start).to_bytes(2, "big")
    return bytes(frame)


def mutated(rng: random.Random, count: int, port: int):
    """Valid frames of every kind the stack parses, with random bytes changed, then
    (mostly) re-checksummed."""
    ns = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, "fd00:10:0:2::2") + bytes([1, 1]) + MY_MAC
    seeds = [
        eth(ip4(6, tcp(40000, port, 1, 0, wire.TCP_SYN, opts=wire.tcp_options(1460, 7)))),
        eth(ip4(6, tcp(40001, port, 5, 9, wire.TCP_ACK | wire.TCP_PSH, payload=b"data"))),
        eth(ip4(17, udp(5353, 53, dns.query("fuzz.test")))),
        eth(ip4(17, udp(5354, port, b"datagram"))),
        eth(ip4(1, (lambda m: m[:2] + wire.csum_field(m).to_bytes(2, "big") + m[4:])(bytes([8, 0, 0, 0, 0, 1, 0, 1]) + b"ping"))),
        eth(wire.ARP_PKT.pack(1, 0x0800, 6, 4, 1, MY_MAC, SANDBOX, bytes(6), GATEWAY), etype=0x0806),
        eth(wire.IP6_HDR.pack(0x60000000, len(ns), 58, 255, socket.inet_pton(socket.AF_INET6, "fd00:10:0:2::100"),
                              socket.inet_pton(socket.AF_INET6, "ff02::1:ff00:2")) + ns, etype=0x86DD),
    ]
    for _ in range(count):
        f = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(14, len(f))
            f[i] = rng.getrandbits(8)
        if rng.random() < 0.2:
            del f[rng.randrange(14, len(f)):]
        yield _reseal(f) if rng.random() < 0.8 else bytes(f)


MY_MAC = b""

if __name__ == "__main__":
    kind, seed, count, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    MY_MAC = _my_mac()
    rng = random.Random(seed)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    gen = {"bad": bad_frames, "synflood": syn_flood, "udpflood": udp_flood, "mutate": mutated}[kind]
    n = 0
    for frame in gen(rng, count, port):
        if len(frame) < 14:
            frame = frame + bytes(14 - len(frame))
        s.send(frame)
        n += 1
    print(n)
