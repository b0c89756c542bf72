"""sandboxctl diff: every kind of row and every risk level, git revisions, output formats,
exit codes. Profiles are real files compiled by the real compiler."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from _helpers_review import cli, line_of, profile_text, sandboxctl, write

from sandboxctl.engine.compile import compile_profile
from sandboxctl.engine.diff import diff_plans
from sandboxctl.engine.risk import LEVELS, load_risk

BOOK = load_risk()
BASE_SYS = ("syscalls:\n  default: {action: deny, errno: EPERM}\n  allow:\n"
            "    - \"@default\"\n@EXTRA@  deny:\n    - {name: kcmp, errno: @KERR@}\n"
            "  log: [memfd_create]\n  kill: [bpf]\n")
AF_UNIX = "    - {name: socket, args: [{index: 0, op: eq, value: AF_UNIX}]}\n"


def sys_section(extra: str = AF_UNIX, kerr: str = "EPERM", default: str | None = None) -> str:
    text = BASE_SYS.replace("@EXTRA@", extra).replace("@KERR@", kerr)
    if default:
        text = text.replace("{action: deny, errno: EPERM}", default)
    return text


# (case id, section overrides, expected row: (what, subject, change, risk))
CASES = [
    # -- critical
    ("default-allow", {"syscalls": sys_section(default="{action: allow}")},
     ("default action", "syscalls.default", "widened", "critical")),
    ("ptrace-allowed", {"syscalls": sys_section(AF_UNIX + "    - ptrace\n")},
     ("syscall", "ptrace", "added", "critical")),
    ("cap-sys-admin", {"capabilities": "capabilities: {keep: [CAP_NET_RAW, CAP_SYS_ADMIN]}\n"},
     ("capability", "CAP_SYS_ADMIN", "added", "critical")),
    ("cap-with-mount", {"capabilities": "capabilities: {keep: [CAP_NET_RAW, CAP_SYS_ADMIN]}\n",
                        "syscalls": sys_section(AF_UNIX + "    - mount\n")},
     ("capability+syscall", "CAP_SYS_ADMIN + mount", "added", "critical")),
    ("writable-etc", {"filesystem": "filesystem:\n  readonly: [/data/**]\n  mounts:\n"
                                    "    - {source: /etc, target: /hostetc, readonly: false}\n"},
     ("mount", "/hostetc", "added", "critical")),
    ("host-root-writable", {"filesystem": "filesystem:\n  readonly: [/data/**]\n"
                                          "  root: {source: /, readonly: false, overlay: none}\n"},
     ("root", "filesystem.root", "widened", "critical")),
    ("passthrough", {"network": "network:\n  mode: passthrough\n"},
     ("network mode", "network.mode", "widened", "critical")),
    ("no-new-privs-off", {"process": "process:\n  command: [\"true\"]\n  user: {uid: 1000, gid: 1000}\n"
                                     "  rlimits: {nofile: 256}\n  no_new_privs: false\n"},
     ("ids", "no_new_privs", "widened", "critical")),
    # -- high
    ("egress-anywhere", {"network": "network:\n  mode: netstack\n  egress:\n"
                                    "    - {host: example.com, ports: [443]}\n"
                                    "    - {cidr: 0.0.0.0/0, ports: [443]}\n"},
     ("egress", "0.0.0.0/0", "added", "high")),
    ("egress-metadata", {"network": "network:\n  mode: netstack\n  egress:\n"
                                    "    - {host: example.com, ports: [443]}\n"
                                    "    - {cidr: 169.254.169.254/32, ports: [80]}\n"},
     ("egress", "169.254.169.254/32", "added", "high")),
    ("publish-all", {"network": "network:\n  mode: netstack\n  egress:\n"
                                "    - {host: example.com, ports: [443]}\n  publish:\n"
                                "    - {host: \"0.0.0.0:8080\", sandbox: 80}\n"},
     ("publish", "sandbox 80/tcp", "added", "high")),
    ("shadow-visible", {"filesystem": "filesystem:\n  readonly: [/data/**]\n"
                                      "  deny: !replace [/etc/gshadow, /root/**]\n"},
     ("path rule (deny)", "/etc/shadow", "removed", "high")),
    ("direct-mediation", {"filesystem": "filesystem:\n  readonly: [/data/**]\n  mediation: direct\n"},
     ("mediation", "filesystem.mediation", "widened", "high")),
    ("raw-socket-with-cap", {"syscalls": sys_section("    - socket\n")},
     ("capability+syscall", "CAP_NET_RAW + socket", "added", "high")),
    ("readonly-etc", {"filesystem": "filesystem:\n  readonly: [/data/**]\n  mounts:\n"
                                    "    - {source: /etc, target: /hostetc, readonly: true}\n"},
     ("mount", "/hostetc", "added", "high")),
    # -- medium
    ("socket-any-domain", {"syscalls": sys_section("    - socket\n")},
     ("args", "socket", "widened", "medium")),
    ("egress-new-host", {"network": "network:\n  mode: netstack\n  egress:\n"
                                    "    - {host: example.com, ports: [443]}\n"
                                    "    - {host: pypi.org, ports: [443]}\n"},
     ("egress", "pypi.org", "added", "medium")),
    ("egress-any-port", {"network": "network:\n  mode: netstack\n  egress:\n"
                                    "    - {host: example.com}\n"},
     ("egress", "example.com", "widened", "medium")),
    ("netstack-from-none", {"network": "network:\n  mode: none\n"},
     None),  # reverse direction is tested in test_network_mode_both_ways
    ("root-inside", {"process": "process:\n  command: [\"true\"]\n  user: {uid: 0, gid: 0}\n"
                                "  rlimits: {nofile: 256}\n"},
     ("ids", "process.user", "widened", "medium")),
    ("readonly-rule-removed", {"filesystem": "filesystem:\n  readonly: !replace []\n"},
     ("path rule (readonly)", "/data/**", "removed", "medium")),
    ("pids-unlimited", {"resources": "resources: !replace {memory: 256Mi}\n"},
     ("resources", "pids", "removed", "medium")),
    ("cap-chown", {"capabilities": "capabilities: {keep: [CAP_NET_RAW, CAP_CHOWN]}\n"},
     ("capability", "CAP_CHOWN", "added", "medium")),
    # -- low
    ("socket-inet-too", {"syscalls": sys_section(
        AF_UNIX + "    - {name: socket, args: [{index: 0, op: eq, value: AF_INET}]}\n")},
     ("args", "socket", "widened", "low")),
    ("kill-to-deny", {"syscalls": sys_section().replace("  kill: [bpf]\n", "")
                      .replace("  deny:\n", "  deny:\n    - bpf\n")},
     ("syscall", "bpf", "widened", "low")),
    ("log-to-allow", {"syscalls": sys_section().replace("  log: [memfd_create]\n", "")
                      .replace("    - \"@default\"\n", "    - \"@default\"\n    - memfd_create\n")},
     ("syscall", "memfd_create", "widened", "low")),
    ("nofile-raised", {"process": "process:\n  command: [\"true\"]\n  user: {uid: 1000, gid: 1000}\n"
                                  "  rlimits: {nofile: 4096}\n"},
     ("rlimit", "nofile", "widened", "low")),
    ("memory-raised", {"resources": "resources: {memory: 1Gi, pids: 64}\n"},
     ("resources", "memory", "widened", "low")),
    ("platform-ptrace", {"head": "apiVersion: sandboxctl/v1\nkind: SandboxProfile\n"
                                 "metadata: {name: review-base}\nextends: default\nplatform: ptrace\n"},
     ("platform", "platform", "changed", "low")),
    ("audit-off", {"head": "apiVersion: sandboxctl/v1\nkind: SandboxProfile\n"
                           "metadata: {name: review-base}\nextends: default\n"
                           "audit: {denials: false}\n"},
     ("audit", "audit.denials", "removed", "low")),
    ("publish-local", {"network": "network:\n  mode: netstack\n  egress:\n"
                                  "    - {host: example.com, ports: [443]}\n  publish:\n"
                                  "    - {host: \"127.0.0.1:8080\", sandbox: 80}\n"},
     ("publish", "sandbox 80/tcp", "added", "low")),
    ("cap-bind", {"capabilities": "capabilities: {keep: [CAP_NET_RAW, CAP_NET_BIND_SERVICE]}\n"},
     ("capability", "CAP_NET_BIND_SERVICE", "added", "low")),
    ("readonly-app-mount", {"filesystem": "filesystem:\n  readonly: [/data/**]\n  mounts:\n"
                                          "    - {source: ./app, target: /work, readonly: true}\n"},
     ("mount", "/work", "added", "low")),
    # -- info
    ("default-kill", {"syscalls": sys_section(default="{action: kill}")},
     ("default action", "syscalls.default", "narrowed", "info")),
    ("socket-removed", {"syscalls": sys_section("")},
     ("syscall", "socket", "removed", "info")),
    ("errno-changed", {"syscalls": sys_section(kerr="ENOSYS")},
     ("syscall", "kcmp", "changed", "info")),
    ("cap-dropped", {"capabilities": "capabilities: {keep: []}\n"},
     ("capability", "CAP_NET_RAW", "removed", "info")),
    ("uname-release", {"head": "apiVersion: sandboxctl/v1\nkind: SandboxProfile\n"
                               "metadata: {name: review-base}\nextends: default\n"
                               "uname: {release: 6.1.0}\n"},
     ("uname", "uname", "changed", "info")),
    ("tmpfs-added", {"filesystem": "filesystem:\n  readonly: [/data/**]\n  mounts:\n"
                                   "    - {type: tmpfs, target: /scratch, size: 16Mi}\n"},
     ("mount", "/scratch", "added", "info")),
    ("deny-added", {"filesystem": "filesystem:\n  readonly: [/data/**]\n  deny: [/opt/**]\n"},
     ("path rule (deny)", "/opt/**", "added", "info")),
    ("egress-removed", {"network": "network:\n  mode: netstack\n"},
     ("egress", "example.com", "removed", "info")),
    ("dns-servers", {"network": "network:\n  mode: netstack\n  dns: [192.0.2.53]\n  egress:\n"
                                "    - {host: example.com, ports: [443]}\n"},
     ("network", "network.dns", "changed", "info")),
    ("env-added", {"process": "process:\n  command: [\"true\"]\n  user: {uid: 1000, gid: 1000}\n"
                              "  rlimits: {nofile: 256}\n  env: {APP_MODE: batch}\n"},
     ("process", "env APP_MODE", "added", "info")),
    ("nofile-lowered", {"process": "process:\n  command: [\"true\"]\n  user: {uid: 1000, gid: 1000}\n"
                                   "  rlimits: {nofile: 64}\n"},
     ("rlimit", "nofile", "narrowed", "info")),
]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("review-diff")
    (d / "app").mkdir()
    write(d / "old.yaml", profile_text())
    return d


@pytest.fixture(scope="module")
def base_plan(base_dir):
    return compile_profile(base_dir / "old.yaml")


def _rows(changes):
    return {(c.what, c.subject, c.change, c.risk) for c in changes}


@pytest.mark.parametrize("case,overrides,expected", [c for c in CASES if c[2]],
                         ids=[c[0] for c in CASES if c[2]])
def test_each_kind_of_change_is_rated(base_dir, base_plan, case, overrides, expected):
    new = write(base_dir / f"new-{case}.yaml", profile_text(overrides))
    changes = diff_plans(base_plan, compile_profile(new), BOOK)
    assert expected in _rows(changes), "\n".join(map(str, changes))
    row = next(c for c in changes if (c.what, c.subject, c.change, c.risk) == expected)
    assert row.why  # one sentence why


def test_cases_cover_every_level_and_kind():
    levels = {c[2][3] for c in CASES if c[2]}
    assert levels == set(LEVELS)
    kinds = {c[2][0] for c in CASES if c[2]}
    for k in ("syscall", "args", "default action", "mount", "root", "path rule (deny)",
              "path rule (readonly)", "network mode", "egress", "publish", "capability",
              "capability+syscall", "uname", "ids", "rlimit", "resources", "platform",
              "mediation", "audit", "network", "process"):
        assert k in kinds


def test_no_change_for_same_resolved_profile(base_dir, base_plan):
    # Reordered and reformatted, same meaning: no rows.
    text = profile_text()
    flipped = text.replace("resources: {memory: 256Mi, pids: 64}\n", "") \
        .replace("metadata: {name: review-base}\n",
                 "resources:\n  pids: 64\n  memory: 268435456\nmetadata:\n  name: review-base\n")
    new = write(base_dir / "same.yaml", flipped)
    assert diff_plans(base_plan, compile_profile(new), BOOK) == []


def test_mediation_is_one_row_not_one_per_path_call(base_dir):
    gofer = compile_profile(write(base_dir / "gofer.yaml", profile_text({"syscalls": None})))
    direct = compile_profile(write(base_dir / "direct.yaml", profile_text(
        {"syscalls": None, "filesystem": "filesystem:\n  readonly: [/data/**]\n  mediation: direct\n"})))
    changes = diff_plans(gofer, direct, BOOK)
    assert [(c.what, c.risk) for c in changes] == [("mediation", "high")], changes
    assert re.search(r"\(\d+ path calls: access, ", changes[0].why), changes[0].why


def test_root_cache_is_one_info_row_not_one_per_observed_call(base_dir):
    """cache: exclusive traps fchmod/fchown/f*xattr only to tell the Sentry's attribute
    cache; turning it off is one root row, and permits nothing new."""
    fs = "filesystem:\n  root: {source: /, readonly: true, overlay: memory%s}\n"
    excl = compile_profile(write(base_dir / "excl.yaml", profile_text(
        {"syscalls": None, "filesystem": fs % ""})))
    shared = compile_profile(write(base_dir / "shared.yaml", profile_text(
        {"syscalls": None, "filesystem": fs % ", cache: shared"})))
    assert any(r.handler == "fd_meta" for r in excl.seccomp.rules)
    assert not any(r.handler == "fd_meta" for r in shared.seccomp.rules)
    for a, b in ((excl, shared), (shared, excl)):
        changes = diff_plans(a, b, BOOK)
        assert [(c.what, c.subject, c.risk) for c in changes] == \
            [("root", "filesystem.root", "info")], changes
    assert "cache=shared" in diff_plans(excl, shared, BOOK)[0].after


def test_network_mode_both_ways(base_dir, base_plan):
    none = compile_profile(write(base_dir / "none.yaml", profile_text({"network": "network:\n  mode: none\n"})))
    widened = _rows(diff_plans(none, base_plan, BOOK))
    assert ("network mode", "network.mode", "widened", "medium") in widened
    narrowed = _rows(diff_plans(base_plan, none, BOOK))
    assert ("network mode", "network.mode", "narrowed", "info") in narrowed


def test_rows_carry_the_line_in_each_file(base_dir, base_plan):
    overrides = {"network": "network:\n  mode: netstack\n  egress:\n"
                            "    - {host: example.com}\n"}
    new = write(base_dir / "lines.yaml", profile_text(overrides))
    changes = diff_plans(base_plan, compile_profile(new), BOOK)
    row = next(c for c in changes if c.what == "egress")
    old_line = line_of(base_dir / "old.yaml", "{host: example.com, ports: [443]}")
    new_line = line_of(new, "{host: example.com}")
    assert row.old_where.endswith(f"old.yaml:{old_line}:7")
    assert row.new_where.endswith(f"lines.yaml:{new_line}:7")
    assert row.before == "example.com 443 any" and row.after == "example.com any port any"


def test_extends_is_resolved_before_comparing(tmp_path):
    # The child does not change, its base does: the diff still shows it.
    write(tmp_path / "base.yaml", profile_text())
    write(tmp_path / "child.yaml", "apiVersion: sandboxctl/v1\nkind: SandboxProfile\n"
          "metadata: {name: child}\nextends: ./base.yaml\n")
    old = compile_profile(tmp_path / "child.yaml")
    write(tmp_path / "base.yaml", profile_text({"capabilities": "capabilities: {keep: [CAP_NET_RAW, CAP_SYS_PTRACE]}\n"}))
    rows = _rows(diff_plans(old, compile_profile(tmp_path / "child.yaml"), BOOK))
    assert ("capability", "CAP_SYS_PTRACE", "added", "critical") in rows


# -- the command: formats, exit codes, git revisions ------------------------------------

def _cli_pair(tmp_path: Path, overrides) -> tuple[Path, Path]:
    (tmp_path / "app").mkdir(exist_ok=True)
    old = write(tmp_path / "old.yaml", profile_text())
    new = write(tmp_path / "new.yaml", profile_text(overrides))
    return old, new


def test_cli_fail_on_and_json(tmp_path):
    old, new = _cli_pair(tmp_path, {"syscalls": sys_section(AF_UNIX + "    - ptrace\n")})
    r = sandboxctl("diff", str(old), str(new), "--format", "json", "--fail-on", "high")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["max_risk"] == "critical"
    assert any(c["subject"] == "ptrace" and c["risk"] == "critical" for c in data["changes"])
    # Same diff, a threshold nothing reaches is impossible (critical is the top) -> use a
    # low-risk change and --fail-on medium: exit 0; --fail-on low: exit 1.
    old, new = _cli_pair(tmp_path, {"resources": "resources: {memory: 1Gi, pids: 64}\n"})
    assert cli("diff", str(old), str(new), "--fail-on", "medium").returncode == 0
    assert cli("diff", str(old), str(new), "--fail-on", "low").returncode == 1
    # No --fail-on: a report, exit 0 even for critical changes.
    old, new = _cli_pair(tmp_path, {"syscalls": sys_section(default="{action: allow}")})
    assert cli("diff", str(old), str(new)).returncode == 0


def test_cli_markdown_and_plain(tmp_path):
    old, new = _cli_pair(tmp_path, {"capabilities": "capabilities: {keep: [CAP_NET_RAW, CAP_SYS_ADMIN]}\n"})
    r = sandboxctl("diff", str(old), str(new), "--format", "markdown")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("### sandboxctl diff:")
    assert "| risk | what | subject | change | before → after | why | old line | new line |" in lines
    row = next(ln for ln in lines if "`CAP_SYS_ADMIN`" in ln)
    assert row.startswith("| **critical** | capability |")
    plain = sandboxctl("diff", str(old), str(new))  # piped: tab-separated
    assert "risk\twhat\tsubject\tchange" in plain.stdout
    assert "critical\tcapability\tCAP_SYS_ADMIN\tadded" in plain.stdout
    only = cli("diff", str(old), str(new), "--format", "json", "--min-risk", "critical")
    assert {c["risk"] for c in json.loads(only.stdout)["changes"]} == {"critical"}
    # The Plan keeps no line for capabilities: the row finds it in the profile text.
    cap_row = next(ln for ln in plain.stdout.splitlines() if "\tCAP_SYS_ADMIN\t" in ln)
    ln = line_of(new, "CAP_SYS_ADMIN")
    col = new.read_text().splitlines()[ln - 1].index("CAP_SYS_ADMIN") + 1
    assert cap_row.endswith(f"new.yaml:{ln}:{col}")


def test_cli_bad_input_is_one_error(tmp_path):
    old, _ = _cli_pair(tmp_path, {})
    r = sandboxctl("diff", str(old), str(tmp_path / "missing.yaml"))
    assert r.returncode != 0 and "Traceback" not in r.stderr


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_git_revisions_with_relative_extends(tmp_path):
    repo = tmp_path / "repo"
    write(repo / "profiles" / "base.yaml", profile_text())
    write(repo / "profiles" / "app.yaml", "apiVersion: sandboxctl/v1\nkind: SandboxProfile\n"
          "metadata: {name: app}\nextends: ./base.yaml\nfilesystem:\n  mounts:\n"
          "    - {source: ../src, target: /src, readonly: true}\n")
    write(repo / "src" / "main.py", "print('hi')\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    # Change the base (not the app file) and make the mount writable, then commit.
    write(repo / "profiles" / "base.yaml",
          profile_text({"network": "network:\n  mode: netstack\n  egress:\n"
                                   "    - {host: example.com, ports: [443]}\n"
                                   "    - {cidr: 0.0.0.0/0}\n"}))
    app = (repo / "profiles" / "app.yaml").read_text().replace("readonly: true", "readonly: false")
    write(repo / "profiles" / "app.yaml", app)
    _git(repo, "commit", "-q", "-am", "two")
    r = sandboxctl("diff", "HEAD~1:profiles/app.yaml", "HEAD:profiles/app.yaml",
                   "--format", "json", cwd=repo)
    assert r.returncode == 0, r.stderr
    changes = json.loads(r.stdout)["changes"]
    egress = next(c for c in changes if c["what"] == "egress")
    assert egress["risk"] == "high" and egress["change"] == "added"
    assert egress["new_where"].startswith("HEAD:profiles/base.yaml:")
    mount = next(c for c in changes if c["what"] == "mount")
    # Same host source on both sides (the materialised tree is mapped back), now writable.
    assert mount["change"] == "widened" and mount["risk"] == "medium"
    assert str(repo / "src") in mount["after"]
    assert mount["old_where"].startswith("HEAD~1:profiles/app.yaml:")
    # Nothing else moved: exactly these two rows.
    assert len(changes) == 2, changes
    # A working-tree file against a revision, from a sub-directory with ./ paths.
    r2 = sandboxctl("diff", "HEAD~1:./app.yaml", "app.yaml", "--fail-on", "high",
                    cwd=repo / "profiles")
    assert r2.returncode == 1, r2.stdout + r2.stderr
    bad = sandboxctl("diff", "nosuchrev:profiles/app.yaml", "profiles/app.yaml", cwd=repo)
    assert bad.returncode == 1 and "git" in bad.stderr and "Traceback" not in bad.stderr


def test_compiled_plans_and_builtin_names_as_inputs(tmp_path):
    old, new = _cli_pair(tmp_path, {"capabilities": "capabilities: {keep: [CAP_NET_RAW, CAP_SYS_TIME]}\n"})
    plan_file = tmp_path / "new.json"
    plan_file.write_text(compile_profile(new).to_json())
    r = cli("diff", str(old), str(plan_file), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [(c["what"], c["subject"], c["risk"]) for c in json.loads(r.stdout)["changes"]]
    assert rows == [("capability", "CAP_SYS_TIME", "high")]
    assert cli("diff", str(new), str(plan_file), "--format", "json").stdout.count('"what"') == 0
    # The built-in default against itself as a file: nothing.
    default_file = Path(__file__).resolve().parent.parent / "profiles" / "default.yaml"
    r = cli("diff", "default", str(default_file), "--format", "json")
    assert json.loads(r.stdout)["changes"] == []
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = cli("diff", str(old), str(bad))
    assert r.returncode == 1 and "is not a Plan" in r.stderr
