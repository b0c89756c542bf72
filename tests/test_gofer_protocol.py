"""The Gofer's wire protocol and path rules: codec round trips, malformed input against a
real Gofer process (it answers EPROTO or drops, and keeps serving), glob semantics."""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import time

import pytest

from _helpers_gofer import SandboxNS, make_plan
from sandboxctl.gofer.client import GoferClient
from sandboxctl.gofer.policy import RuleSet
from sandboxctl.gofer.process import start_gofer
from sandboxctl.gofer.protocol import (HEADER, MAGIC, VERSION, Op, ProtocolError, Reply, Request,
                                       decode_header, decode_reply, decode_request,
                                       encode_reply, encode_request)
from sandboxctl.engine.plan import PathRule


def test_request_and_reply_round_trip():
    req = Request(Op.RENAME, b"/a/b", 0, b"c\xffd", -1, flags=3, mode=0o755, at_flags=0x100,
                  pid=7, tid=9, a=(-1, 2**40, 0, 5))
    op, rid, body = decode_header(encode_request(42, req))
    assert (op, rid) == (Op.RENAME, 42)
    assert decode_request(op, body) == req
    rep = Reply(errno.EXDEV, 1, 3, b"\0data", b"/x")
    op, rid, body = decode_header(encode_reply(Op.RENAME, 42, rep))
    assert decode_reply(body) == rep


@pytest.mark.parametrize("mutate", [
    lambda m: m[:5],  # short header
    lambda m: b"XX" + m[2:],  # bad magic
    lambda m: m[:2] + bytes([VERSION + 1]) + m[3:],  # future version
    lambda m: m + b"junk",  # length mismatch
])
def test_bad_headers_are_rejected(mutate):
    msg = encode_request(1, Request(Op.STAT, b"/etc"))
    with pytest.raises(ProtocolError):
        decode_header(mutate(msg))


def test_bad_bodies_are_rejected():
    good = encode_request(1, Request(Op.STAT, b"/etc"))
    op, _, body = decode_header(good)
    with pytest.raises(ProtocolError):
        decode_request(200, body)  # unknown op
    with pytest.raises(ProtocolError):
        decode_request(op, body[:10])
    bad = bytearray(body)
    struct.pack_into("<H", bad, 60, 4000)  # name length beyond the body
    with pytest.raises(ProtocolError):
        decode_request(op, memoryview(bytes(bad)))
    with pytest.raises(ProtocolError):  # NUL inside a name
        decode_request(op, decode_header(encode_request(1, Request(Op.STAT, b"/e\0tc")))[2])


def test_globs():
    rs = RuleSet.build((PathRule("/etc/shadow"), PathRule("/root/**"), PathRule("/home/*/.ssh"),
                        PathRule("/var/**/secret-?.key"), PathRule("/data/[ab]*")))
    assert rs.match("/etc/shadow") == 0
    assert rs.match("/etc/shadow/x") == 0  # a denied path hides what is under it
    assert rs.match("/etc/shadowx") == -1
    assert rs.match("/root/a/b") == 1
    assert rs.match("/root") == -1  # `/root/**` is the contents, not the directory
    assert rs.match("/home/u/.ssh/id_rsa") == 2
    assert rs.match("/home/u/v/.ssh") == -1  # `*` stays within one component
    assert rs.match("/var/secret-1.key") == 3 and rs.match("/var/a/b/secret-2.key") == 3
    assert rs.match("/data/apple") == 4 and rs.match("/data/cherry") == -1


@pytest.fixture
def gofer(tmp_path):
    ns = SandboxNS(tmp_path)
    handle, sock = start_gofer(make_plan(deny=("/etc/shadow",)), ns.pid)
    client = GoferClient(sock)
    yield ns, handle, sock, client
    client.close()
    handle.close()
    ns.close()


