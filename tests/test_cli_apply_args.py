"""`apply`'s argument fast path (cmd_apply.parse_fast) against argparse.

parse_fast reads the common command lines without argparse (start-up time); for every
command line it accepts, the result must be the one argparse gives, and everything else
must be left to argparse (None). Also: a real `sandboxctl apply` through each path."""

from __future__ import annotations

import subprocess

from hypothesis import given, settings, strategies as st

from sandboxctl.cli.cmd_apply import _OPTIONS, parse_fast
from sandboxctl.cli.main import build_parser

_FIELDS = ("profile", "command", "debug", "no_cache", "platform", "strace", "strace_syscalls", "tty")


def _argparse(argv: list[str]) -> dict | None:
    try:
        ns = build_parser("apply").parse_args(["apply", *argv])
    except SystemExit:
        return None
    return {f: getattr(ns, f) for f in _FIELDS}


def _fast(argv: list[str]) -> dict | None:
    ns = parse_fast(argv)
    return None if ns is None else {f: getattr(ns, f) for f in _FIELDS}


def _effective(d: dict) -> dict:
    """What cmd_apply.run makes of the command (it drops one leading "--")."""
    d = dict(d)
    if d["command"][:1] == ["--"]:
        d["command"] = d["command"][1:]
    return d


COMMON = [
    ["default", "--", "true"],
    ["default"],
    ["default", "--"],
    ["default", "true"],
    ["default", "uname", "-a"],
    ["default", "--", "sh", "-c", "echo hi"],
    ["default", "--", "ls", "-l", "/"],
    ["profiles/default.yaml", "--", "true"],
    ["plan.json", "--", "true"],
    ["--debug", "default", "--", "true"],
    ["--no-cache", "--debug", "default", "--", "true"],
    ["--platform", "ptrace", "default", "--", "uname", "-a"],
    ["--platform=seccomp-notify", "default", "true"],
    ["--strace=-", "--strace-syscalls", "openat,read", "default", "--", "cat", "/etc/hostname"],
    ["--strace=log", "default", "--", "true"],
    ["--strace=", "default", "--", "true"],
    ["--tty", "never", "default", "--", "true"],
    ["--tty=always", "--tty=never", "default", "--", "true"],
    ["--debug", "--debug", "default"],
]

LEFT_TO_ARGPARSE = [
    [],
    ["-h"],
    ["--help"],
    ["--deb", "default"],  # an abbreviation argparse may accept
    ["--strace", "default", "--", "true"],  # argparse takes `default` as the value
    ["--platform", "vm", "default"],  # a bad choice: argparse words the error
    ["--platform=vm", "default"],
    ["--debug=1", "default"],
    ["default", "--debug", "--", "true"],  # an option after the profile
    ["default", "-x"],
    ["default", "true", "--", "x"],
    ["default", "--", "a", "--", "b"],
    ["--tty", "--debug", "default"],
    ["--", "default", "true"],
    ["--platform"],
]


def test_common_command_lines_take_the_fast_path_and_agree_with_argparse():
    for argv in COMMON:
        fast = _fast(argv)
        assert fast is not None, argv
        slow = _argparse(argv)
        assert slow is not None, argv
        assert _effective(fast) == _effective(slow), argv


def test_unusual_command_lines_are_left_to_argparse():
    for argv in LEFT_TO_ARGPARSE:
        assert parse_fast(argv) is None, argv


def test_options_table_is_what_argparse_gets():
    """add_arguments builds argparse's options from the same table parse_fast reads."""
    parser = build_parser("apply")
    sub = next(a for a in parser._actions if a.dest == "command")  # the subparsers action
    apply_parser = sub.choices["apply"]
    flags = {s for a in apply_parser._actions for s in a.option_strings} - {"-h", "--help"}
    assert flags == {o.flag for o in _OPTIONS}


_TOKENS = st.sampled_from([
    "default", "true", "x", "-x", "--", "-", "--debug", "--no-cache", "--platform", "ptrace",
    "seccomp-notify", "vm", "--platform=ptrace", "--strace", "--strace=-", "--strace=log",
    "--strace-syscalls", "openat,read", "--tty", "never", "always", "--tty=auto", "--no",
    "-h", "--debug=", "a=b", "",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=7))
def test_fast_path_never_disagrees_with_argparse(argv):
    fast = _fast(argv)
    if fast is None:
        return
    slow = _argparse(argv)
    assert slow is not None, argv
    assert _effective(fast) == _effective(slow), argv


def test_apply_runs_through_both_paths():
    """The same sandbox through the fast path and through argparse (an abbreviation)."""
    fast = subprocess.run(["sandboxctl", "apply", "--tty=never", "default", "--", "sh", "-c",
                           "echo fast; exit 3"], capture_output=True, text=True, timeout=60)
    assert (fast.returncode, fast.stdout) == (3, "fast\n"), fast.stderr
    slow = subprocess.run(["sandboxctl", "apply", "--tt", "never", "default", "--", "sh", "-c",
                           "echo slow; exit 4"], capture_output=True, text=True, timeout=60)
    assert (slow.returncode, slow.stdout) == (4, "slow\n"), slow.stderr
    bad = subprocess.run(["sandboxctl", "apply", "--platform", "vm", "default"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
