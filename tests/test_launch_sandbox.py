"""The host layer of `sandboxctl apply`, with real sandboxes: namespaces, root, ids,
capabilities, rlimits, env, cwd, exit statuses."""

from __future__ import annotations

import os
import uuid

import pytest
from _helpers_launch import apply, write_profile


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return d


def _status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")


def test_identity_pid_namespace_caps_and_hostname(tmp_path, state):
    prof = write_profile(tmp_path, """\
        uname: {hostname: h2a-box, release: 3.2.1-test}
        """)
    r = apply(prof, "sh", "-c",
              "hostname; cat /proc/sys/kernel/hostname; cat /proc/sys/kernel/osrelease; "
              "echo pid=$$; ls /proc | grep -c '^[0-9]*$'; cat /proc/1/comm; "
              "cat /proc/self/status; cat /proc/self/uid_map",
              state=state)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "h2a-box" and lines[1] == "h2a-box"
    assert lines[2] == "3.2.1-test"
    assert lines[3] == "pid=2"  # pid 1 is the sandbox's init, the program comes next
    assert int(lines[4]) <= 4  # init, sh, and the command substitution's children only
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(_status_field(r.stdout, cap), 16) == 0, cap
    assert _status_field(r.stdout, "NoNewPrivs") == "1"
    assert _status_field(r.stdout, "Seccomp") == "2"
    uid_map = r.stdout.splitlines()[-1].split()
    assert uid_map == ["0", str(os.geteuid()), "1"]


def test_root_mounts_readonly_and_nothing_reaches_the_host(tmp_path, state):
    share = tmp_path / "share"
    share.mkdir()
    (share / "data.txt").write_text("hello from the host\n")
    marker = f"h2a-{uuid.uuid4().hex[:8]}"
    prof = write_profile(tmp_path, f"""\
        filesystem:
          mediation: direct
          root: {{source: /, readonly: true, overlay: memory}}
          mounts: !replace
            - {{type: proc, target: /proc}}
            - {{type: dev, target: /dev}}
            - {{type: tmpfs, target: /tmp, size: 8Mi}}
            - {{source: {share}, target: /data, readonly: true}}
          deny: !replace [/etc/shadow]
        """)
    script = f"""
        cat /data/data.txt
        touch /data/new 2>/dev/null && echo data-writable || echo data-ro
        echo x > /etc/{marker} && echo etc-write-ok
        echo x > /proc/sys/kernel/hostname 2>/dev/null && echo procsys-writable || echo procsys-ro
        echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable || echo sysrq-ro
        cat /etc/shadow >/dev/null 2>&1 && echo shadow-readable || echo shadow-hidden
        df -k /tmp | tail -1 | awk '{{print "tmp-kb", $2}}'
        ls /dev | tr '\\n' ' '; echo
        cat /proc/self/mountinfo
    """
    r = apply(prof, "sh", "-c", script, state=state)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "hello from the host" in out
    assert "data-ro" in out and "etc-write-ok" in out
    assert "procsys-ro" in out and "sysrq-ro" in out
    assert "shadow-hidden" in out
    assert "tmp-kb 8192" in out
    devs = next(line for line in out.splitlines() if "urandom" in line).split()
    for node in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"):
        assert node in devs
    # The host's own mounts (cgroups, sysfs, its devpts) are not in the sandbox.
    mountinfo = out
    assert " - cgroup" not in mountinfo and " - sysfs" not in mountinfo
    # ...and what the program wrote to the root stayed in memory.
    assert not os.path.exists(f"/etc/{marker}")
    assert not (share / "new").exists()


def test_kept_capability_uid_gid_env_cwd(tmp_path, state):
    prof = write_profile(tmp_path, """\
        process:
          cwd: /tmp
          env: {FOO: bar, PATH: /usr/bin:/bin}
          user: {uid: 1000, gid: 1001}
        capabilities: {keep: [CAP_NET_BIND_SERVICE]}
        """)
    r = apply(prof, "sh", "-c", "echo $FOO; pwd; id -u; id -g; env | sort; cat /proc/self/status",
              state=state, H2A_SECRET="leak")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["bar", "/tmp", "1000", "1001"]
    assert "H2A_SECRET" not in r.stdout and "SANDBOXCTL_STATE_DIR" not in r.stdout
    bit = 1 << 10  # CAP_NET_BIND_SERVICE
    for cap in ("CapPrm", "CapEff", "CapBnd", "CapAmb", "CapInh"):
        assert int(_status_field(r.stdout, cap), 16) == bit, cap


def test_rlimits_applied_and_too_high_is_one_clear_error(tmp_path, state):
    prof = write_profile(tmp_path, "process:\n  rlimits: {nofile: 512, nproc: 300}\n")
    r = apply(prof, "bash", "-c", "ulimit -n; ulimit -u", state=state)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["512", "300"]
    hard = 10 ** 9  # above any hard limit a non-CAP_SYS_RESOURCE process has
    prof = write_profile(tmp_path, f"process:\n  rlimits: {{nofile: {hard}}}\n", name="hi.yaml")
    r = apply(prof, "true", state=state)
    assert r.returncode == 1
    assert "nofile" in r.stderr and "hard limit" in r.stderr
    assert "Traceback" not in r.stderr


def test_exit_statuses_and_command_not_found(tmp_path, state):
    prof = write_profile(tmp_path)
    assert apply(prof, "sh", "-c", "exit 42", state=state).returncode == 42
    r = apply(prof, "sh", "-c", "kill -TERM $$", state=state)
    assert r.returncode == 128 + 15
    r = apply(prof, "sh", "-c", "kill -KILL $$", state=state)
    assert r.returncode == 128 + 9
    r = apply(prof, "no-such-command-h2a", state=state)
    assert r.returncode == 127
    assert "no-such-command-h2a" in r.stderr and "not found" in r.stderr


