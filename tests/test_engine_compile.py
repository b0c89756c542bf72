"""The compiler: traps, sources, groups, mediation, synthetic files, determinism."""

import json
import subprocess

from sandboxctl.engine.compile import compile_builtin, compile_profile, kernel_consistent
from sandboxctl.engine.filter import build_filter, decide
from sandboxctl.engine.groups import expand
from sandboxctl.engine.plan import Plan
from sandboxctl.engine import syscalls

from _helpers_engine import PY, REPO, write


def rules(plan, name):
    return [r for r in plan.seccomp.rules if r.name == name]


def test_default_profile_traps_and_denials():
    plan = compile_builtin("default")
    (u,) = rules(plan, "uname")
    assert (u.action, u.trap, u.handler) == ("emulate", True, "uname")
    for name in ("execve", "execveat"):
        (r,) = rules(plan, name)
        assert (r.action, r.trap, r.handler) == ("allow", True, "execve")
    for name in ("sethostname", "setdomainname", "io_uring_setup", "ptrace", "bpf", "unshare",
                 "open_by_handle_at", "kexec_load", "mount", "process_vm_writev"):
        (r,) = rules(plan, name)
        assert (r.action, r.errno, r.trap) == ("deny", 1, True), name
    (o,) = rules(plan, "openat")
    assert (o.action, o.trap, o.handler) == ("emulate", True, "openat")
    assert plan.seccomp.default.action == "allow" and not plan.seccomp.default.trap
    assert not rules(plan, "getppid")  # plain allows need no rule under default allow
    assert plan.sentry.uname.release == "4.4.0" and plan.sentry.uname.nodename == "sandbox"
    assert plan.network.mode == "none" and plan.gofer.root.overlay == "memory"
    assert plan.gofer.root.readonly


def test_rule_sources_point_at_profile_lines():
    plan = compile_builtin("default")
    text = (REPO / "profiles" / "default.yaml").read_text().splitlines()
    (r,) = rules(plan, "ptrace")
    assert r.source.file == "profiles/default.yaml"
    assert text[r.source.line - 1].strip() == "- ptrace" == r.source.text
    assert r.source.col == text[r.source.line - 1].index("ptrace") + 1


def test_group_entries_point_at_the_group_line(tmp_path):
    p = write(tmp_path, "p.yaml", """
        syscalls:
          default: {action: deny, errno: ENOSYS}
          allow:
            - "@time"
            - {name: socket, args: [{index: 0, op: eq, value: AF_UNIX}, {index: 1, op: masked_eq, mask: SOCK_STREAM|SOCK_DGRAM, value: SOCK_STREAM}]}
        filesystem: {mediation: direct}
        """)
    plan = compile_profile(p)
    for name in expand("time"):
        (r,) = rules(plan, name)
        assert (r.source.line, r.source.col, r.source.text) == (6, 7, '- "@time"')
        assert r.action == "allow" and not r.trap
    (s,) = rules(plan, "socket")
    assert [(a.index, a.op, a.value, a.mask, a.symbol) for a in s.args] == [
        (0, "eq", 1, 0, "AF_UNIX"), (1, "masked_eq", 1, 3, "SOCK_STREAM")]
    assert plan.seccomp.default.errno == 38 and plan.seccomp.default.trap
    assert not rules(plan, "openat")  # not allowed: stays denied by the default
    assert [r.nr for r in plan.seccomp.rules] == sorted(r.nr for r in plan.seccomp.rules)


def test_gofer_mediation_only_for_allowed_calls(tmp_path):
    p = write(tmp_path, "p.yaml", """
        syscalls:
          default: {action: deny}
          allow: ["@default", openat, {name: mkdirat, action: log}]
          deny: [{name: unlinkat, errno: EROFS}]
        """)
    plan = compile_profile(p)
    (o,) = rules(plan, "openat")
    assert (o.action, o.handler, o.trap) == ("emulate", "openat", True)
    (m,) = rules(plan, "mkdirat")
    assert m.action == "emulate"
    (u,) = rules(plan, "unlinkat")
    assert (u.action, u.errno, u.trap) == ("deny", 30, True)
    assert not rules(plan, "rename")


def test_audit_off_leaves_denials_in_the_kernel(tmp_path):
    p = write(tmp_path, "p.yaml", """
        extends: default
        audit: {denials: false}
        syscalls:
          default: {action: deny, errno: EPERM}
          log: [getppid]
          kill: [ptrace]
        """)
    plan = compile_profile(p)
    assert not plan.seccomp.default.trap
    assert not any(r.trap for r in rules(plan, "unshare") + rules(plan, "ptrace") + rules(plan, "getppid"))
    assert rules(plan, "ptrace")[0].action == "kill"
    assert rules(plan, "getppid")[0].action == "log"


