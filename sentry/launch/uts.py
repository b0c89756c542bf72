"""The UTS namespace: the sandbox's hostname and NIS domain name."""

from __future__ import annotations

from . import kernel


def set_names(hostname: str, domainname: str) -> None:
    kernel.sethostname(hostname)
    kernel.setdomainname(domainname)