def test_fuzz_never_crashes_the_gofer(gofer):
    ns, handle, sock, client = gofer
    rng = random.Random(1234)
    valid = encode_request(0x7FFFFFFF, Request(Op.OPEN, b"/etc/passwd"))
    answered = 0
    for i in range(1500):
        kind = i % 3
        if kind == 0:
            msg = rng.randbytes(rng.randrange(0, 200))
        elif kind == 1:  # a valid header with a random op and body
            body = rng.randbytes(rng.randrange(0, 120))
            msg = HEADER.pack(MAGIC, VERSION, rng.randrange(0, 256), 0x7FFF0000 + i, len(body)) + body
        else:  # a valid request with bytes flipped in the body
            b = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                b[rng.randrange(HEADER.size, len(b))] = rng.randrange(256)
            msg = bytes(b)
        if kind == 2 and rng.random() < 0.2:  # and sometimes junk descriptors attached
            r, w = os.pipe()
            socket.send_fds(sock, [msg], [r, w])
            os.close(r)
            os.close(w)
        else:
            sock.sendmsg([msg])
        # drain whatever came back (EPROTO replies, or replies with descriptors)
        sock.setblocking(False)
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(sock, 70000, 4)
                answered += 1
                for fd in fds:
                    os.close(fd)
        except BlockingIOError:
            pass
        finally:
            sock.setblocking(True)
    assert handle.poll() is None, "the Gofer died"
    time.sleep(0.1)  # let the last answers arrive, and drop them
    sock.setblocking(False)
    try:
        while True:
            for fd in socket.recv_fds(sock, 70000, 4)[1]:
                os.close(fd)
    except BlockingIOError:
        pass
    sock.setblocking(True)
    rep = client.call(Request(Op.PING))
    assert rep.ok and rep.data == b"pong"
    rep = client.call(Request(Op.OPEN, b"/etc/hostname"))
    assert rep.ok and rep.fd >= 0
    os.close(rep.fd)
    assert answered > 100  # malformed requests with a readable id got an answer


def test_gofer_is_confined(gofer):
    ns, handle, sock, client = gofer
    status = {}
    for line in open(f"/proc/{handle.pid}/status"):
        k, _, v = line.partition(":")
        status[k] = v.strip()
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    # not in the sandbox's pid namespace, but in its mount and user namespaces
    for ns_name, same in (("mnt", True), ("user", True), ("pid", False)):
        a = os.stat(f"/proc/{handle.pid}/ns/{ns_name}")
        b = os.stat(f"/proc/{ns.pid}/ns/{ns_name}")
        assert ((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)) is same, ns_name
    # only the socket and its /proc fd directory are open (no stdio, no launcher fds)
    assert len(os.listdir(f"/proc/{handle.pid}/fd")) == 3  # socket, fd dir, root


def test_gofer_death_is_seen_by_the_client(gofer):
    ns, handle, sock, client = gofer
    handle.kill()
    handle.wait()
    from sandboxctl.gofer.client import GoferGone

    with pytest.raises(GoferGone):
        client.call(Request(Op.PING))


def test_spinner_polls_then_sleeps_and_backs_off(monkeypatch):
    """A packet sent while the receiver polls is caught there; one sent after the window
    arrives through the blocking receive (a miss), after which the next receive does not
    poll at all; a packet caught in time halves the back-off. Descriptors come through
    either way. On one CPU, or with SANDBOXCTL_NO_SPIN, it never polls."""
    import threading

    from sandboxctl.gofer.protocol import MAX_MESSAGE, Spinner, recv_message

    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("polling is off on one CPU")
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    buf = bytearray(MAX_MESSAGE)
    sp = Spinner(0.2, late=0.15)
    try:
        threading.Timer(0.001, lambda: a.send(b"soon")).start()
        msg, fds, _ = recv_message(b, buf, sp)
        assert bytes(msg) == b"soon" and fds == [] and (sp.caught, sp.missed) == (1, 0)
        t0 = time.monotonic()
        threading.Timer(0.4, lambda: a.send(b"late")).start()
        msg, _, _ = recv_message(b, buf, sp)  # the window ends, then it sleeps
        assert bytes(msg) == b"late" and time.monotonic() - t0 >= 0.35
        assert (sp.caught, sp.missed, sp.skip, sp.penalty) == (1, 1, 1, 1)
        a.send(b"skipped")  # the one receive that does not poll
        assert bytes(recv_message(b, buf, sp)[0]) == b"skipped" and sp.skip == 0
        r, w = os.pipe()
        socket.send_fds(a, [b"fd"], [r])
        msg, fds, _ = recv_message(b, buf, sp)  # polled again, caught at once
        assert bytes(msg) == b"fd" and len(fds) == 1
        assert (sp.caught, sp.penalty) == (2, 0)
        for fd in (fds[0], r, w):
            os.close(fd)
    finally:
        a.close()
        b.close()
    try:
        os.sched_setaffinity(0, {min(cpus)})
        assert Spinner(0.001).window == 0.0
    finally:
        os.sched_setaffinity(0, cpus)
    assert Spinner(0.001).window == 0.001
    monkeypatch.setenv("SANDBOXCTL_NO_SPIN", "1")
    assert Spinner(0.001).window == 0.0


