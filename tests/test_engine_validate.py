"""Validation: every error class at its exact line and column, with did-you-mean."""

from _helpers_engine import errors_of, find, write


def test_unknown_key_with_did_you_mean(tmp_path):
    p = write(tmp_path, "p.yaml", """
        metdata: {name: x}
        process:
          comand: [sh]
        """)
    diags = errors_of(p)
    d = find(diags, "unknown key 'metdata'")
    assert (d.line, d.col, d.path, d.hint) == (3, 1, "metdata", "did you mean 'metadata'?")
    d = find(diags, "unknown key 'comand'")
    assert (d.line, d.col, d.path) == (5, 3, "process.comand")
    assert d.hint == "did you mean 'command'?"


def test_wrong_type_enum_and_const(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("apiVersion: sandboxctl/v2\nkind: SandboxProfile\n"
                 "process: {cwd: 5}\nnetwork: {mode: netstak}\nplatform: ptrce\n")
    diags = errors_of(p)
    d = find(diags, "expected 'sandboxctl/v1'")
    assert (d.line, d.col) == (1, 13)
    d = find(diags, "expected a string, got a number (5)")
    assert (d.line, d.col, d.path) == (3, 16, "process.cwd")
    d = find(diags, "got 'netstak'")
    assert (d.line, d.col, d.hint) == (4, 17, "did you mean 'netstack'?")
    assert find(diags, "got 'ptrce'").hint == "did you mean 'ptrace'?"


def test_missing_required(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("kind: SandboxProfile\nsyscalls:\n  default: {errno: EPERM}\n")
    diags = errors_of(p)
    assert (find(diags, "missing required key 'apiVersion'").line) == 1
    d = find(diags, "missing required key 'action'")
    assert (d.line, d.col, d.path) == (3, 3, "syscalls.default")


def test_syscall_group_errno_and_constant_names(tmp_path):
    p = write(tmp_path, "p.yaml", """
        syscalls:
          allow:
            - ptrce
            - "@file-oi"
            - {name: socket, args: [{index: 0, op: eq, value: AF_UNX}]}
          deny:
            - {name: mount, errno: EPREM}
            - {names: [getpid, bogus_call]}
        """)
    diags = errors_of(p)
    d = find(diags, "unknown syscall 'ptrce'")
    assert (d.line, d.col, d.path, d.hint) == (5, 7, "syscalls.allow[0]", "did you mean 'ptrace'?")
    d = find(diags, "unknown syscall group '@file-oi'")
    assert (d.line, d.col, d.hint) == (6, 7, "did you mean '@file-io'?")
    d = find(diags, "unknown constant 'AF_UNX'")
    assert (d.line, d.col, d.hint) == (7, 55, "did you mean 'AF_UNIX'?")
    d = find(diags, "unknown errno name 'EPREM'")
    assert (d.line, d.col, d.hint) == (9, 28, "did you mean 'EPERM'?")
    d = find(diags, "unknown syscall 'bogus_call'")
    assert (d.line, d.col, d.path) == (10, 24, "syscalls.deny[1].names[1]")


def test_i386_only_syscall_is_unknown_on_x86_64(tmp_path):
    p = write(tmp_path, "p.yaml", "syscalls:\n  deny: [socketcall]\n")
    d = find(errors_of(p), "unknown syscall 'socketcall' on x86_64")
    assert (d.line, d.col) == (4, 10)


def test_allowed_and_denied_at_the_same_level(tmp_path):
    p = write(tmp_path, "p.yaml", """
        syscalls:
          allow: [getpid, "@file-io"]
          deny:
            - getpid
            - unlink
        """)
    diags = errors_of(p)
    d = find(diags, "'getpid'")
    assert (d.line, d.col) == (6, 7)
    assert "allowed (line 4)" in d.message and "denied" in d.message
    # A call reached through a group and named explicitly is not a conflict: the name wins.
    assert not [x for x in diags if "'unlink'" in x.message]


def test_capabilities(tmp_path):
    p = write(tmp_path, "p.yaml", "capabilities:\n  keep: [CAP_NET_BIND_SERVICE, CAP_SYS_ADMN, net_raw]\n")
    diags = errors_of(p)
    d = find(diags, "unknown capability 'CAP_SYS_ADMN'")
    assert (d.line, d.col, d.hint) == (4, 32, "did you mean 'CAP_SYS_ADMIN'?")
    assert find(diags, "unknown capability 'net_raw'").hint == "did you mean 'CAP_NET_RAW'?"


def test_uname_field_longer_than_64_bytes(tmp_path):
    p = write(tmp_path, "p.yaml", "uname:\n  release: " + "r" * 65 + "\n  version: " + "v" * 64 + "\n")
    diags = errors_of(p)
    d = find(diags, "uname release is 65 bytes")
    assert (d.line, d.col, d.path) == (4, 12, "uname.release")
    assert not [x for x in diags if "version" in x.message]


def test_mount_targets_relative_and_overlapping(tmp_path):
    (tmp_path / "data").mkdir()
    p = write(tmp_path, "p.yaml", """
        extends: default
        filesystem:
          mounts:
            - {source: ./data, target: data}
            - {source: ./data, target: /tmp/}
        """)
    diags = errors_of(p)
    d = find(diags, "must be an absolute path")
    assert (d.line, d.col, d.hint) == (6, 32, "did you mean '/data'?")
    # relative target errors are reported per file first; fix it and see the overlap.
    p.write_text(p.read_text().replace("target: data", "target: /data"))
    d = find(errors_of(p), "mount target /tmp is already mounted at")
    assert (d.line, d.col) == (7, 32) and "default.yaml:" in d.message
    assert d.path == "filesystem.mounts[1].target"  # the index in the file that wrote it


def test_missing_bind_source(tmp_path):
    p = write(tmp_path, "p.yaml", "filesystem:\n  mounts:\n    - {source: ./nope, target: /x}\n")
    d = find(errors_of(p), "does not exist on the host")
    assert (d.line, d.col) == (5, 16) and str(tmp_path / "nope") in d.message


def test_contradictory_network(tmp_path):
    p = write(tmp_path, "p.yaml", """
        network:
          mode: none
          egress: [{cidr: 10.0.0.0/8, ports: [5432]}]
        """)
    d = find(errors_of(p), "contradict mode none")
    assert (d.line, d.col, d.path) == (5, 3, "network.egress")
    p = write(tmp_path, "q.yaml", """
        network:
          mode: netstack
          egress:
            - {cidr: 10.0.0.0/33}
            - {host: example.com, cidr: 10.0.0.0/8}
          publish: [{host: "127.0.0.1:8080", sandbox: 80}, {host: "8080", sandbox: 81}]
        """)
    diags = errors_of(p)
    assert (find(diags, "not an address or CIDR").line, find(diags, "not an address or CIDR").col) == (6, 14)
    assert find(diags, "exactly one of").line == 7
    d = find(diags, "already published")
    assert (d.line, d.col) == (8, 59)


def test_all_errors_reported_at_once_in_order(tmp_path):
    p = write(tmp_path, "p.yaml", """
        uname: {releas: x}
        syscalls:
          default: {action: deni}
          allow: [ptrce]
        """)
    diags = errors_of(p)
    assert [(d.line, d.col) for d in diags] == [(3, 9), (5, 21), (6, 11)]


def test_errors_in_parent_and_child_both_reported(tmp_path):
    write(tmp_path, "base.yaml", "uname: {relase: x}\n")
    p = write(tmp_path, "child.yaml", "extends: ./base.yaml\nprocess: {cwdd: /}\n")
    diags = errors_of(p)
    files = {d.file.split("/")[-1]: d for d in diags}
    assert set(files) == {"child.yaml", "base.yaml"}
    assert (files["base.yaml"].line, files["base.yaml"].col) == (3, 9)
    assert (files["child.yaml"].line, files["child.yaml"].col) == (4, 11)


def test_examples_and_default_are_valid():
    from sandboxctl.engine.compile import compile_builtin

    for name in ("default", "python-script", "shell-pipeline", "network-client"):
        assert compile_builtin(name).seccomp.rules
