"""Egress policy: which destinations the sandbox may reach in netstack mode.

Default deny. A rule matches by CIDR, or by host name (the name is bound to the addresses
it resolved to when the stack started, plus every address the DNS forwarder later answered
for it), then by port and protocol. A rule with neither CIDR nor host matches any address.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from ..engine.plan import EgressRule


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: EgressRule | None  # the rule that allowed it
    near: EgressRule | None = None  # refused: a rule that matched the address but not port/protocol


def _norm_name(name: str) -> str:
    return name.rstrip(".").lower()


class EgressPolicy:
    """Decides connections; holds the name -> addresses bindings."""

    def __init__(self, rules: tuple[EgressRule, ...], resolve: bool = True) -> None:
        self.rules = rules
        self._nets = [ipaddress.ip_network(r.cidr, strict=False) if r.cidr else None for r in rules]
        self._bound: list[set[str]] = [set() for _ in rules]
        if resolve:
            for i, r in enumerate(rules):
                if r.host:
                    self._bound[i].update(resolve_host(r.host))

    def bind(self, name: str, addresses: list[str]) -> bool:
        """Record that `name` resolved to `addresses` (from the DNS forwarder).
        Returns True when a host rule names it."""
        name = _norm_name(name)
        hit = False
        for i, r in enumerate(self.rules):
            if r.host and _norm_name(r.host) == name:
                self._bound[i].update(addresses)
                hit = True
        return hit

    def may_resolve(self, name: str) -> bool:
        """Whether the DNS forwarder answers `name`: when some rule allows any address (no
        cidr and no host, or a /0), every name; otherwise only the names of host rules."""
        name = _norm_name(name)
        for i, r in enumerate(self.rules):
            net = self._nets[i]
            if (net is None and not r.host) or (net is not None and net.prefixlen == 0):
                return True
            if r.host and _norm_name(r.host) == name:
                return True
        return False

    def decide(self, dest: str, port: int, protocol: str) -> Verdict:
        addr = ipaddress.ip_address(dest)
        near = None
        for i, r in enumerate(self.rules):
            net = self._nets[i]
            if net is not None:
                if addr.version != net.version or addr not in net:
                    continue
            elif r.host:
                if dest not in self._bound[i]:
                    continue
            if r.ports and port not in r.ports:
                near = near or r
                continue
            if r.protocol != "any" and r.protocol != protocol:
                near = near or r
                continue
            return Verdict(True, r)
        return Verdict(False, None, near)


def resolve_host(name: str) -> set[str]:
    """Addresses `name` resolves to on the host; empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return set()
    return {info[4][0] for info in infos}
