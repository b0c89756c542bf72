"""Helpers for the Sentry tests: Plans built by hand, small C programs compiled once."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from sandboxctl.engine.plan import (
    ArgCond, DefaultAction, GoferConfig, LaunchConfig, NetworkConfig, Plan, RootConfig,
    SeccompPlan, SentryConfig, Source, SyscallRule, UnameConfig,
)

PROFILE = "sentry-test.yaml"
LINES = {"uname": 10, "execve": 11, "execveat": 12, "unshare": 13, "mount": 14, "ptrace": 15,
         "sethostname": 16, "getppid": 17}


def rule(name: str, nr: int, action: str, errno: int = 0, handler: str | None = None,
         args: tuple[ArgCond, ...] = ()) -> SyscallRule:
    line = LINES.get(name, 30)
    return SyscallRule(name, nr, action, errno, args, True, handler,  # type: ignore[arg-type]
                       Source(PROFILE, line, 5, f"- {name}"))


def make_plan(release: str = "4.4.0-sentry-test", hostname: str = "sbx-test",
              extra: tuple[SyscallRule, ...] = ()) -> Plan:
    rules = (
        rule("uname", 63, "emulate", handler="uname"),
        rule("execve", 59, "allow", handler="execve"),
        rule("execveat", 322, "allow", handler="execve"),
        rule("unshare", 272, "deny", errno=1),
        rule("mount", 165, "deny", errno=13),
        rule("ptrace", 101, "kill"),
    ) + extra
    return Plan(1, "sentry-test", PROFILE, "0" * 64,
                SeccompPlan("x86_64", DefaultAction("allow"), rules),
                SentryConfig(UnameConfig(release=release, nodename=hostname)),
                GoferConfig("direct", RootConfig()), NetworkConfig("none"),
                LaunchConfig(command=("true",), hostname=hostname))


C_PROGRAMS = {
    # uname in the main thread, in a forked child, in a pthread; unshare in a pthread;
    # then exec of another binary.
    "family": r'''
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
static void *thr(void *a) {
    struct utsname u; uname(&u);
    int r = unshare(CLONE_NEWNS);
    printf("thread release=%s unshare=%d errno=%d\n", u.release, r, r ? errno : 0);
    return 0;
}
int main(int argc, char **argv) {
    struct utsname u; uname(&u);
    printf("main release=%s node=%s\n", u.release, u.nodename); fflush(stdout);
    pid_t p = fork();
    if (p == 0) { uname(&u); printf("child release=%s\n", u.release); fflush(stdout); _exit(0); }
    int st; waitpid(p, &st, 0);
    pthread_t t; pthread_create(&t, 0, thr, 0); pthread_join(t, 0);
    fflush(stdout);
    execl("/bin/uname", "uname", "-r", (char *)0);
    return 99;
}
''',
    # many threads hammering a trapped call: every answer must be the profile's
    "threads": r'''
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
static int bad;
static void *thr(void *a) {
    for (int i = 0; i < 300; i++) { struct utsname u; memset(&u, 0, sizeof u);
        if (uname(&u) || strcmp(u.release, (char *)a)) __atomic_add_fetch(&bad, 1, 0); }
    return 0;
}
int main(int argc, char **argv) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], 0, thr, argv[1]);
    for (int i = 0; i < 8; i++) pthread_join(t[i], 0);
    printf("bad=%d\n", bad); return bad != 0;
}
''',
    "mount": r'''
#include <errno.h>
#include <stdio.h>
#include <sys/mount.h>
int main(void) {
    int r = mount("none", "/mnt", "tmpfs", MS_NOSUID, 0);
    printf("mount=%d errno=%d\n", r, r ? errno : 0); return 0;
}
''',
    "ptrace": r'''
#include <stdio.h>
#include <sys/ptrace.h>
int main(void) {
    printf("before\n"); fflush(stdout);
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    printf("survived\n"); return 0;
}
''',
    # waits until stdin closes (lets a test look at the Sentry while the program runs)
    "wait": r'''
#include <stdio.h>
#include <sys/utsname.h>
#include <unistd.h>
int main(void) {
    struct utsname u; uname(&u); printf("%s\n", u.release); fflush(stdout);
    char c; while (read(0, &c, 1) > 0) {}
    uname(&u); printf("%s\n", u.release); return 0;
}
''',
}


@contextlib.contextmanager
def sandbox_visible_dir(prefix: str, mode: int = 0o755) -> Iterator[Path]:
    """A scratch directory under /var/tmp, which the default profile's read-only root
    shows (its /tmp is a tmpfs of its own), with `mode`; removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(d, mode)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def build_c(dest: Path, name: str, source: str, opt: str = "-O1") -> str:
    """Compile `source` (with pthreads) to dest/name; the executable's path."""
    c = dest / f"{name}.c"
    c.write_text(source)
    exe = dest / name
    subprocess.run(["gcc", opt, "-pthread", "-o", str(exe), str(c)], check=True)
    return str(exe)