def test_mixed_actions_for_one_call_are_trapped_and_decided_in_order(tmp_path):
    p = write(tmp_path, "p.yaml", """
        audit: {denials: false}
        filesystem: {mediation: direct}
        syscalls:
          default: {action: allow}
          allow: [{name: socket, args: [{index: 0, op: eq, value: AF_UNIX}]}]
          deny: [{name: socket, errno: EACCES}]
        """)
    plan = compile_profile(p)
    s = rules(plan, "socket")
    assert [r.action for r in s] == ["allow", "deny"] and all(r.trap for r in s)
    nr = syscalls.number("socket")
    assert decide(plan, nr, (1, 1, 0, 0, 0, 0)).action == "allow"
    assert decide(plan, nr, (2, 1, 0, 0, 0, 0)).errno == 13
    build_filter(plan)


def test_kernel_consistent_keeps_simple_cases():
    plan = compile_builtin("python-script")
    s = rules(plan, "socket")  # conditional allow over a deny default: kernel can do it
    assert len(s) == 1 and not s[0].trap
    assert kernel_consistent(list(s), plan.seccomp.default) == list(s)


def test_synthetic_files_and_uname():
    plan = compile_builtin("network-client")
    files = {f.path: f.content for f in plan.sentry.synthetic_files}
    u = plan.sentry.uname
    assert files["/proc/sys/kernel/osrelease"] == "4.4.0\n"
    assert files["/proc/version"].startswith(f"Linux version 4.4.0 (sandbox@sandboxctl) {u.version}")
    assert files["/etc/hostname"] == files["/proc/sys/kernel/hostname"] == "sandbox\n"
    assert files["/etc/resolv.conf"] == f"nameserver {plan.network.gateway}\n"
    assert plan.gofer.synthetic_files == plan.sentry.synthetic_files
    assert "/etc/resolv.conf" not in {f.path for f in compile_builtin("default").sentry.synthetic_files}
    assert plan.network.egress[0].cidr == "127.0.0.1/32" and plan.network.egress[0].ports == (8080,)


def test_mount_source_resolved_relative_to_profile(tmp_path):
    plan = compile_builtin("python-script")
    (work,) = [m for m in plan.gofer.mounts if m.target == "/work"]
    assert work.source == str(REPO / "profiles" / "examples" / "python-app")
    assert work.readonly and work.type == "bind"
    assert plan.launch.command == ("python3", "/work/app.py") and plan.launch.uid == 65534


def test_plan_json_is_deterministic_across_processes():
    code = ("from sandboxctl.engine.compile import compile_builtin as c;"
            "import sys; sys.stdout.write(c('python-script').to_json())")
    outs = {subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(outs) == 1
    (out,) = outs
    plan = Plan.from_json(out)
    assert plan == compile_builtin("python-script") and plan.to_json() == out
    assert len(json.loads(out)["profile_sha256"]) == 64


def test_hash_changes_with_the_profile(tmp_path):
    p = write(tmp_path, "p.yaml", "extends: default\nuname: {release: 5.0.0}\n")
    a = compile_profile(p).profile_sha256
    p.write_text(p.read_text().replace("5.0.0", "5.0.1"))
    assert compile_profile(p).profile_sha256 != a


def test_conditional_entry_keeps_mediation_for_the_other_cases(tmp_path):
    p = write(tmp_path, "p.yaml", """
        syscalls:
          deny: [{name: openat, errno: EACCES, args: [{index: 2, op: masked_eq, mask: O_ACCMODE, value: O_WRONLY}]}]
        """)
    plan = compile_profile(p)
    o = rules(plan, "openat")
    assert [(r.action, r.trap, bool(r.args)) for r in o] == [("deny", True, True), ("emulate", True, False)]
    nr = syscalls.number("openat")
    assert decide(plan, nr, (0, 0, 1, 0, 0, 0)).errno == 13
    assert decide(plan, nr, (0, 0, 0, 0, 0, 0)).handler == "openat"
    build_filter(plan)


def test_env_values_read_as_written(tmp_path):
    p = write(tmp_path, "p.yaml", "process:\n  env: {A: true, B: 1, C: x, D: 0x10}\n")
    assert compile_profile(p).launch.env == (("A", "true"), ("B", "1"), ("C", "x"), ("D", "16"))
