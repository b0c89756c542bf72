"""Compile a profile and print what will be enforced: the Plan as JSON (deterministic:
the same profile prints the same bytes), the host seccomp filter as libseccomp's
pseudo-filter code (pfc), or the raw BPF program (bpf, binary: redirect it to a file).

examples:
  sandboxctl compile profiles/default.yaml
  sandboxctl compile profiles/examples/python-script.yaml --format pfc | less
  sandboxctl compile my.yaml --format bpf --platform ptrace > filter.bpf
  sandboxctl compile my.yaml | jq '.seccomp.rules[] | select(.trap) | .name'
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", metavar="PROFILE", help="profile file, or a built-in name")
    parser.add_argument("--format", choices=("json", "pfc", "bpf"), default="json",
                        help="json: the Plan (default); pfc: the filter as text; bpf: raw filter")
    parser.add_argument("--platform", choices=("seccomp-notify", "ptrace"), default=None,
                        help="build the filter for this platform instead of the profile's")
    parser.add_argument("--no-cache", action="store_true",
                        help="ignore the cache of profiles already compiled")


def run(args: argparse.Namespace) -> int:
    import os

    from ..engine.cache import compile_cached
    from ..engine.extends import builtin_path, display_name

    path = args.profile
    display = None
    if not os.path.exists(path) and builtin_path(path) is not None:
        p = builtin_path(path)
        path, display = str(p), display_name(p)
    overrides = {"platform": args.platform} if args.platform else None
    plan = compile_cached(path, display=display, overrides=overrides,
                          use_cache=not args.no_cache)
    if args.format == "json":
        sys.stdout.write(plan.to_json())
        return 0
    from ..engine.filter import FilterBuildError, export_bpf, export_pfc
    from ..engine.errors import SandboxctlError

    try:
        if args.format == "pfc":
            sys.stdout.write(export_pfc(plan))
        else:
            if sys.stdout.isatty():
                raise SandboxctlError("refusing to write binary BPF to a terminal",
                                      hint="redirect it: sandboxctl compile P --format bpf > f.bpf")
            sys.stdout.flush()
            sys.stdout.buffer.write(export_bpf(plan))
    except FilterBuildError as exc:
        raise SandboxctlError(str(exc)) from None
    return 0