def build_programs(dest: Path) -> dict[str, str]:
    return {name: build_c(dest, name, src) for name, src in C_PROGRAMS.items()}


def events(run_dir) -> list[dict]:
    import json

    return [json.loads(l) for l in (Path(run_dir) / "events.jsonl").read_text().splitlines() if l]


def env() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


# -- handlers for tests of the dispatcher's rules (registered with with_test_handlers) -----


def peek_then_continue(ctx, call, mem):
    """Breaks the TOCTOU rule on purpose: reads the caller's memory, then asks to continue."""
    from sandboxctl.sentry.call import Continue

    try:
        mem.read(call.args[0], 1)
    except OSError:
        pass
    return Continue()


def slow_answer(ctx, call, mem):
    """A handler that blocks (like a Gofer open of a FIFO)."""
    import time

    from sandboxctl.sentry.call import Return

    time.sleep(1.5)
    return Return(42)


def with_test_handlers(monkeypatch) -> None:
    """Add `peek` and `slow` to the Sentry's table (inherited by the forked Sentry)."""
    from sandboxctl.sentry import dispatch, table

    real = table.load_table

    def load():
        t = dict(real())
        t["peek"] = table.Entry("_helpers_sentry:peek_then_continue", "partial", "test")
        t["slow"] = table.Entry("_helpers_sentry:slow_answer", "partial", "test", may_block=True)
        return t

    monkeypatch.setattr(dispatch, "load_table", load)


C_PROGRAMS["slow"] = r'''
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
static long got;
static void *thr(void *a) { got = syscall(SYS_getppid); return 0; }
int main(void) {
    pthread_t t; pthread_create(&t, 0, thr, 0);
    usleep(100000);
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    struct utsname u;
    for (int i = 0; i < 200; i++) uname(&u);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("unames_ms=%ld\n", (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000);
    pthread_join(t, 0);
    printf("getppid=%ld\n", got);
    return 0;
}
'''


INJECT_PATH = ""  # set by the test before the Sentry is forked


def inject_file(ctx, call, mem):
    """Open INJECT_PATH in the Sentry and install it in the caller (ADDFD|SEND)."""
    import os

    from sandboxctl.sentry.call import InjectFd

    return InjectFd(os.open(INJECT_PATH, os.O_RDONLY), cloexec=True)


def with_inject_handler(monkeypatch, path: str) -> None:
    import _helpers_sentry
    from sandboxctl.sentry import dispatch, table

    monkeypatch.setattr(_helpers_sentry, "INJECT_PATH", path)
    real = table.load_table

    def load():
        t = dict(real())
        t["inject"] = table.Entry("_helpers_sentry:inject_file", "partial", "test")
        return t

    monkeypatch.setattr(dispatch, "load_table", load)


C_PROGRAMS["inject"] = r'''
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    long fd = syscall(SYS_getppid);
    char buf[64] = {0};
    long n = fd >= 0 ? read((int)fd, buf, sizeof buf - 1) : -1;
    int fl = fd >= 0 ? fcntl((int)fd, F_GETFD) : -1;
    printf("fd=%ld cloexec=%d data=%s\n", fd, (fl & FD_CLOEXEC) ? 1 : 0, n > 0 ? buf : "");
    return 0;
}
'''


def try_socket(ctx, call, mem):
    """What a compromised handler would try: a new socket. The Sentry's filter refuses."""
    import socket

    from sandboxctl.sentry.call import Return

    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        return Return(0)
    except OSError as e:
        return Return(100 + (e.errno or 0))  # 101: EPERM


def try_exec(ctx, call, mem):
    """A compromised handler trying to run a program: the Sentry's filter kills it."""
    import os

    os.execv("/bin/true", ["true"])


def with_escape_handlers(monkeypatch) -> None:
    from sandboxctl.sentry import dispatch, table

    real = table.load_table

    def load():
        t = dict(real())
        t["try_socket"] = table.Entry("_helpers_sentry:try_socket", "partial", "test")
        t["try_exec"] = table.Entry("_helpers_sentry:try_exec", "partial", "test")
        return t

    monkeypatch.setattr(dispatch, "load_table", load)


C_PROGRAMS["i386"] = r'''
#include <stdio.h>
int main(void) {
    long r; printf("before\n"); fflush(stdout);
    __asm__ volatile ("int $0x80" : "=a"(r) : "a"(20) : "memory");  /* i386 getpid */
    printf("after %ld\n", r); return 0;
}
'''


C_PROGRAMS["slowmany"] = r'''
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static long got[8];
static void *thr(void *a) { got[(long)a] = syscall(SYS_getppid); return 0; }
int main(void) {
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_t t[8];
    for (long i = 0; i < 8; i++) pthread_create(&t[i], 0, thr, (void *)i);
    for (int i = 0; i < 8; i++) pthread_join(t[i], 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long sum = 0; for (int i = 0; i < 8; i++) sum += got[i];
    printf("ms=%ld sum=%ld\n", (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000, sum);
    return 0;
}
'''