def test_missing_cwd_is_a_clear_error(tmp_path, state):
    prof = write_profile(tmp_path, "process:\n  cwd: /no/such/dir\n")
    r = apply(prof, "true", state=state)
    assert r.returncode == 1
    assert "/no/such/dir" in r.stderr and "process.cwd" in r.stderr
    assert "Traceback" not in r.stderr


def test_no_runtime_fd_reaches_the_program(tmp_path, state):
    prof = write_profile(tmp_path)
    r = apply(prof, "sh", "-c", "ls -l /proc/$$/fd", state=state)
    assert r.returncode == 0, r.stderr
    fds = sorted(int(line.split()[8]) for line in r.stdout.splitlines()[1:])
    assert fds == [0, 1, 2], r.stdout


def test_no_user_namespaces_is_one_sentence_with_the_fix(tmp_path, state):
    """user.max_user_namespaces is per user namespace: set it to 0 in a throw-away one
    (the host's value is untouched) and run sandboxctl there."""
    import shlex
    import shutil
    import subprocess

    from _helpers_launch import apply_cmd, env_for

    if not shutil.which("unshare"):
        pytest.skip("needs util-linux unshare")
    prof = write_profile(tmp_path)
    inner = "echo 0 > /proc/sys/user/max_user_namespaces && exec " + shlex.join(apply_cmd(prof, "true"))
    r = subprocess.run(["unshare", "-Ur", "sh", "-c", inner], capture_output=True, text=True,
                       env=env_for(state), timeout=30)
    assert r.returncode == 1
    assert "user namespaces are disabled" in r.stderr and "max_user_namespaces" in r.stderr
    assert "Traceback" not in r.stderr


def test_network_none_has_only_loopback_up(tmp_path, state):
    prof = write_profile(tmp_path, "network: {mode: none}\n")
    r = apply(prof, "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1; ip -o link show lo",
              state=state)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [x.strip() for x in lines[:-1]] == ["lo"]
    assert "UP" in lines[-1].split(">")[0]


@pytest.mark.parametrize("keep", [False, True])
def test_overlay_dir_upper_layer_kept_or_removed(tmp_path, state, keep):
    upper = tmp_path / "upper"
    upper.mkdir()
    marker = f"h2a-{uuid.uuid4().hex[:8]}"
    prof = write_profile(tmp_path, f"""\
        filesystem:
          mediation: direct
          root: {{source: /, overlay: dir, upper_dir: {upper}, keep_upper: {str(keep).lower()}}}
        """)
    r = apply(prof, "sh", "-c", f"echo kept > /etc/{marker} && cat /etc/{marker}", state=state)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "kept\n"
    assert not os.path.exists(f"/etc/{marker}")  # the host's /etc never changes
    if keep:
        assert (upper / "layers" / "etc" / "upper" / marker).read_text() == "kept\n"
        r = apply(prof, "cat", f"/etc/{marker}", state=state)
        assert r.stdout == "kept\n", r.stderr
    else:
        assert list(upper.iterdir()) == []


def test_stdio_passes_through(tmp_path, state):
    import subprocess

    from _helpers_launch import apply_cmd, env_for

    prof = write_profile(tmp_path)
    data = "".join(f"line {i}\n" for i in range(20000))
    r = subprocess.run(apply_cmd(prof, "sh", "-c", "wc -l; echo to-stderr >&2"), input=data,
                       capture_output=True, text=True, env=env_for(state), timeout=30)
    assert r.returncode == 0
    assert r.stdout.strip() == "20000"
    assert r.stderr == "to-stderr\n"


def test_deny_globs_hide_paths_also_through_symlinks(tmp_path, state):
    if not os.path.islink("/lib") or not os.path.exists("/usr/lib/os-release"):
        pytest.skip("needs a merged-/usr host (/lib -> usr/lib)")
    prof = write_profile(tmp_path, """\
        filesystem:
          mediation: direct
          deny: [/lib/os-releas*, /etc/passw?]
        """)
    r = apply(prof, "sh", "-c", "cat /usr/lib/os-release || echo hidden1; "
              "cat /etc/passwd >/dev/null 2>&1 || echo hidden2; cat /etc/group | head -c1 && echo",
              state=state)
    assert r.returncode == 0, r.stderr
    assert "hidden1" in r.stdout and "hidden2" in r.stdout
    assert "ID=" not in r.stdout


def test_overlay_none_readonly_root_with_writable_tmpfs(tmp_path, state):
    prof = write_profile(tmp_path, """\
        filesystem:
          mediation: direct
          root: {source: /, overlay: none, readonly: true}
          mounts:
            - {type: tmpfs, target: /h2a-scratch, size: 1Mi}
        """)
    r = apply(prof, "sh", "-c", "touch /etc/x 2>/dev/null || echo etc-ro; "
              "mkdir /top 2>/dev/null || echo top-ro; touch /tmp/y && echo tmp-rw; "
              "touch /h2a-scratch/z && echo scratch-rw", state=state)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["etc-ro", "top-ro", "tmp-rw", "scratch-rw"]
    assert not os.path.exists("/h2a-scratch")  # the mount point lives in the sandbox only


def test_network_passthrough_keeps_the_hosts_interfaces(tmp_path, state):
    prof = write_profile(tmp_path, "network: {mode: passthrough}\n")
    r = apply(prof, "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1", state=state)
    assert r.returncode == 0, r.stderr
    with open("/proc/net/dev") as fh:
        host = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
    assert sorted(x.strip() for x in r.stdout.splitlines()) == host
