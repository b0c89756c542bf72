"""`extends`: built-ins by name, relative files, merge rules, !replace, cycles."""

from sandboxctl.engine.compile import compile_profile

from _helpers_engine import errors_of, find, write


def test_lists_append_maps_merge_scalars_override(tmp_path):
    write(tmp_path, "base.yaml", """
        process:
          env: {A: "1", B: "2"}
          rlimits: {nofile: 100}
        filesystem:
          mounts: [{type: tmpfs, target: /a}]
        """)
    p = write(tmp_path, "sub/child.yaml", """
        extends: ../base.yaml
        process:
          env: {B: "3", C: "4"}
        filesystem:
          mounts: [{type: tmpfs, target: /b}]
        """)
    plan = compile_profile(p)
    assert plan.launch.env == (("A", "1"), ("B", "3"), ("C", "4"))
    assert [m.target for m in plan.gofer.mounts] == ["/a", "/b"]
    assert plan.launch.rlimits[0].soft == 100
    # each value keeps the file that really holds it
    a, b = plan.gofer.mounts
    assert a.source_loc.file.endswith("base.yaml") and a.source_loc.line == 7
    assert b.source_loc.file.endswith("child.yaml") and b.source_loc.line == 7


def test_replace_tag(tmp_path):
    p = write(tmp_path, "p.yaml", """
        extends: default
        filesystem:
          mounts: !replace
            - {type: tmpfs, target: /scratch}
          deny: !replace []
        """)
    plan = compile_profile(p)
    assert [m.target for m in plan.gofer.mounts] == ["/scratch"]
    assert plan.gofer.deny == ()


def test_builtin_by_name_and_child_overrides_parent_deny(tmp_path):
    p = write(tmp_path, "p.yaml", """
        extends: default
        syscalls:
          allow: [ptrace]
        """)
    plan = compile_profile(p)
    ptrace = [r for r in plan.seccomp.rules if r.name == "ptrace"]
    assert len(ptrace) == 1 and ptrace[0].action == "allow"
    assert ptrace[0].source.file.endswith("p.yaml") and ptrace[0].source.line == 5
    unshare = [r for r in plan.seccomp.rules if r.name == "unshare"]
    assert unshare[0].action == "deny" and unshare[0].source.file.endswith("default.yaml")
    assert unshare[0].source.text == "- unshare"


def test_cycle_shows_the_chain(tmp_path):
    write(tmp_path, "a.yaml", "extends: ./b.yaml\n")
    write(tmp_path, "b.yaml", "extends: ./c.yaml\n")
    write(tmp_path, "c.yaml", "extends: ./a.yaml\n")
    d = find(errors_of(tmp_path / "a.yaml"), "cycle")
    assert d.file.endswith("c.yaml") and (d.line, d.col) == (3, 10)
    chain = d.message.split(": ", 1)[1].split(" -> ")
    assert [c.rsplit("/", 1)[-1] for c in chain] == ["a.yaml", "b.yaml", "c.yaml", "a.yaml"]


def test_self_extends_is_a_cycle(tmp_path):
    p = write(tmp_path, "self.yaml", "extends: ./self.yaml\n")
    assert "cycle" in errors_of(p)[0].message


def test_unknown_builtin_suggests(tmp_path):
    p = write(tmp_path, "p.yaml", "extends: defualt\n")
    d = find(errors_of(p), "unknown built-in profile 'defualt'")
    assert (d.line, d.col, d.hint) == (3, 10, "did you mean 'default'?")


def test_overrides_replace_by_dotted_path(tmp_path):
    plan = compile_profile(tmp_path.parent / "x" if False else
                           write(tmp_path, "p.yaml", "extends: default\n"),
                           overrides={"process.command": ["id", "-u"], "platform": "ptrace"})
    assert plan.launch.command == ("id", "-u") and plan.launch.platform == "ptrace"
