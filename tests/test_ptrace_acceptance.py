"""The Sentry issue's acceptance tests, run again on platform ptrace.

The Sentry's own test modules (test_sentry_notify.py: hand-built Plans through
sentry.direct.run_direct; test_sentry_apply.py: `sandboxctl apply` with namespaces and the
Gofer) are collected here a second time, with the platform switched to ptrace: their Plans
get `launch.platform = "ptrace"`, their `apply` gets `--platform ptrace`. Same tests,
same assertions, the other platform (see tests/_helpers_platform.py).
"""

from __future__ import annotations

import pytest

import test_sentry_apply as _apply_mod
import test_sentry_notify as _notify_mod
from _helpers_platform import with_platform


def _collect(mod, prefix: str) -> None:
    for name, value in vars(mod).items():
        if name.startswith("test_") and callable(value):
            globals()[f"{name}__{prefix}"] = value
        elif name in ("progs", "state", "env"):  # the module's fixtures the tests use
            globals()[name] = value


_collect(_notify_mod, "ptrace")
_collect(_apply_mod, "ptrace_apply")


@pytest.fixture(autouse=True)
def _on_ptrace(monkeypatch):
    make_plan = _notify_mod.make_plan
    monkeypatch.setattr(_notify_mod, "make_plan",
                        lambda *a, **k: with_platform(make_plan(*a, **k), "ptrace"))
    apply = _apply_mod.apply

    def apply_ptrace(env, *cmd, extra=(), **kw):
        return apply(env, *cmd, extra=("--platform", "ptrace", *extra), **kw)

    monkeypatch.setattr(_apply_mod, "apply", apply_ptrace)