def test_a_gofer_that_cannot_start_is_one_clear_error():
    """The sandbox process is gone before the Gofer joins its namespaces: start_gofer
    says so in one sentence with a hint, and leaves no process behind."""
    from sandboxctl.engine.errors import SandboxError

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that no longer exists
    before = set(os.listdir("/proc"))
    with pytest.raises(SandboxError) as e:
        start_gofer(make_plan(), pid)
    msg = str(e.value)
    assert msg.startswith("the Gofer could not start: ") and "\n" not in msg, msg
    assert e.value.hint and "openat2" in e.value.hint
    time.sleep(0.1)
    children = [p for p in set(os.listdir("/proc")) - before if p.isdigit()]
    for p in children:
        try:
            with open(f"/proc/{p}/stat") as fh:
                assert int(fh.read().rsplit(")", 1)[1].split()[1]) != os.getpid(), p
        except FileNotFoundError:
            pass


def test_an_early_gofer_waits_for_its_sandbox_and_ends_when_cancelled(tmp_path):
    """spawn_gofer_early forks the Gofer before the sandbox's child is known: it sets up
    outside the sandbox (closing every descriptor it inherited) and waits; cancel() ends
    it (no sandbox) and reaps it; attach() points it at a sandbox, which it then serves."""
    from sandboxctl.gofer.process import spawn_gofer_early

    plan = make_plan()
    early = spawn_gofer_early(plan)
    time.sleep(0.2)  # set up and waiting
    with open(f"/proc/{early.pid}/status") as fh:
        assert "State:\tS" in fh.read()  # asleep on its socket, not serving, not spinning
    fds = os.listdir(f"/proc/{early.pid}/fd")
    assert len(fds) == 4, fds  # the connection, its fd directory, the ready pipe, the ns socket
    pid = early.pid
    early.cancel()
    assert not os.path.exists(f"/proc/{pid}")  # ended and reaped
    early.sock.close()

    ns = SandboxNS(tmp_path)
    try:
        early = spawn_gofer_early(plan)
        time.sleep(0.05)
        handle, sock = early.attach(ns.pid).ready()
        client = GoferClient(sock)
        try:
            assert client.call(Request(Op.STAT, b"/etc/hostname")).errno == 0
            assert client.call(Request(Op.STAT, b"/no/such/file")).errno == errno.ENOENT
        finally:
            client.close()
            handle.close()
    finally:
        ns.close()


def test_attach_takes_the_child_s_namespaces_at_once(tmp_path):
    """EarlyGofer.attach opens the child's namespaces (and its pidfds) in the launcher, at
    the call, and passes them as descriptors: what happens to the child afterwards (it
    execs an unreadable binary and is no longer dumpable, or, here, it is gone) does not
    stop the Gofer from joining them."""
    from sandboxctl.gofer.process import spawn_gofer_early

    ns = SandboxNS(tmp_path)
    try:
        early = spawn_gofer_early(make_plan())
        pending = early.attach(ns.pid)
        os.kill(ns.pid, 9)  # the child is gone before the Gofer has even read its pid
        handle, sock = pending.ready()
        client = GoferClient(sock)
        try:
            assert client.call(Request(Op.STAT, b"/etc/hostname")).errno == 0
        finally:
            client.close()
            handle.close()
    finally:
        ns.close()
