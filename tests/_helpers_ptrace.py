"""Helpers for the ptrace platform tests: small Plans built directly from the Plan
dataclasses (no profile compiler needed), and a runner for traced commands."""

from __future__ import annotations

import io
import pyseccomp

from sandboxctl.engine.filter import build_filter
from sandboxctl.engine.plan import (DefaultAction, GoferConfig, LaunchConfig, NetworkConfig,
                                    Plan, RootConfig, SeccompPlan, SentryConfig, SyscallRule,
                                    UnameConfig)


def nr(name: str) -> int:
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


def make_plan(emulate: dict[str, str] | None = None, deny: dict[str, int] | None = None,
              kill: tuple[str, ...] = (), trap_deny: bool = True,
              observe_exec: bool = True) -> Plan:
    """Default allow; `emulate` {syscall: handler} trapped; `deny` {syscall: errno}
    (trapped when trap_deny, as with audit on); `kill` names trapped kill rules;
    execve/execveat trapped and observed, as the compiler makes them."""
    rules = []
    if observe_exec:  # as the compiler does: execve/execveat trapped, observed
        for name in ("execve", "execveat"):
            rules.append(SyscallRule(name, nr(name), "allow", trap=True, handler="execve"))
    for name, handler in (emulate or {}).items():
        rules.append(SyscallRule(name, nr(name), "emulate", trap=True, handler=handler))
    for name, err in (deny or {}).items():
        rules.append(SyscallRule(name, nr(name), "deny", errno=err, trap=trap_deny))
    for name in kill:
        rules.append(SyscallRule(name, nr(name), "kill", trap=True))
    return Plan(
        version=1, profile_name="test", profile_file="test.yaml", profile_sha256="0" * 64,
        seccomp=SeccompPlan("x86_64", DefaultAction("allow"), tuple(rules)),
        sentry=SentryConfig(uname=UnameConfig()),
        gofer=GoferConfig(mediation="direct", root=RootConfig()),
        network=NetworkConfig(mode="none"),
        launch=LaunchConfig(command=("true",), platform="ptrace"),
    )


def run_traced(argv, plan: Plan | None = None, dispatch=None, strace=None, env=None,
               events=None, may_block=None):
    """Run argv under the ptrace platform with the Plan's host filter and the real
    Sentry dispatcher (or `dispatch(call, mem)`); return (TraceResult, tracer).
    Events the Sentry emits are appended to `events` (a list) when given."""
    from sandboxctl.sentry.call import SentryContext
    from sandboxctl.sentry.dispatch import Dispatcher
    from sandboxctl.sentry.platform_ptrace import PtraceTracer, spawn_traced

    if dispatch is None and plan is not None:
        sink = events.append if events is not None else (lambda ev: None)
        dispatch = Dispatcher(SentryContext(plan=plan, emit=sink)).dispatch
    tracer = PtraceTracer(dispatch=dispatch, strace=strace, may_block=may_block)
    flt = build_filter(plan, platform="ptrace") if plan is not None else None
    spawn_traced(list(argv), tracer, load_filter=flt.load if flt is not None else None, env=env)
    return tracer.run(), tracer


def strace_buffer(syscalls=None):
    from sandboxctl.sentry.strace import StraceLog

    buf = io.StringIO()
    return StraceLog(buf, syscalls), buf
