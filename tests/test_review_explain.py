"""sandboxctl explain: a real program makes known denied calls under the Sentry; explain
names each with the rule line and a suggestion; applying the suggestions makes the
program succeed. Hypothetical questions about syscalls, paths and destinations."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

from _helpers_review import cli, line_of, sandboxctl, write

REPO = Path(__file__).resolve().parent.parent
DEFAULT_YAML = REPO / "profiles" / "default.yaml"

PROGRAM = textwrap.dedent("""\
    import ctypes, os, socket, sys
    libc = ctypes.CDLL(None, use_errno=True)
    ok = True
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.socket(fam, socket.SOCK_DGRAM).close()
        except OSError as e:
            print("socket", fam, "failed", e); ok = False
    try:
        os.close(os.memfd_create("x"))
    except OSError as e:
        print("memfd_create failed", e); ok = False
    try:
        os.sched_getaffinity(0)
    except OSError as e:
        print("sched_getaffinity failed", e); ok = False
    # The program copes with this one being refused: explain must advise against it.
    print("unshare", libc.unshare(0x10000000), ctypes.get_errno())
    sys.exit(0 if ok else 1)
""")

PROFILE = textwrap.dedent("""\
    apiVersion: sandboxctl/v1
    kind: SandboxProfile
    metadata: {name: explain-test}
    extends: default
    filesystem: {mediation: direct}
    syscalls:
      deny:
        - {name: socket, args: [{index: 0, op: eq, value: AF_INET}]}
        - {name: socket, args: [{index: 0, op: eq, value: AF_INET6}]}
        - memfd_create
        - sched_getaffinity
""")

# Runs a Plan under the Sentry (sentry.direct) the same way for every attempt.
RUNNER = textwrap.dedent("""\
    import sys
    from sandboxctl.engine.compile import compile_profile
    from sandboxctl.sentry.direct import run_direct
    r = run_direct(compile_profile(sys.argv[1], display=sys.argv[2]), sys.argv[3:])
    sys.exit(r.status)
