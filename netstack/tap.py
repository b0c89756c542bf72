"""Create and configure the sandbox's TAP device inside its network namespace.

A helper thread joins the namespace (setns affects only the calling thread), opens
/dev/net/tun there (the device belongs to the namespace it was opened in), configures it
with pyroute2 over a netlink socket also created there, and ends. The caller gets the TAP
fd; it stays on the host side and never reaches the program.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import socket
import struct
import threading

from ..engine.errors import HostError, SandboxError
from ..engine.plan import NetworkConfig
from . import ipv6

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
CLONE_NEWNET = 0x40000000
TAP_NAME = "eth0"
TXQLEN = 4096
IFA_F_NODAD = 0x02


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tap(netns_path: str, config: NetworkConfig, name: str = TAP_NAME) -> tuple[int, bytes]:
    """Create TAP `name` in the namespace at `netns_path` (e.g. /proc/PID/ns/net),
    configured from `config`; return its fd (O_CLOEXEC, owned by the caller) and the
    sandbox side's MAC address."""
    result: dict = {}

    def worker() -> None:
        try:
            _setns(netns_path)
            result["fd"], result["mac"] = _create(config, name)
        except BaseException as exc:  # reported in the calling thread
            result["error"] = exc

    t = threading.Thread(target=worker, name="netstack-tap", daemon=True)
    t.start()
    t.join()
    if "error" in result:
        exc = result["error"]
        if isinstance(exc, FileNotFoundError) and "tun" in str(exc):
            raise HostError("/dev/net/tun is missing; load the tun module (modprobe tun) "
                            "or use network mode none or passthrough.") from exc
        if isinstance(exc, PermissionError):
            raise HostError(f"cannot set up the sandbox's TAP device ({exc}): netstack mode "
                            "needs CAP_NET_ADMIN and CAP_SYS_ADMIN on the host",
                            hint="run sandboxctl as root, or use network mode none or "
                                 "passthrough") from exc
        raise SandboxError(f"cannot set up the sandbox's TAP device: {exc}") from exc
    return result["fd"], result["mac"]


def _create(config: NetworkConfig, name: str) -> tuple[int, bytes]:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        # The reader (the netstack) takes partial checksums and TCP segments up to 64 KB.
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        mac = _configure(config, name)
    except BaseException:
        os.close(fd)
        raise
    return fd, mac


def _configure(config: NetworkConfig, name: str) -> bytes:
    from pyroute2 import IPRoute  # heavy (~0.5 s): only when a TAP is made

    iface = ipaddress.ip_interface(config.address)
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        idx = ipr.link_lookup(ifname=name)[0]
        # a longer queue than tun's 1000 frames absorbs bursts while the stack is busy
        ipr.link("set", index=idx, mtu=config.mtu, txqlen=TXQLEN, state="up")
        ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        ipr.route("add", dst="0.0.0.0/0", gateway=config.gateway)
        # IPv6: a unique-local /64 that exists only on this link (no DAD: usable at once)
        v6 = ipaddress.ip_interface(ipv6.SANDBOX6)
        ipr.addr("add", index=idx, address=str(v6.ip), prefixlen=v6.network.prefixlen,
                 flags=IFA_F_NODAD)
        ipr.route("add", dst="::/0", gateway=ipv6.GATEWAY6, family=socket.AF_INET6)
        link = ipr.get_links(idx)[0]
        return bytes.fromhex(link.get_attr("IFLA_ADDRESS").replace(":", ""))
