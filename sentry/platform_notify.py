"""The seccomp user-notification platform: the Sentry's loop.

Raw ioctls through ctypes on preallocated structures (sizes asked from the kernel with
seccomp(SECCOMP_GET_NOTIF_SIZES)); a dispatch slot per syscall number; the caller's memory
read with process_vm_readv; SECCOMP_IOCTL_NOTIF_ID_VALID checked after any read and before
acting, so a decision is never applied to a different (recycled) task. Handlers flagged
`may_block` run on a small worker pool so one slow call does not stall the others.
See seccomp_unotify(2).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import queue
import select
import signal
import threading
import time
from typing import Callable

from .call import Call, Continue, Decision, Errno, InjectFd, Kill, Return
from .dispatch import Dispatcher

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_ioctl.restype = ctypes.c_int
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

NR_SECCOMP = 317
NR_PROCESS_VM_READV = 310
NR_PROCESS_VM_WRITEV = 311
SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SEND = 1 << 1


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (ord("!") << 8) | nr


class SeccompData(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_int32), ("arch", ctypes.c_uint32),
                ("instruction_pointer", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6)]


class Notif(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("data", SeccompData)]


class NotifResp(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


class NotifAddfd(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("srcfd", ctypes.c_uint32),
                ("newfd", ctypes.c_uint32), ("newfd_flags", ctypes.c_uint32)]


class NotifSizes(ctypes.Structure):
    _fields_ = [("seccomp_notif", ctypes.c_uint16), ("seccomp_notif_resp", ctypes.c_uint16),
                ("seccomp_data", ctypes.c_uint16)]


class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class UnsupportedKernel(OSError):
    pass


def notif_sizes() -> NotifSizes:
    sizes = NotifSizes()
    if _syscall(NR_SECCOMP, SECCOMP_GET_NOTIF_SIZES, 0, ctypes.byref(sizes)) != 0:
        e = ctypes.get_errno()
        raise UnsupportedKernel(e, "seccomp user notification is not supported by this kernel")
    return sizes


# -- the caller's memory ---------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")


_RW = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_void_p,
                       ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong,
                       use_errno=True)(("syscall", _libc))
SCRATCH = 1 << 16


class MemIO:
    """Per-thread preallocated buffers for process_vm_readv/writev: one scratch area and
    one local and one remote iovec, so a memory access is one foreign call."""

    __slots__ = ("scratch", "base", "local", "remote", "plocal", "premote")

    def __init__(self) -> None:
        self.scratch = ctypes.create_string_buffer(SCRATCH)
        self.base = ctypes.addressof(self.scratch)
        self.local = IoVec(self.base, 0)
        self.remote = IoVec(0, 0)
        self.plocal = ctypes.addressof(self.local)
        self.premote = ctypes.addressof(self.remote)

    def xfer(self, nr: int, pid: int, addr: int, size: int) -> int:
        self.local.iov_len = size
        self.remote.iov_base = addr
        self.remote.iov_len = size
        n = _RW(nr, pid, self.plocal, 1, self.premote, 1, 0)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return n


class ProcessMemory:
    """Memory of task `pid` via process_vm_readv/writev. `touched` says whether any read
    happened (then the platform re-checks the notification id before acting)."""

    __slots__ = ("pid", "touched", "io")

    def __init__(self, pid: int, io: MemIO | None = None) -> None:
        self.pid = pid
        self.touched = False
        self.io = io if io is not None else MemIO()

    def read(self, addr: int, size: int) -> bytes:
        self.touched = True
        if size <= 0:
            return b""
        io = self.io
        out = b""
        while size > 0:
            chunk = min(size, SCRATCH)
            n = io.xfer(NR_PROCESS_VM_READV, self.pid, addr, chunk)
            if n != chunk:
                raise OSError(_errno.EFAULT, "short read of the caller's memory")
            out += ctypes.string_at(io.base, n)
            addr += n
            size -= n
        return out

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        self.touched = True
        io = self.io
        out = b""
        while len(out) < limit:
            # never cross into a page that may be unmapped: read up to the page's end
            chunk = min(_PAGE - (addr % _PAGE), limit - len(out), SCRATCH)
            n = io.xfer(NR_PROCESS_VM_READV, self.pid, addr, chunk)
            if n <= 0:
                break
            data = ctypes.string_at(io.base, n)
            i = data.find(b"\0")
            if i >= 0:
                return out + data[:i]
            out += data
            addr += n
        raise OSError(_errno.ENAMETOOLONG, "string longer than the limit")

    def write(self, addr: int, data: bytes) -> None:
        io = self.io
        off = 0
        while off < len(data):
            chunk = data[off:off + SCRATCH]
            ctypes.memmove(io.base, chunk, len(chunk))
            n = io.xfer(NR_PROCESS_VM_WRITEV, self.pid, addr + off, len(chunk))
            if n != len(chunk):
                raise OSError(_errno.EFAULT, "short write to the caller's memory")
            off += n


# -- the loop ---------------------------------------------------------------------------


class Responder:
    """Sends decisions on the listener; one per thread (its own preallocated structs)."""

    def __init__(self, fd: int, sizes: NotifSizes) -> None:
        self.fd = fd
        self.io = MemIO()
        self.resp_buf = ctypes.create_string_buffer(max(sizes.seccomp_notif_resp, ctypes.sizeof(NotifResp)))
        self.resp = NotifResp.from_buffer(self.resp_buf)
        self.addfd = NotifAddfd()
        self.idbuf = ctypes.c_uint64()
        self.p_resp = ctypes.addressof(self.resp)
        self.p_addfd = ctypes.addressof(self.addfd)
        self.p_id = ctypes.addressof(self.idbuf)
        self.SEND = _iowr(1, sizes.seccomp_notif_resp)
        self.ID_VALID = _iow(2, 8)
        self.ADDFD = _iow(3, ctypes.sizeof(NotifAddfd))

    def id_valid(self, nid: int) -> bool:
        self.idbuf.value = nid
        return _ioctl(self.fd, self.ID_VALID, self.p_id) == 0

    def send(self, nid: int, val: int, error: int, flags: int) -> None:
        r = self.resp
        r.id, r.val, r.error, r.flags = nid, val, error, flags
        if _ioctl(self.fd, self.SEND, self.p_resp) != 0:
            e = ctypes.get_errno()
            if e not in (_errno.ENOENT, _errno.EINTR):  # the caller died meanwhile
                raise OSError(e, f"SECCOMP_IOCTL_NOTIF_SEND: {os.strerror(e)}")

    def apply(self, nid: int, call: Call, mem: ProcessMemory, d: Decision,
              on_kill: Callable[[Call, Kill], None]) -> None:
        if mem.touched and not self.id_valid(nid):
            return  # the caller is gone; nothing to answer
        cls = d.__class__
        if cls is Return:
            self.send(nid, d.value, 0, 0)  # type: ignore[union-attr]
        elif cls is Errno:
            self.send(nid, 0, -d.errno, 0)  # type: ignore[union-attr]
        elif cls is Continue:
            self.send(nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        elif cls is Kill:
            on_kill(call, d)  # type: ignore[arg-type]
            try:
                os.kill(call.pid, signal.SIGKILL)  # a thread id kills its whole group
            except ProcessLookupError:
                pass
            self.send(nid, 0, -_errno.EPERM, 0)
        elif cls is InjectFd:
            a = self.addfd
            a.id, a.flags, a.srcfd, a.newfd = nid, SECCOMP_ADDFD_FLAG_SEND, d.fd, 0  # type: ignore[union-attr]
            a.newfd_flags = os.O_CLOEXEC if d.cloexec else 0  # type: ignore[union-attr]
            try:
                if _ioctl(self.fd, self.ADDFD, self.p_addfd) < 0:
                    e = ctypes.get_errno()
                    if e not in (_errno.ENOENT, _errno.EINTR):
                        self.send(nid, 0, -e, 0)
            finally:
                if d.close:  # type: ignore[union-attr]
                    os.close(d.fd)  # type: ignore[union-attr]
        else:
            raise TypeError(f"handler returned {d!r}, not a Decision")


class NotifyLoop:
    """Serve listener `fd` until every sandboxed task is gone (POLLHUP)."""

    def __init__(self, fd: int, dispatcher: Dispatcher, *, workers: int = 4,
                 flush: Callable[[], None] = lambda: None,
                 on_kill: Callable[[Call, Kill], None] = lambda c, k: None,
                 log: Callable[[str], None] | None = None,
                 flush_interval: float = 0.5) -> None:
        self.fd = fd
        self.dispatcher = dispatcher
        self.sizes = notif_sizes()
        self.flush = flush
        self.on_kill = on_kill
        self.log = log
        self.flush_interval = flush_interval
        size = max(self.sizes.seccomp_notif, ctypes.sizeof(Notif))
        self.notif_buf = ctypes.create_string_buffer(size)
        self.notif = Notif.from_buffer(self.notif_buf)
        self.RECV = _iowr(0, self.sizes.seccomp_notif)
        self.responder = Responder(fd, self.sizes)
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.nworkers = workers
        self.threads: list[threading.Thread] = []
        self.error: BaseException | None = None
        self.served = 0

    def start_workers(self) -> None:
        for i in range(self.nworkers):
            t = threading.Thread(target=self._worker, name=f"sentry-worker-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def _worker(self) -> None:
        responder = Responder(self.fd, self.sizes)
        while True:
            item = self.queue.get()
            if item is None:
                return
            nid, call, slot = item
            try:
                self._serve_one(responder, nid, call, slot)
            except BaseException as exc:  # a failing handler fails the Sentry, loudly
                self.error = exc
                os.write(self.wake_w, b"!")
                return

    def _serve_one(self, responder: Responder, nid: int, call: Call, slot) -> None:
        mem = ProcessMemory(call.pid, responder.io)
        d = self.dispatcher.dispatch(call, mem, slot)
        if self.log is not None:
            self.log(f"answer id={nid:#x} pid={call.pid} {call.name}: {d!r}")
        responder.apply(nid, call, mem, d, self.on_kill)

    def run(self) -> None:
        if self.nworkers and not self.threads:
            self.start_workers()
        fd = self.fd
        notif, buf, size = self.notif, self.notif_buf, ctypes.sizeof(self.notif_buf)
        pbuf = ctypes.addressof(buf)
        RECV = self.RECV
        disp = self.dispatcher
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        interval_ms = int(self.flush_interval * 1000)
        last_flush = time.monotonic()
        names = disp.call_name
        try:
            while True:
                if self.error is not None:
                    raise self.error
                events = poller.poll(interval_ms)
                now = time.monotonic()
                if now - last_flush >= self.flush_interval:
                    self.flush()
                    last_flush = now
                if not events:
                    continue
                ev = 0
                for efd, bits in events:
                    if efd == fd:
                        ev = bits
                if not ev:
                    continue
                if not ev & select.POLLIN:
                    if ev & (select.POLLHUP | select.POLLERR):
                        return  # no sandboxed task is left
                    continue
                ctypes.memset(pbuf, 0, size)
                if _ioctl(fd, RECV, pbuf) != 0:
                    e = ctypes.get_errno()
                    if e in (_errno.ENOENT, _errno.EINTR):
                        continue  # the caller died between poll and recv
                    raise OSError(e, f"SECCOMP_IOCTL_NOTIF_RECV: {os.strerror(e)}")
                d = notif.data
                nr = d.nr
                a = d.args
                call = Call(notif.pid, nr, (a[0], a[1], a[2], a[3], a[4], a[5]), names(nr))
                nid = notif.id
                slot = disp.slot(nr)
                self.served += 1
                if self.log is not None:
                    self.log(f"recv id={nid:#x} pid={call.pid} {call.name}{call.args}")
                if slot.may_block and self.threads:
                    self.queue.put((nid, call, slot))
                else:
                    self._serve_one(self.responder, nid, call, slot)
        finally:
            for _ in self.threads:
                self.queue.put(None)
            self.flush()


__all__ = ["NotifyLoop", "ProcessMemory", "Responder", "notif_sizes", "UnsupportedKernel",
           "Notif", "NotifResp", "NotifAddfd", "SeccompData"]