""")


def _run(tmp: Path, profile: Path, *argv: str):
    import subprocess

    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp / "state"))
    return subprocess.run([sys.executable, "-c", RUNNER, str(profile), profile.name, *argv],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=60)


def test_explain_names_each_denial_and_its_fix_works(tmp_path):
    prog = write(tmp_path / "prog.py", PROGRAM)
    profile = write(tmp_path / "explain-test.yaml", PROFILE)
    first = _run(tmp_path, profile, sys.executable, str(prog))
    assert first.returncode == 1, first.stdout + first.stderr
    env = {"SANDBOXCTL_STATE_DIR": str(tmp_path / "state")}
    r = cli("explain", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    by = {d["subject"]: d for d in data["denials"]}
    assert {"socket", "memfd_create", "sched_getaffinity", "unshare"} <= set(by)
    sock = by["socket"]
    # Two rules refused socket (AF_INET, AF_INET6): grouped by rule, one row each.
    sock_rows = [d for d in data["denials"] if d["subject"] == "socket"]
    assert len(sock_rows) == 2
    inet = next(d for d in sock_rows if "AF_INET," in d["call"])
    assert inet["call"].startswith("socket(AF_INET, SOCK_DGRAM")
    assert inet["rule_where"] == f"explain-test.yaml:{line_of(profile, 'value: AF_INET}')}:7"
    assert "value: AF_INET}" in inet["suggestion"] and "AF_INET6" not in inet["suggestion"]
    assert sock["purpose"] and sock["risk"] == "medium"
    memfd = by["memfd_create"]
    assert memfd["rule_where"] == f"explain-test.yaml:{line_of(profile, '- memfd_create')}:7"
    assert memfd["count"] == 1 and "- memfd_create" in memfd["suggestion"]
    assert memfd["remove_where"] == memfd["rule_where"]
    unshare = by["unshare"]
    assert unshare["call"] == "unshare(CLONE_NEWUSER)"
    assert unshare["risk"] == "critical" and unshare["advice"].startswith("do not allow unshare")
    assert unshare["rule_where"].split(":")[0].endswith("default.yaml")
    assert int(unshare["rule_where"].split(":")[1]) == line_of(DEFAULT_YAML, "- unshare")
    assert all(ln.startswith("#") for ln in unshare["suggestion"].splitlines())

    # The human form says the same.
    human = sandboxctl("explain", data["run"], cwd=tmp_path, env=env).stdout
    assert "unshare(CLONE_NEWUSER)" in human and "do not allow unshare" in human
    assert f"rule: {memfd['rule_where']}" in human

    # Apply the suggestions to the profile: the program now succeeds; unshare stays refused.
    r = sandboxctl("explain", "--apply", str(profile), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    text = profile.read_text()
    assert "unshare" not in text
    second = _run(tmp_path, profile, sys.executable, str(prog))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "unshare -1 1" in second.stdout
    again = json.loads(cli("explain", "--json", cwd=tmp_path, env=env).stdout)
    assert [d["subject"] for d in again["denials"]] == ["unshare"]


def test_default_action_denial_is_narrowed_by_what_was_seen(tmp_path):
    profile = write(tmp_path / "allowlist.yaml", textwrap.dedent("""\
        apiVersion: sandboxctl/v1
        kind: SandboxProfile
        metadata: {name: allowlist}
        extends: default
        filesystem: {mediation: direct}
        syscalls:
          default: {action: deny, errno: EACCES}
          allow: ["@default", "@file-io"]
    """))
    prog = write(tmp_path / "p.py", "import socket, sys\n"
                 "try:\n    for f in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET):\n"
                 "        socket.socket(f, socket.SOCK_STREAM).close()\n"
                 "except OSError as e:\n    print(e); sys.exit(3)\n")
    res = _run(tmp_path, profile, sys.executable, str(prog))
    assert res.returncode == 3, res.stdout + res.stderr
    env = {"SANDBOXCTL_STATE_DIR": str(tmp_path / "state")}
    data = json.loads(cli("explain", "--json", cwd=tmp_path, env=env).stdout)
    sock = next(d for d in data["denials"] if d["subject"] == "socket")
    assert sock["errno"] == "EACCES" and sock["count"] == 1  # the program stops at the first
    assert sock["rule_where"] == f"allowlist.yaml:{line_of(profile, 'default: {action: deny')}:3"
    assert "default action" in sock["rule_text"]
    assert sock["suggestion"] == ("syscalls:\n  allow:\n"
                                  "    - {name: socket, args: [{index: 0, op: eq, value: AF_UNIX}]}\n")
    # Apply, run again: now AF_INET is the next refusal, narrowed to AF_INET alone.
    assert cli("explain", "--apply", str(profile), cwd=tmp_path, env=env).returncode == 0
    assert _run(tmp_path, profile, sys.executable, str(prog)).returncode == 3
    data = json.loads(cli("explain", "--json", cwd=tmp_path, env=env).stdout)
    sock = next(d for d in data["denials"] if d["subject"] == "socket")
    assert sock["call"].startswith("socket(AF_INET, SOCK_STREAM")
    assert "value: AF_INET}" in sock["suggestion"] and "AF_UNIX" not in sock["suggestion"]
    assert cli("explain", "--apply", str(profile), cwd=tmp_path, env=env).returncode == 0
    final = _run(tmp_path, profile, sys.executable, str(prog))
    assert final.returncode == 0, final.stdout + final.stderr
    # socket(AF_INET6) is still refused: the profile allows only what was seen.
    h = json.loads(cli("explain", "-p", str(profile), "socket", "AF_INET6", "--json").stdout)
    assert h["allowed"] is False


def test_hypothetical_syscalls(tmp_path):
    profile = write(tmp_path / "h.yaml", PROFILE)
    r = cli("explain", "--profile", str(profile), "socket", "AF_INET", "SOCK_STREAM", "--json")
    a = json.loads(r.stdout)
    assert a["allowed"] is False and a["outcome"] == "deny EPERM"
    assert a["rule_where"].endswith(f"h.yaml:{line_of(profile, 'value: AF_INET}')}:7")
    assert a["query"] == "socket(AF_INET, SOCK_STREAM)"
    assert "value: AF_INET}" in a["suggestion"]
    b = json.loads(cli("explain", "-p", str(profile), "socket", "AF_UNIX", "--json").stdout)
    assert b["allowed"] is True and b["outcome"] == "allow"
    assert b["rule_where"].split(":")[0].endswith("default.yaml")  # the default action
    c = json.loads(cli("explain", "-p", str(profile), "ptrace", "--json").stdout)
    assert c["allowed"] is False and c["risk"] == "critical"
    assert c["advice"].startswith("do not allow ptrace")
    builtin = json.loads(cli("explain", "-p", "default", "ptrace", "--json").stdout)
    assert builtin["allowed"] is False and builtin["rule_text"] == "- ptrace"
    u = json.loads(cli("explain", "-p", str(profile), "uname", "--json").stdout)
    assert u["outcome"] == "emulate" and u["allowed"] is True
    bad = cli("explain", "-p", str(profile), "sockett")
    assert bad.returncode == 1 and "did you mean socket" in bad.stderr
    # allowed calls the Sentry looks at first say so
    f = json.loads(cli("explain", "-p", "default", "fchmod", "--json").stdout)
    assert f["allowed"] is True and "attribute cache forgets the file" in f["why"]
    assert f["rule_text"].startswith("root: {source: /")
    e = json.loads(cli("explain", "-p", "default", "execve", "--json").stdout)
    assert "records the path and argv" in e["why"]
    human = sandboxctl("explain", "-p", str(profile), "memfd_create").stdout
    assert human.startswith("memfd_create(...): refused (deny EPERM)")
    assert f"h.yaml:{line_of(profile, '- memfd_create')}:7" in human


def test_hypothetical_paths_and_destinations(tmp_path):
    (tmp_path / "data").mkdir()
    profile = write(tmp_path / "fs.yaml", textwrap.dedent("""\
        apiVersion: sandboxctl/v1
        kind: SandboxProfile
        metadata: {name: fs}
        extends: default
        filesystem:
          mounts:
            - {source: ./data, target: /data, readonly: true}
          readonly: [/tmp/keep/**]
        network:
          mode: netstack
          egress:
            - {cidr: 10.1.0.0/16, ports: [5432], protocol: tcp}
    """))

    def ask(*q: str) -> dict:
        r = cli("explain", "-p", str(profile), *q, "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    shadow = ask("/etc/shadow")
    assert shadow["allowed"] is False and shadow["outcome"] == "hidden (ENOENT)"
    assert int(shadow["rule_where"].split(":")[1]) == line_of(DEFAULT_YAML, "- /etc/shadow")
    assert shadow["advice"].startswith("do not expose /etc/shadow")
    data = ask("/data/x.csv")
    assert data["outcome"] == "read-only" and str(tmp_path / "data" / "x.csv") in data["why"]
    assert data["rule_where"].endswith(f"fs.yaml:{line_of(profile, 'target: /data')}:7")
    keep = ask("/tmp/keep/a")
    assert keep["outcome"] == "read-only" and "/tmp/keep/**" in keep["why"]
    assert ask("/tmp/other")["outcome"] == "read-write"
    ok = ask("10.1.2.3:5432")
    assert ok["allowed"] is True
    assert ok["rule_where"].endswith(f"fs.yaml:{line_of(profile, '10.1.0.0/16')}:7")
    no = ask("10.1.2.3:22")
    assert no["allowed"] is False and "cidr: 10.1.2.3/32, ports: [22]" in no["suggestion"]
    assert no["risk"] == "high"  # an internal address
    # A profile without a network: the suggestion turns the netstack on.
    nonet = write(tmp_path / "nonet.yaml", PROFILE)
    n = json.loads(cli("explain", "-p", str(nonet), "93.184.215.14:443", "--json").stdout)
    assert n["allowed"] is False and "mode: netstack" in n["suggestion"]
    assert n["risk"] == "medium"


def test_no_runs_is_one_clear_error(tmp_path):
    r = sandboxctl("explain", env={"SANDBOXCTL_STATE_DIR": str(tmp_path / "empty")})
    assert r.returncode == 1 and "no runs recorded" in r.stderr and "Traceback" not in r.stderr


FILE_NET_PROFILE = """\
apiVersion: sandboxctl/v1
kind: SandboxProfile
metadata: {name: file-net}
extends: default
filesystem:
  mounts:
    - {source: ./data, target: /data, readonly: true}
  deny:
    - /data/private/**
network:
  mode: netstack
  egress:
    - {cidr: 127.0.0.1/32, ports: [9], protocol: tcp}
"""

FILE_NET_PROGRAM = """\
import os, sys, urllib.request
ok = True
os.path.exists("/data/private/other.txt")  # a second path under the same rule
try:
    print(open("/data/private/k.txt").read().strip())
except OSError as e:
    print("file", e); ok = False
try:
    print(urllib.request.urlopen("http://10.0.2.2:%d/", timeout=5).read().decode().strip())
except Exception as e:
    print("net", e); ok = False
sys.exit(0 if ok else 1)
"""


def test_file_and_network_denials_of_a_real_sandbox(tmp_path):
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"hello\n")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        write(tmp_path / "data" / "private" / "k.txt", "secret-ish\n")
        profile = write(tmp_path / "file-net.yaml", FILE_NET_PROFILE)
        write(tmp_path / "data" / "prog.py", FILE_NET_PROGRAM % port)  # /tmp is a tmpfs inside
        env = {"SANDBOXCTL_STATE_DIR": str(tmp_path / "state")}
        first = sandboxctl("apply", "file-net.yaml", "--", "python3", "/data/prog.py",
                           cwd=tmp_path, env=env)
        assert first.returncode == 1, first.stdout + first.stderr
        data = json.loads(cli("explain", "--json", cwd=tmp_path, env=env).stdout)
        by = {(d["kind"], d["subject"]): d for d in data["denials"]}
        f = next(d for (kind, _), d in by.items() if kind == "file" and "/data/private/" in d["subject"])
        assert f["subject"].endswith("(+1 more paths)") and f["count"] == 2
        assert f["rule_where"] == f"file-net.yaml:{line_of(profile, '- /data/private/**')}:7"
        assert f["errno"] == "ENOENT"
        assert any(x.startswith("openat(") and "k.txt" in x for x in f["examples"])
        assert "/data/private/**" not in f["suggestion"] and "deny: !replace" in f["suggestion"]
        n = by[("network", f"127.0.0.1:{port}")]
        assert n["rule_where"] == f"file-net.yaml:{line_of(profile, 'network:')}:1"
        assert "ports: [9]" in n["rule_text"]  # the near miss is named
        assert f"- {{cidr: 127.0.0.1/32, ports: [{port}], protocol: tcp}}" in n["suggestion"]
        # Apply the suggestions: both now work.
        assert sandboxctl("explain", "--apply", "file-net.yaml", cwd=tmp_path, env=env).returncode == 0
        second = sandboxctl("apply", "file-net.yaml", "--", "python3", "/data/prog.py",
                            cwd=tmp_path, env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert second.stdout.split() == ["secret-ish", "hello"]
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_killed_run_is_explained(tmp_path):
    profile = write(tmp_path / "kill.yaml", textwrap.dedent("""\
        apiVersion: sandboxctl/v1
        kind: SandboxProfile
        metadata: {name: kill}
        extends: default
        filesystem: {mediation: direct}
        syscalls:
          kill: [memfd_create]
    """))
    prog = write(tmp_path / "k.py", "import os\nos.memfd_create('x')\nprint('survived')\n")
    res = _run(tmp_path, profile, sys.executable, str(prog))
    assert res.returncode == 128 + 9 and "survived" not in res.stdout, res.stdout + res.stderr
    env = {"SANDBOXCTL_STATE_DIR": str(tmp_path / "state")}
    data = json.loads(cli("explain", "--json", cwd=tmp_path, env=env).stdout)
    d = next(x for x in data["denials"] if x["subject"] == "memfd_create")
    assert d["action"] == "kill" and d["errno"] == ""
    assert d["rule_where"] == f"kill.yaml:{line_of(profile, 'kill: [memfd_create]')}:10"
    human = cli("explain", cwd=tmp_path, env=env).stdout
    assert "→ kill" in human and "(signal 9)" in human


def test_a_call_refused_through_a_group_is_allowed_by_name_only(tmp_path):
    profile = write(tmp_path / "grp.yaml", textwrap.dedent("""\
        apiVersion: sandboxctl/v1
        kind: SandboxProfile
        metadata: {name: grp}
        extends: default
        filesystem: {mediation: direct}
        syscalls:
          deny: ["@ipc"]
    """))
    prog = write(tmp_path / "ipc.py", "import ctypes, sys\n"
                 "sys.exit(0 if ctypes.CDLL(None).msgget(0, 0o1600) >= 0 else 1)\n")
    assert _run(tmp_path, profile, sys.executable, str(prog)).returncode == 1
    env = {"SANDBOXCTL_STATE_DIR": str(tmp_path / "state")}
    d = json.loads(cli("explain", "--json", cwd=tmp_path, env=env).stdout)["denials"][0]
    assert d["subject"] == "msgget" and d["remove_where"] == ""  # the group entry stays
    assert d["purpose"] == "System V and POSIX IPC (@ipc)"
    assert cli("explain", "--apply", str(profile), cwd=tmp_path, env=env).returncode == 0
    assert _run(tmp_path, profile, sys.executable, str(prog)).returncode == 0
    # Only msgget: the rest of the group is still refused.
    other = json.loads(cli("explain", "-p", str(profile), "semget", "--json").stdout)
    assert other["allowed"] is False and other["rule_text"] == 'deny: ["@ipc"]'
