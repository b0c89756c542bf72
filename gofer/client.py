"""The Sentry's side of the Gofer connection.

Thread safe: several Sentry threads may wait at once (a blocking FIFO open does not hold
up a stat). Whoever waits reads the socket for everybody and hands each reply to its
request id, so the common single-threaded case costs one send and one receive.
"""

from __future__ import annotations

import errno as E
import os
import socket
import threading

from .protocol import (MAX_MESSAGE, ProtocolError, Reply, Request, close_all, decode_header,
                       decode_reply, encode_request, recv_message)


class GoferGone(OSError):
    """The Gofer closed the connection or died."""


class GoferClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._next = 1
        self._done: dict[int, Reply] = {}
        self._reading = False
        self._dead = False
        self._buf = bytearray(MAX_MESSAGE)  # used by the one reading thread at a time

    def call(self, req: Request, fds: list[int] | tuple[int, ...] = ()) -> Reply:
        """Send one request (with `fds` attached, not consumed) and wait for its reply.
        The reply's `fd`, if any, belongs to the caller."""
        with self._lock:
            if self._dead:
                raise GoferGone(E.EPIPE, "the Gofer is gone")
            req_id = self._next
            self._next = (self._next + 1) & 0xFFFFFFFF or 1
        msg = encode_request(req_id, req)
        try:
            if fds:
                socket.send_fds(self.sock, [msg], list(fds))
            else:
                self.sock.sendmsg([msg])
        except OSError as exc:
            self._die()
            raise GoferGone(exc.errno or E.EPIPE, "the Gofer is gone") from exc
        with self._cond:
            while True:
                rep = self._done.pop(req_id, None)
                if rep is not None:
                    return rep
                if self._dead:
                    raise GoferGone(E.EPIPE, "the Gofer is gone")
                if self._reading:
                    self._cond.wait()
                    continue
                self._reading = True
                self._cond.release()
                try:
                    got = self._read_one()
                finally:
                    self._cond.acquire()
                    self._reading = False
                if got is None:
                    self._dead = True
                else:
                    self._done[got[0]] = got[1]
                self._cond.notify_all()

    def _read_one(self) -> tuple[int, Reply] | None:
        while True:
            try:
                msg, fds, _flags = recv_message(self.sock, self._buf)
            except InterruptedError:
                continue
            except OSError:
                return None
            if not msg:
                close_all(fds)
                return None
            try:
                _op, req_id, body = decode_header(msg)
                rep = decode_reply(body, fds[0] if fds else -1)
            except ProtocolError:
                close_all(fds)
                continue
            close_all(fds[1:])
            return req_id, rep

    def _die(self) -> None:
        with self._cond:
            self._dead = True
            self._cond.notify_all()

    def close(self) -> None:
        self._die()
        try:
            self.sock.close()
        except OSError:
            pass


__all__ = ["GoferClient", "GoferGone"]
