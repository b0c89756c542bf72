"""The compiled filter itself, loaded in forked children: allowed calls work, denied calls
return the profile's errno, argument conditions hold, and the other ABIs (i386 `int 0x80`,
x32 numbers) are refused (the process is killed with SIGSYS)."""

import ctypes
import mmap
import os
import signal
import subprocess

import pytest

from sandboxctl.engine.compile import compile_builtin, compile_profile
from sandboxctl.engine.filter import build_filter
from sandboxctl.engine import syscalls

from _helpers_engine import write

# x86 machine code: `mov eax, N; int 0x80; ret` and `mov eax, N; syscall; ret`.
I386_GETPID = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"  # i386 getpid is 20
X32_GETPID = b"\xb8\x27\x00\x00\x40\x0f\x05\xc3"  # x32: 0x40000000 | 39


def _machine_code(code: bytes):
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    return buf, ctypes.CFUNCTYPE(ctypes.c_long)(addr)


def in_child(flt, body) -> tuple[int, str]:
    """Fork; the child loads `flt` (if any) and runs body() -> str. Returns (wait status, output)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if flt is not None:
                flt.load()
            out = body()
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, data.decode()


def _syscall(name: str, *args: int) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(syscalls.number(name)), *(ctypes.c_long(a) for a in args))
    return f"{name}={ret if ret >= 0 else -ctypes.get_errno()}"


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    p = write(tmp_path_factory.mktemp("flt"), "p.yaml", """
        extends: default
        syscalls:
          deny:
            - {name: getppid, errno: EXDEV}
            - {name: socket, errno: EAFNOSUPPORT, args: [{index: 0, op: eq, value: AF_PACKET}]}
        audit: {denials: false}
        """)
    return compile_profile(p)


def test_allowed_and_denied_calls(plan):
    flt = build_filter(plan)

    def body():
        return " ".join([_syscall("getpid"), _syscall("getppid"), _syscall("ptrace", 0),
                         _syscall("socket", 17, 3, 0), _syscall("socket", 1, 1, 0)])

    status, out = in_child(flt, body)
    assert os.WIFEXITED(status), out
    got = dict(x.split("=") for x in out.split())
    assert int(got["getpid"]) > 0  # allowed
    assert int(got["getppid"]) == -18  # EXDEV, the profile's errno
    assert int(got["ptrace"]) == -1  # EPERM from default.yaml
    assert out.split()[3] == "socket=-97"  # AF_PACKET: EAFNOSUPPORT
    assert int(out.split()[4].split("=")[1]) >= 0  # AF_UNIX: allowed
    # without the filter, getppid works: the errno above came from the filter
    status, out = in_child(None, lambda: _syscall("getppid"))
    assert int(out.split("=")[1]) > 0


def _abi_call(code: bytes) -> str:
    _buf, fn = _machine_code(code)
    return f"ret={fn()}"


def test_i386_int80_is_refused(plan):
    status, out = in_child(None, lambda: _abi_call(I386_GETPID))
    if not (os.WIFEXITED(status) and out.startswith("ret=")):
        pytest.skip("this kernel has no i386 emulation: int 0x80 fails without a filter too")
    assert int(out.split("=")[1]) > 0  # works without the filter
    status, out = in_child(build_filter(plan), lambda: _abi_call(I386_GETPID))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, (status, out)
    assert out == ""


def test_x32_numbers_are_refused(plan):
    status, out = in_child(build_filter(plan), lambda: _abi_call(X32_GETPID))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, (status, out)


def _untrapped(plan):
    """The Plan with every trap resolved in the kernel (no Sentry in these tests)."""
    rules = tuple(r._replace(trap=False, action="allow" if r.action == "emulate" else r.action,
                             handler=None) for r in plan.seccomp.rules)
    sec = plan.seccomp._replace(rules=rules, default=plan.seccomp.default._replace(trap=False))
    return plan._replace(seccomp=sec)


def test_python_script_allow_list_runs_python():
    plan = _untrapped(compile_builtin("python-script"))
    flt = build_filter(plan)
    code = ("import os, hashlib, platform; u = os.uname(); "
            "print(u.sysname, hashlib.sha256(b'x').hexdigest()[:8], sum(range(10)))")
    out = subprocess.run(["python3", "-c", code], preexec_fn=flt.load, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1:] == ["2d711642", "45"]
    # a call outside the allow-list is refused with the default's EPERM
    out = subprocess.run(["python3", "-c", "import os; os.setsid()"], preexec_fn=flt.load,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0  # setsid is in @process
    out = subprocess.run(["python3", "-c", "import os; os.chroot('/')"], preexec_fn=flt.load,
                         capture_output=True, text=True, timeout=30)
    assert "Operation not permitted" in out.stderr


def _python(code: str):
    """`code` in a fresh interpreter (pyseccomp not imported yet)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def _python_ok(code: str) -> None:
    r = _python(code + "print('ok')\n")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_pyseccomp_loads_without_running_ldconfig():
    """engine.libseccomp.load(): pyseccomp finds libc and libseccomp by soname, without
    the two `ldconfig -p` subprocesses of ctypes.util.find_library (start-up time; and a
    process started after the keeper's unshare would become the pid namespace's init)."""
    refuse = ("import subprocess\n"
              "def refuse(*a, **k):\n"
              "    raise AssertionError('a subprocess was started: ' + repr(a[:1]))\n"
              "subprocess.Popen = refuse\n")
    _python_ok(refuse + "from sandboxctl.engine.libseccomp import load\nsc = load()\n"
               "assert sc.SyscallFilter(sc.ALLOW) is not None\n"
               "import pyseccomp\nassert pyseccomp is sc\n")
    # the plain import does start one (so the probe above can fail)
    r = _python(refuse + "import pyseccomp\n")
    assert r.returncode != 0 and "a subprocess was started" in r.stderr


def test_pyseccomp_loads_without_importing_ctypes_util():
    """load() gives pyseccomp a stand-in ctypes.util (importing the real one costs ~5-9 ms
    of start-up) and removes it after: a later `import ctypes.util` is the real module.
    With the real module already imported, load() leaves it as it was. Where the sonames
    do not load, the real find_library answers (with ctypes.util imported or not)."""
    _python_ok("import sys, ctypes\n"
               "from sandboxctl.engine.libseccomp import load\nsc = load()\n"
               "assert 'ctypes.util' not in sys.modules, 'ctypes.util was imported'\n"
               "assert not hasattr(ctypes, 'util')\n"
               "assert sc.SyscallFilter(sc.ALLOW) is not None\n"
               "import ctypes.util\n"
               "assert ctypes.util.find_library('m') is not None\n"
               "assert not hasattr(ctypes.util, '_sandboxctl_stand_in')\n")
    _python_ok("import sys, ctypes.util\nreal = sys.modules['ctypes.util']\n"
               "from sandboxctl.engine.libseccomp import load\nsc = load()\n"
               "assert sys.modules['ctypes.util'] is real and ctypes.util is real\n"
               "assert sc.SyscallFilter(sc.ALLOW) is not None\n")
    for pre in ("", "import ctypes.util\n"):
        _python_ok(pre + "import sys, ctypes\nimport sandboxctl.engine.libseccomp as L\n"
                   "L._SONAMES['seccomp'] = 'libseccomp-none.so.9'\nsc = L.load()\n"
                   "assert sc.SyscallFilter(sc.ALLOW) is not None\n"
                   "assert not getattr(sys.modules['ctypes.util'], '_sandboxctl_stand_in', False)\n")
