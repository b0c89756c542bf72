"""The Sentry's side of the Gofer connection.

Thread safe: several Sentry threads may wait at once (a blocking FIFO open does not hold
up a stat). Whoever holds the read lock reads the socket for everybody and files each
reply under its request id, so the common single-threaded case costs one send and one
receive, and no thread hand-off.
"""

from __future__ import annotations

import errno as E
import itertools
import os
import socket
import threading

from .protocol import (MAX_MESSAGE, ProtocolError, Reply, Request, close_all, decode_header,
                       decode_reply, encode_request, recv_message, send_message, Spinner)

# How long the Sentry polls for a reply before sleeping: a Gofer call takes tens of
# microseconds; waking a sleeping thread on another CPU can cost as much again.
REPLY_SPIN = 0.0002  # seconds
REPLY_LATE = 0.00005  # a reply after this long: the Gofer was not running (busy CPU)


class GoferGone(OSError):
    """The Gofer closed the connection or died."""


class GoferClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._read_lock = threading.Lock()
        self._ids = itertools.count(1)  # next() is atomic under the GIL
        self._done: dict[int, Reply] = {}
        self._forgotten: set[int] = set()  # ids whose replies are thrown away
        self._dead = False
        self._buf = bytearray(MAX_MESSAGE)  # used by the one reading thread at a time
        self._spinner = Spinner(REPLY_SPIN, REPLY_LATE)

    def call(self, req: Request, fds: list[int] | tuple[int, ...] = ()) -> Reply:
        """Send one request (with `fds` attached, not consumed) and wait for its reply.
        The reply's `fd`, if any, belongs to the caller."""
        return self.take(self.submit(req, fds))

    def submit(self, req: Request, fds: list[int] | tuple[int, ...] = ()) -> int:
        """Send one request without waiting; its id. The reply is got with `take`, or
        thrown away (its descriptor closed) with `forget`: one of the two, exactly once."""
        if self._dead:
            raise GoferGone(E.EPIPE, "the Gofer is gone")
        req_id = next(self._ids) & 0xFFFFFFFF
        msg = encode_request(req_id, req)
        try:
            send_message(self.sock, msg, fds)
        except OSError as exc:
            self._dead = True
            raise GoferGone(exc.errno or E.EPIPE, "the Gofer is gone") from exc
        return req_id

    def take(self, req_id: int) -> Reply:
        """The reply to request `req_id` (see `submit`), waiting for it if need be."""
        done = self._done
        while True:
            rep = done.pop(req_id, None)
            if rep is not None:
                return rep
            # Whoever holds the read lock reads one reply for everybody. A reader may sit
            # on a slow reply (a FIFO open), so the others poll their slot meanwhile.
            if not self._read_lock.acquire(timeout=0.002):
                if self._dead:
                    raise GoferGone(E.EPIPE, "the Gofer is gone")
                continue
            try:
                rep = done.pop(req_id, None)
                if rep is not None:
                    return rep
                got = self._read_one()
                if got is None:
                    self._dead = True
                    raise GoferGone(E.EPIPE, "the Gofer is gone")
                if got[0] == req_id:
                    return got[1]
                self._file(*got)
            finally:
                self._read_lock.release()

    def forget(self, req_id: int) -> None:
        """Throw away the reply to request `req_id`, now or when it comes."""
        self._forgotten.add(req_id)  # first: a reader filing it meanwhile sees this
        rep = self._done.pop(req_id, None)
        if rep is not None:
            self._forgotten.discard(req_id)
            if rep.fd >= 0:
                os.close(rep.fd)

    def _file(self, req_id: int, rep: Reply) -> None:
        """Keep a reply for the thread that asked, unless it was forgotten. Both this and
        `forget` publish first and check the other's mark second, so whichever runs
        second closes the descriptor, and only one does (dict.pop is atomic)."""
        self._done[req_id] = rep
        if req_id in self._forgotten:
            got = self._done.pop(req_id, None)
            if got is not None:
                self._forgotten.discard(req_id)
                if got.fd >= 0:
                    os.close(got.fd)

    def _read_one(self) -> tuple[int, Reply] | None:
        while True:
            try:
                msg, fds, _flags = recv_message(self.sock, self._buf, self._spinner)
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

    def close(self) -> None:
        self._dead = True
        try:
            self.sock.close()
        except OSError:
            pass


__all__ = ["GoferClient", "GoferGone"]
