"""DNS message parsing for the forwarder at the gateway address: just enough to record
what the sandbox asked and what it was told (A/AAAA answers), and to fail a query."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

HDR = struct.Struct("!HHHHHH")
TYPE_A = 1
TYPE_AAAA = 28
RCODE_SERVFAIL = 2
RCODE_REFUSED = 5


class DnsError(ValueError):
    """The message is not a DNS message we can read."""


@dataclass(frozen=True)
class Question:
    ident: int
    name: str
    qtype: int
    end: int  # offset just after the first question


def _read_name(msg: bytes, off: int, depth: int = 0) -> tuple[str, int]:
    labels: list[str] = []
    jumped_end = -1
    hops = 0
    while True:
        if off >= len(msg):
            raise DnsError("name runs past the message")
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise DnsError("truncated pointer")
            if jumped_end < 0:
                jumped_end = off + 2
            off = ((ln & 0x3F) << 8) | msg[off + 1]
            hops += 1
            if hops > 16:
                raise DnsError("pointer loop")
            continue
        if ln & 0xC0:
            raise DnsError("bad label type")
        off += 1
        if ln == 0:
            break
        if off + ln > len(msg):
            raise DnsError("label runs past the message")
        labels.append(msg[off:off + ln].decode("ascii", "replace"))
        off += ln
        if len(labels) > 128:
            raise DnsError("too many labels")
    return ".".join(labels), (jumped_end if jumped_end >= 0 else off)


def parse_question(msg: bytes) -> Question:
    if len(msg) < HDR.size:
        raise DnsError("shorter than a DNS header")
    ident, flags, qd, _an, _ns, _ar = HDR.unpack_from(msg)
    if flags & 0x8000 or qd < 1:
        raise DnsError("not a query")
    name, off = _read_name(msg, HDR.size)
    if off + 4 > len(msg):
        raise DnsError("truncated question")
    qtype = struct.unpack_from("!H", msg, off)[0]
    return Question(ident, name, qtype, off + 4)


def parse_answers(msg: bytes) -> tuple[str, list[str]]:
    """(question name, A/AAAA addresses) of a response."""
    if len(msg) < HDR.size:
        raise DnsError("shorter than a DNS header")
    _ident, _flags, qd, an, _ns, _ar = HDR.unpack_from(msg)
    off = HDR.size
    qname = ""
    for i in range(qd):
        name, off = _read_name(msg, off)
        if i == 0:
            qname = name
        off += 4
    out: list[str] = []
    for _ in range(min(an, 256)):
        _name, off = _read_name(msg, off)
        if off + 10 > len(msg):
            raise DnsError("truncated record")
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", msg, off)
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rtype == TYPE_A and rdlen == 4:
            out.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == TYPE_AAAA and rdlen == 16:
            out.append(str(ipaddress.IPv6Address(rdata)))
    return qname, out


def rewrite_a(msg: bytes, old: bytes, new: bytes) -> bytes:
    """`msg` with every A record whose address is `old` changed to `new`."""
    out = bytearray(msg)
    _ident, _flags, qd, an, _ns, _ar = HDR.unpack_from(msg)
    off = HDR.size
    for _ in range(qd):
        _name, off = _read_name(msg, off)
        off += 4
    for _ in range(min(an, 256)):
        _name, off = _read_name(msg, off)
        if off + 10 > len(msg):
            raise DnsError("truncated record")
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", msg, off)
        off += 10
        if rtype == TYPE_A and rdlen == 4 and msg[off:off + 4] == old:
            out[off:off + 4] = new
        off += rdlen
    return bytes(out)


def failure(query: bytes, q: Question, rcode: int = RCODE_SERVFAIL) -> bytes:
    """A response to `query` carrying only its question and `rcode`."""
    flags = 0x8000 | 0x0080 | (struct.unpack_from("!H", query, 2)[0] & 0x0100) | rcode
    return HDR.pack(q.ident, flags, 1, 0, 0, 0) + bytes(query[HDR.size:q.end])


def query(name: str, qtype: int = TYPE_A, ident: int = 0x1234) -> bytes:
    """Build a recursive query (used by tests and the benchmark)."""
    qn = b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return HDR.pack(ident, 0x0100, 1, 0, 0, 0) + qn + struct.pack("!HH", qtype, 1)


def answer(q_msg: bytes, addresses: list[str], ttl: int = 60) -> bytes:
    """A response answering `q_msg` with A records (used by test DNS servers)."""
    q = parse_question(q_msg)
    body = bytes(q_msg[HDR.size:q.end])
    rrs = b""
    for a in addresses:
        rrs += b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, 1, ttl, 4) + ipaddress.IPv4Address(a).packed
    return HDR.pack(q.ident, 0x8180, 1, len(addresses), 0, 0) + body + rrs
