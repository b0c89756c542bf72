"""The seccomp user-notification platform: the Sentry's loop.

Raw ioctls through ctypes on preallocated structures (sizes asked from the kernel with
seccomp(SECCOMP_GET_NOTIF_SIZES)); a dispatch slot per syscall number; the caller's memory
read with process_vm_readv; SECCOMP_IOCTL_NOTIF_ID_VALID checked after any read and before
acting, so a decision is never applied to a different (recycled) task. Handlers flagged
`may_block` run on a small worker pool so one slow call does not stall the others; those
also marked `defers` (dispatch_util) run on the loop thread and hand the rest of the call
to a worker only when it would block (a FIFO open), raising Deferred.
See seccomp_unotify(2).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import queue
import select
import signal
import struct
import threading
import time

from .call import Call, Continue, Decision, Errno, InjectFd, Kill, Return
from .dispatch import Dispatcher
from .dispatch_util import Deferred
from .seccomp_child import NR_SECCOMP

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Callable

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_ioctl.restype = ctypes.c_int
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

NR_PROCESS_VM_READV = 310
NR_PROCESS_VM_WRITEV = 311
SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SEND = 1 << 1
# Linux 6.6+: wake the Sentry synchronously (WF_SYNC): the trapped thread hands its CPU to
# the Sentry and back, which cuts the round trip. Older kernels refuse it; that is fine.
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1
MAX_WORKERS = 32  # threads serving calls that may block, at most


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


# struct seccomp_notif: id, pid, flags, then struct seccomp_data: nr, arch, ip, args[6]
_NOTIF = struct.Struct("<QIIiIQ6Q")
assert _NOTIF.size == ctypes.sizeof(Notif)
# struct seccomp_notif_resp: id, val, error, flags
_RESP = struct.Struct("<QqiI")
assert _RESP.size == ctypes.sizeof(NotifResp)


class NotifSizes(ctypes.Structure):
    _fields_ = [("seccomp_notif", ctypes.c_uint16), ("seccomp_notif_resp", ctypes.c_uint16),
                ("seccomp_data", ctypes.c_uint16)]


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


_IOV2 = struct.Struct("<QQQQ")  # local iovec, remote iovec


class MemIO:
    """Per-thread preallocated buffers for process_vm_readv/writev: one scratch area and
    the two iovecs (local, remote) packed in one buffer, so a memory access is one
    pack_into plus one foreign call."""

    __slots__ = ("scratch", "base", "iov", "plocal", "premote")

    def __init__(self) -> None:
        self.scratch = ctypes.create_string_buffer(SCRATCH)
        self.base = ctypes.addressof(self.scratch)
        self.iov = ctypes.create_string_buffer(_IOV2.size)
        self.plocal = ctypes.addressof(self.iov)
        self.premote = self.plocal + 16

    def xfer(self, nr: int, pid: int, addr: int, size: int) -> int:
        _IOV2.pack_into(self.iov, 0, self.base, size, addr, size)
        n = _RW(nr, pid, self.plocal, 1, self.premote, 1, 0)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return n


class ProcessMemory:
    """Memory of task `pid` via process_vm_readv/writev. `touched` says whether any read
    happened.

    process_vm_* name the task by pid anew on every call, and the kernel could hand the
    pid to another process if the caller died meanwhile. So with `id_valid` (the
    notification's SECCOMP_IOCTL_NOTIF_ID_VALID) every read is followed, and every write
    preceded, by a check that the caller still waits in this call (seccomp_unotify(2):
    after reading the target's memory, before acting on it); a caller that is gone raises
    OSError(ESRCH), which handlers answer as a fault. `checked` (a check was made) spares
    the platform a last one before it answers."""

    __slots__ = ("pid", "touched", "io", "may_defer", "nid", "id_valid", "checked")

    def __init__(self, pid: int, io: MemIO | None = None, may_defer: bool = False,
                 nid: int = 0, id_valid: Callable[[int], bool] | None = None) -> None:
        self.pid = pid
        self.touched = False
        self.io = io if io is not None else MemIO()
        self.may_defer = may_defer  # the handler may raise Deferred (loop thread, workers)
        self.nid = nid
        self.id_valid = id_valid
        self.checked = False

    def _confirm(self) -> None:
        if self.id_valid is not None:
            self.checked = True
            if not self.id_valid(self.nid):
                raise OSError(_errno.ESRCH, "the caller is gone")

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
        self._confirm()
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
                self._confirm()
                return out + data[:i]
            out += data
            addr += n
        self._confirm()
        raise OSError(_errno.ENAMETOOLONG, "string longer than the limit")

    def write(self, addr: int, data: bytes) -> None:
        self._confirm()
        io = self.io
        size = len(data)
        if size <= SCRATCH:  # the usual case: one copy, one call
            ctypes.memmove(io.base, data, size)
            if io.xfer(NR_PROCESS_VM_WRITEV, self.pid, addr, size) != size:
                raise OSError(_errno.EFAULT, "short write to the caller's memory")
            return
        off = 0
        while off < size:
            chunk = data[off:off + SCRATCH]
            ctypes.memmove(io.base, chunk, len(chunk))
            n = io.xfer(NR_PROCESS_VM_WRITEV, self.pid, addr + off, len(chunk))
            if n != len(chunk):
                raise OSError(_errno.EFAULT, "short write to the caller's memory")
            off += n


# -- the loop ---------------------------------------------------------------------------


# SECCOMP_IOCTL_NOTIF_SET_FLAGS (Linux 6.6: sync wake-up; refused harmlessly before)
SET_FLAGS = _iow(4, 8)


def listener_ioctls(sizes: NotifSizes) -> tuple[int, ...]:
    """The ioctl requests the Sentry makes on its listener (its filter allows only these):
    RECV, SEND, ID_VALID, ADDFD, SET_FLAGS."""
    return (_iowr(0, sizes.seccomp_notif), _iowr(1, sizes.seccomp_notif_resp), _iow(2, 8),
            _iow(3, ctypes.sizeof(NotifAddfd)), SET_FLAGS)


class Responder:
    """Sends decisions on the listener; one per thread (its own preallocated structs)."""

    def __init__(self, fd: int, sizes: NotifSizes) -> None:
        self.fd = fd
        self.io = MemIO()
        self.resp_buf = ctypes.create_string_buffer(max(sizes.seccomp_notif_resp, _RESP.size))
        self.addfd = NotifAddfd()
        self.idbuf = ctypes.c_uint64()
        self.p_resp = ctypes.addressof(self.resp_buf)
        self.p_addfd = ctypes.addressof(self.addfd)
        self.p_id = ctypes.addressof(self.idbuf)
        _, self.SEND, self.ID_VALID, self.ADDFD, _ = listener_ioctls(sizes)

    def id_valid(self, nid: int) -> bool:
        self.idbuf.value = nid
        return _ioctl(self.fd, self.ID_VALID, self.p_id) == 0

    def send(self, nid: int, val: int, error: int, flags: int) -> None:
        _RESP.pack_into(self.resp_buf, 0, nid, val, error, flags)
        if _ioctl(self.fd, self.SEND, self.p_resp) != 0:
            e = ctypes.get_errno()
            if e not in (_errno.ENOENT, _errno.EINTR):  # the caller died meanwhile
                raise OSError(e, f"SECCOMP_IOCTL_NOTIF_SEND: {os.strerror(e)}")

    def apply(self, nid: int, call: Call, mem: ProcessMemory, d: Decision,
              on_kill: Callable[[Call, Kill], None]) -> None:
        if mem.touched and not mem.checked and not self.id_valid(nid):
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
            if not self.id_valid(nid):
                return  # gone already; its pid may belong to someone else by now
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
                 flush_interval: float = 0.5, sizes: NotifSizes | None = None) -> None:
        """`fd` may be -1: the Sentry then builds its loop, starts its workers and
        confines itself before it has the listener, and calls attach(fd) once it does
        (the seccomp(2) call behind notif_sizes() is refused after confinement: pass
        `sizes` then)."""
        self.fd = fd
        self.dispatcher = dispatcher
        self.sizes = sizes if sizes is not None else notif_sizes()
        self.flush = flush
        self.on_kill = on_kill
        self.log = log
        self.flush_interval = flush_interval
        size = max(self.sizes.seccomp_notif, ctypes.sizeof(Notif))
        self.notif_buf = ctypes.create_string_buffer(size)
        self.notif = Notif.from_buffer(self.notif_buf)
        self.RECV = listener_ioctls(self.sizes)[0]
        self.responder = Responder(fd, self.sizes)
        self.sync_wakeup = self._set_sync_wakeup() if fd >= 0 else False
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.nworkers = workers
        # more workers are started while every one is busy (blocked FIFO opens...)
        self.max_workers = max(workers, MAX_WORKERS) if workers else 0
        self.idle = 0  # workers waiting for work; changed under idle_lock
        self.idle_lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.error: BaseException | None = None
        self.served = 0
        self.done = False  # set by the watcher: no sandboxed task left, or a failure
        self.finished = False  # set by run() when it returns
        self.main_ident = 0
        self.watcher: threading.Thread | None = None

    def attach(self, fd: int) -> None:
        """The listener, for a loop made with fd -1 (before any worker has work)."""
        self.fd = fd
        self.responder.fd = fd
        self.sync_wakeup = self._set_sync_wakeup()

    def _set_sync_wakeup(self) -> bool:
        # SECCOMP_IOCTL_NOTIF_SET_FLAGS takes the flags as the argument itself
        return _ioctl(self.fd, SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0

    def start_workers(self) -> None:
        """Start the worker pool (and the hang-up watcher, once the loop has its
        listener). Call from the thread that will call run(), before the Sentry's own
        filter is loaded (TSYNC covers them)."""
        self.main_ident = threading.get_ident()
        signal.signal(signal.SIGUSR1, _interrupt)
        for _ in range(self.nworkers):
            self._add_worker()
        if self.fd >= 0:
            self._start_watcher()

    def _start_watcher(self) -> None:
        w = threading.Thread(target=self._watch, name="sentry-watch", daemon=True)
        w.start()
        self.watcher = w

    def _watch(self) -> None:
        """Wait for the hang-up (no sandboxed task left) or a worker's failure, flushing
        the events meanwhile; then get the loop out of its blocking RECV. Asking poll for
        no events means notifications do not wake this thread, only POLLHUP/POLLERR."""
        p = select.poll()
        p.register(self.fd, 0)
        p.register(self.wake_r, select.POLLIN)
        interval = int(self.flush_interval * 1000)
        while not self.done:
            ready = p.poll(interval)
            self.flush()
            for rfd, bits in ready:
                if rfd == self.wake_r or bits & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    self.done = True
        # The signal makes RECV fail with EINTR; repeat it in case it landed just
        # before the loop entered RECV.
        while not self.finished:
            try:
                signal.pthread_kill(self.main_ident, signal.SIGUSR1)
            except (ProcessLookupError, OSError):
                return
            time.sleep(0.02)

    def _add_worker(self, idle: bool = True) -> None:
        t = threading.Thread(target=self._worker, name=f"sentry-worker-{len(self.threads)}",
                             daemon=True)
        if idle:
            with self.idle_lock:
                self.idle += 1
        self.threads.append(t)
        t.start()

    def _submit(self, item: tuple) -> None:
        """Queue a may-block call for a free worker (reserved here, so a burst of calls
        is counted before any worker picks one up); start another if none is free."""
        with self.idle_lock:
            free = self.idle > 0
            if free:
                self.idle -= 1
        if not free and len(self.threads) < self.max_workers:
            self._add_worker(idle=False)
        self.queue.put(item)

    def _worker(self) -> None:
        responder = Responder(-1, self.sizes)  # its listener: read when work comes
        while True:
            item = self.queue.get()
            if item is None:
                return
            responder.fd = self.fd
            nid, call, slot = item
            try:
                if slot.__class__ is Deferred:
                    self._resume(responder, nid, call, slot)
                else:
                    self._serve_one(responder, nid, call, slot)
            except BaseException as exc:  # a failing handler fails the Sentry, loudly
                self.error = exc
                os.write(self.wake_w, b"!")
                return
            with self.idle_lock:
                self.idle += 1

    def _serve_one(self, responder: Responder, nid: int, call: Call, slot,
                   may_defer: bool = False) -> None:
        mem = ProcessMemory(call.pid, responder.io, may_defer, nid, responder.id_valid)
        try:
            d = self.dispatcher.dispatch(call, mem, slot)
        except Deferred as dfr:  # would block: a worker finishes it
            self._submit((nid, call, dfr))
            return
        if self.log is not None:
            self.log(f"answer id={nid:#x} pid={call.pid} {call.name}: {d!r}")
        responder.apply(nid, call, mem, d, self.on_kill)

    def _resume(self, responder: Responder, nid: int, call: Call, dfr: Deferred) -> None:
        mem = ProcessMemory(call.pid, responder.io)
        mem.touched = True  # the first part read the caller's memory: re-check the id
        d = dfr.resume()
        if self.log is not None:
            self.log(f"answer id={nid:#x} pid={call.pid} {call.name}: {d!r}")
        responder.apply(nid, call, mem, d, self.on_kill)

    def run(self) -> None:
        """Serve until no sandboxed task is left. RECV blocks (one system call per
        notification, no poll); the watcher thread interrupts it at the end."""
        if not self.main_ident:
            self.start_workers()
        if self.watcher is None:
            self._start_watcher()
        fd = self.fd
        buf, size = self.notif_buf, ctypes.sizeof(self.notif_buf)
        pbuf = ctypes.addressof(buf)
        RECV = self.RECV
        disp = self.dispatcher
        names = disp.names  # by number, from the Plan's rules (call_name: the others)
        nnames = len(names)
        unpack = _NOTIF.unpack_from  # one call instead of ten ctypes field reads
        log = self.log
        threads = self.threads
        # may-block calls whose handler defers only when it would block: served here
        inline = frozenset(nr for nr, s in enumerate(disp.slots)
                           if s is not None and s.may_block
                           and getattr(s.handler, "can_defer", False))
        try:
            while not self.done:
                ctypes.memset(pbuf, 0, size)
                if _ioctl(fd, RECV, pbuf) != 0:
                    e = ctypes.get_errno()
                    if e in (_errno.ENOENT, _errno.EINTR):
                        continue  # the caller died meanwhile, or the watcher calls
                    raise OSError(e, f"SECCOMP_IOCTL_NOTIF_RECV: {os.strerror(e)}")
                nid, pid, _flags, nr, _arch, _ip, *args = unpack(buf)
                call = Call(pid, nr, tuple(args),  # type: ignore[arg-type]
                            (names[nr] if 0 <= nr < nnames else None) or disp.call_name(nr))
                slot = disp.slot(nr)
                self.served += 1
                if log is not None:
                    log(f"recv id={nid:#x} pid={call.pid} {call.name}{call.args}")
                if slot.may_block and threads:
                    if nr in inline:
                        self._serve_one(self.responder, nid, call, slot, True)
                    else:
                        self._submit((nid, call, slot))
                else:
                    self._serve_one(self.responder, nid, call, slot)
            if self.error is not None:
                raise self.error
        finally:
            self.finished = True
            self.done = True
            for _ in threads:
                self.queue.put(None)
            self.flush()


def _interrupt(signum: int, frame: object) -> None:
    """SIGUSR1 only interrupts the blocking RECV (see NotifyLoop._watch)."""


__all__ = ["listener_ioctls", "NotifyLoop", "ProcessMemory", "Responder", "notif_sizes", "UnsupportedKernel",
           "Notif", "NotifResp", "NotifAddfd", "SeccompData"]
