"""The Sentry's and the Gofer's own seccomp filters, kept as BPF in the cache
(engine/cache.py, own_filter_bpf): the same program libseccomp builds, made again when
what it depends on changes or the cached file is damaged or not trusted, and loaded raw
into a real process, where it refuses and kills as the rule lists say."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandboxctl.engine.cache import own_filter_bpf

@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("SANDBOXCTL_CACHE_DIR", str(d))
    return d


def test_own_filters_are_built_once_per_stamp_and_remade_when_damaged_or_untrusted(cache):
    built = []

    def build() -> bytes:
        built.append(1)
        return b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # one BPF instruction: RET ALLOW

    code = own_filter_bpf("t", ("a", 1), build)
    (f,) = cache.iterdir()
    assert code == own_filter_bpf("t", ("a", 1), build) and len(built) == 1
    own_filter_bpf("t", ("a", 2), build)  # another stamp: another program
    assert len(built) == 2 and len(list(cache.iterdir())) == 2
    f.write_bytes(b"\x00" * 7)  # not a whole instruction
    assert own_filter_bpf("t", ("a", 1), build) == code and len(built) == 3
    f.chmod(0o666)  # anyone may write it: not used
    f.write_bytes(b"\x00" * 8)
    assert own_filter_bpf("t", ("a", 1), build) == code and len(built) == 4
    assert f.stat().st_mode & 0o777 == 0o600  # and replaced by this user's own


def test_the_cached_programs_are_libseccomps(cache):
    from sandboxctl.engine.filter import bpf_of
    from sandboxctl.gofer import confine as gconfine
    from sandboxctl.sentry import confine as sconfine

    ioctls = (0xC0502100, 0xC0182101, 0x40082102, 0xC0182103)
    for _ in range(2):  # built, then from the cache
        assert sconfine.sentry_filter_bpf(ioctls) == bpf_of(sconfine.build_sentry_filter(ioctls))
        assert gconfine.filter_bpf() == bpf_of(gconfine.build_filter())
    assert len([p for p in cache.iterdir() if p.name.startswith("own-")]) == 2


# Run in a child of its own: the filter stays for life. Prints what each call gave.
PROBE = textwrap.dedent(r"""
    import ctypes, errno, os, sys
    which = sys.argv[1]
    if which == "sentry":
        from sandboxctl.sentry.confine import confine, sentry_filter_bpf
        confine(sentry_filter_bpf((0xC0502100,)))
    else:
        from sandboxctl.gofer.confine import filter_bpf, load_filter
        load_filter(filter_bpf())
    libc = ctypes.CDLL(None, use_errno=True)
    print("getpid", os.getpid() > 0, flush=True)
    r = libc.syscall(165, b"none", b"/nowhere", b"tmpfs", 0, None)  # mount
    print("unreachable", r, flush=True)
""")


@pytest.mark.parametrize("which", ["sentry", "gofer"])
def test_a_filter_loaded_from_the_cache_kills_on_a_fatal_call(cache, which):
    env = dict(os.environ, SANDBOXCTL_CACHE_DIR=str(cache))
    for _ in range(2):  # built, then loaded from the cache
        cp = subprocess.run([sys.executable, "-c", PROBE, which], capture_output=True,
                            text=True, env=env, timeout=30)
        assert cp.stdout.splitlines() == ["getpid True"], cp.stderr
        assert cp.returncode == -31  # SIGSYS: mount is fatal in both lists
    assert any(p.name.startswith(f"own-{which}.bpf-") for p in cache.iterdir())


def test_the_sentrys_filter_from_the_cache_refuses_what_it_does_not_list(cache):
    probe = textwrap.dedent(r"""
        import os
        from sandboxctl.sentry.confine import confine, sentry_filter_bpf
        confine(sentry_filter_bpf((0xC0502100,)))
        try:
            os.mkdir("/nonexistent-dir/x")
        except OSError as exc:
            print(exc.errno)
    """)
    env = dict(os.environ, SANDBOXCTL_CACHE_DIR=str(cache))
    cp = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                        env=env, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == str(errno.EPERM)  # not ENOENT: the kernel never ran it
