"""The CLI commands of the profile engine, run as real processes; and the commands shown
in docs/profile-format.md."""

import json
import re
import shlex

from sandboxctl.engine.compile import compile_builtin
from sandboxctl.engine.plan import Plan

from _helpers_engine import REPO, cli, write

DOC = REPO / "docs" / "profile-format.md"


def test_validate_ok_and_invalid_exit_status(tmp_path):
    env = {"SANDBOXCTL_CACHE_DIR": str(tmp_path / "cache")}
    ok = cli("validate", "profiles/default.yaml", "profiles/examples/python-script.yaml", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "profiles/default.yaml: ok" in ok.stdout
    bad = write(tmp_path, "bad.yaml", """
        syscalls:
          allow:
            - ptrce
        network:
          egress: [{cidr: 10.0.0.0/8}]
        """)
    r = cli("validate", str(bad), "profiles/default.yaml", env=env)
    assert r.returncode == 2
    assert f"{bad}:5:7: error: unknown syscall 'ptrce' on x86_64 (at syscalls.allow[0])" in r.stdout
    assert "hint: did you mean 'ptrace'?" in r.stdout
    assert f"{bad}:7:3: error: network `egress` rules contradict mode none" in r.stdout
    assert "profiles/default.yaml: ok" in r.stdout
    r = cli("validate", "default", "no-such-profile", env=env)
    assert r.returncode == 2 and "default: ok" in r.stdout
    assert "no-such-profile:1:1: error: no such profile file" in r.stdout


def test_compile_invalid_profile_exits_2(tmp_path):
    bad = write(tmp_path, "bad.yaml", "syscalls:\n  deny: [ptrce]\n")
    r = cli("compile", str(bad), env={"SANDBOXCTL_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 2 and r.stdout == ""
    assert f"{bad}:4:10: error: unknown syscall 'ptrce'" in r.stderr


def test_validate_json(tmp_path):
    bad = write(tmp_path, "bad.yaml", "uname: {relase: x}\n")
    r = cli("validate", "--json", str(bad), env={"SANDBOXCTL_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 2
    (res,) = json.loads(r.stdout)
    (err,) = res["errors"]
    assert (err["line"], err["col"], err["path"], err["hint"]) == (3, 9, "uname.relase",
                                                                  "did you mean 'release'?")


def test_compile_json_pfc_bpf(tmp_path):
    env = {"SANDBOXCTL_CACHE_DIR": str(tmp_path / "cache")}
    r = cli("compile", "profiles/examples/shell-pipeline.yaml", env=env)
    assert r.returncode == 0, r.stderr
    assert Plan.from_json(r.stdout) == compile_builtin("shell-pipeline")
    again = cli("compile", "profiles/examples/shell-pipeline.yaml", env=env)  # from the cache
    assert again.stdout == r.stdout
    fresh = cli("compile", "--no-cache", "profiles/examples/shell-pipeline.yaml", env=env)
    assert fresh.stdout == r.stdout
    pfc = cli("compile", "default", "--format", "pfc", env=env)
    assert pfc.returncode == 0 and "x86_64" in pfc.stdout and "action KILL_PROCESS" in pfc.stdout
    out = tmp_path / "f.bpf"
    with open(out, "wb") as fh:
        import subprocess, sys, os
        subprocess.run([sys.executable, "-m", "sandboxctl.cli", "compile", "default", "--format", "bpf"],
                       cwd=REPO, stdout=fh, check=True, env={**os.environ, **env})
    assert out.stat().st_size % 8 == 0 and out.stat().st_size > 8 * 20


def test_cache_sees_a_changed_parent(tmp_path):
    env = {"SANDBOXCTL_CACHE_DIR": str(tmp_path / "cache")}
    write(tmp_path, "base.yaml", "uname: {release: 5.1.0}\n")
    child = write(tmp_path, "child.yaml", "extends: ./base.yaml\n")
    first = json.loads(cli("compile", str(child), env=env).stdout)
    assert first["sentry"]["uname"]["release"] == "5.1.0"
    write(tmp_path, "base.yaml", "uname: {release: 5.2.0}\n")
    second = json.loads(cli("compile", str(child), env=env).stdout)
    assert second["sentry"]["uname"]["release"] == "5.2.0"
    write(tmp_path, "base.yaml", "uname: {release: [5]}\n")
    assert cli("validate", str(child), env=env).returncode == 2


def test_syscalls_and_groups():
    r = cli("syscalls", "--group", "@gofer-mediated", "--json")
    data = json.loads(r.stdout)
    assert data["group"] == "gofer-mediated" and {"name": "openat", "nr": 257} in data["syscalls"]
    r = cli("syscalls", "--json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["ptrace"]["nr"] == 101 and "@dangerous" in rows["ptrace"]["groups"]
    r = cli("syscalls", "--group", "file-oi")
    assert r.returncode == 1 and "did you mean @file-io?" in r.stderr
    r = cli("syscalls", "--groups")
    assert re.search(r"^@default\t147\t", r.stdout, re.M), r.stdout


def test_profiles_lists_builtins():
    r = cli("profiles", "--json")
    names = {p["name"]: p for p in json.loads(r.stdout)}
    assert {"default", "python-script", "shell-pipeline", "network-client"} <= set(names)
    assert names["python-script"]["extends"] == "default"


def test_help_has_examples():
    for cmd in ("validate", "compile", "syscalls", "profiles"):
        r = cli(cmd, "--help")
        assert r.returncode == 0 and "examples:" in r.stdout and f"sandboxctl {cmd}" in r.stdout


def test_commands_in_the_docs_work(tmp_path):
    text = DOC.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    cmds = [line for b in blocks for line in b.splitlines() if line.startswith("sandboxctl ")]
    assert len(cmds) >= 8
    for line in cmds:
        r = cli(*shlex.split(line)[1:], env={"SANDBOXCTL_CACHE_DIR": str(tmp_path)})
        assert r.returncode == 0, (line, r.stderr)
        assert r.stdout.strip(), line


def test_validate_example_in_the_docs(tmp_path):
    """The `$ sandboxctl validate bad.yaml` transcript in the docs is real output."""
    text = DOC.read_text()
    block = re.search(r"```text\n\$ sandboxctl validate bad.yaml\n(.*?)```", text, re.S).group(1)
    write(tmp_path, "bad.yaml", """
        syscalls:
          allow:
            - ptrce
        network:
          egress: [{cidr: 10.0.0.0/8}]
        """)
    r = cli("validate", "bad.yaml", cwd=tmp_path, env={"SANDBOXCTL_CACHE_DIR": str(tmp_path)})
    assert r.stdout == block


def test_rich_output_on_a_terminal(tmp_path):
    import os
    import pty
    import subprocess
    import sys

    bad = write(tmp_path, "bad.yaml", "syscalls:\n  allow: [ptrce]\n")
    master, slave = pty.openpty()
    env = {**os.environ, "SANDBOXCTL_CACHE_DIR": str(tmp_path), "COLUMNS": "200", "TERM": "xterm"}
    p = subprocess.run([sys.executable, "-m", "sandboxctl.cli", "validate", str(bad),
                        "profiles/default.yaml"], cwd=REPO, env=env, stdout=slave,
                       stderr=subprocess.PIPE, timeout=60)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    text = out.decode()
    assert p.returncode == 2
    assert "\x1b[" in text  # styled
    assert "✗" in text and "✓" in text and "did you mean 'ptrace'?" in text


def test_readme_tour_profile_is_valid(tmp_path):
    from sandboxctl.engine.compile import compile_profile

    text = (REPO / "README.md").read_text()
    tour = text.split("## A tour of the profile format", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", tour, re.S).group(1)
    (tmp_path / "python-app").mkdir()
    p = tmp_path / "tour.yaml"
    p.write_text(block)
    plan = compile_profile(p)
    assert plan.launch.command == ("python3", "/work/app.py")
    assert plan.seccomp.default.action == "deny"


def test_ci_runs_the_readme_test_command():
    """.ci/run sets the project up and then runs exactly the README's test command; that
    command sets up by itself on a fresh machine; both README commands name real files."""
    text = (REPO / "README.md").read_text()
    fresh = text.split("## Fresh machine", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", fresh, re.S)
    assert len(blocks) == 2, blocks
    main_job, test_cmd = blocks
    assert main_job.startswith("bash .ci/setup && sandboxctl apply profiles/")
    assert (REPO / main_job.split("sandboxctl apply ", 1)[1].split()[0]).is_file()
    run = [l.strip() for l in (REPO / ".ci" / "run").read_text().splitlines()
           if l.strip() and not l.startswith("#")]
    assert run[0] == "set -euo pipefail" and run[-1] == test_cmd, run
    assert "bash .ci/setup" in run and run.index("bash .ci/setup") < len(run) - 1, run
    test_script = (REPO / ".ci" / "test").read_text()
    assert "bash .ci/setup" in test_script
    # with no arguments it runs pytest over the whole tests/ folder
    assert 'set -- tests' in test_script and "-m pytest" in test_script


def test_profile_format_doc_example_is_valid(tmp_path):
    from sandboxctl.engine.compile import compile_profile

    block = re.search(r"```yaml\n(apiVersion.*?)```", DOC.read_text(), re.S).group(1)
    (tmp_path / "app").mkdir()
    p = tmp_path / "full.yaml"
    p.write_text(block)
    plan = compile_profile(p)
    assert plan.network.mode == "netstack" and plan.launch.capabilities == ("CAP_NET_BIND_SERVICE",)
    assert [r.action for r in plan.seccomp.rules if r.name == "ptrace"] == ["kill"]


def test_cache_entries_others_can_write_are_ignored(tmp_path):
    import os

    cache = tmp_path / "cache"
    env = {"SANDBOXCTL_CACHE_DIR": str(cache)}
    p = write(tmp_path, "p.yaml", "uname: {release: 6.0.0}\n")
    assert cli("compile", str(p), env=env).returncode == 0
    (entry,) = [f for f in cache.iterdir() if not f.name.startswith(("groups-", "own-"))]
    assert entry.stat().st_mode & 0o077 == 0 and cache.stat().st_mode & 0o077 == 0
    data = entry.read_text().replace('"release": "6.0.0"', '"release": "6.6.6"')
    entry.write_text(data)  # a private, owned entry is trusted: the cache is really read
    out = json.loads(cli("compile", str(p), env=env).stdout)
    assert out["sentry"]["uname"]["release"] == "6.6.6"
    os.chmod(entry, 0o666)  # writable by others: not trusted, the profile is compiled again
    out = json.loads(cli("compile", str(p), env=env).stdout)
    assert out["sentry"]["uname"]["release"] == "6.0.0"
