"""The YAML loader: positions, and clear errors for what profiles refuse."""

from sandboxctl.engine.yamlload import load_file, load_text

from _helpers_engine import errors_of, find, write


def test_positions_of_keys_values_and_items():
    doc = load_text("a: 1\nb:\n  - x\n  - {c: 2}\n", "f.yaml")
    b = doc.get("b")
    assert (b.key_loc.line, b.key_loc.col) == (2, 1)
    assert (b.value[1].loc.line, b.value[1].loc.col) == (4, 5)
    c = doc.at("b", 1, "c")
    assert (c.loc.line, c.loc.col, c.key_loc.col) == (4, 9, 6)
    assert c.loc.text == "- {c: 2}"
    assert doc.plain() == {"a": 1, "b": ["x", {"c": 2}]}


def test_duplicate_key_at_second_occurrence(tmp_path):
    p = write(tmp_path, "p.yaml", """
        uname:
          release: 4.4.0
          release: 5.0.0
        """)
    d = find(errors_of(p), "duplicate key 'release'")
    assert (d.line, d.col) == (5, 3) and d.path == "uname.release"
    assert "line 4" in d.hint


def test_tab_indentation(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("apiVersion: sandboxctl/v1\nuname:\n\trelease: 1\n")
    d = find(errors_of(p), "tab character")
    assert (d.line, d.col) == (3, 1)


def test_anchor_alias_and_merge_key(tmp_path):
    p = write(tmp_path, "a.yaml", """
        metadata: &m {name: x}
        uname: *m
        process:
          <<: {cwd: /}
        """)
    diags = errors_of(p)
    a = find(diags, "anchors (&m)")
    assert (a.line, a.col) == (3, 11)
    b = find(diags, "aliases")
    assert (b.line, b.col) == (4, 1)
    c = find(diags, "merge keys")
    assert (c.line, c.col) == (6, 3)


def test_empty_and_comment_only(tmp_path):
    for text in ("", "# nothing\n", "\n\n"):
        p = tmp_path / "e.yaml"
        p.write_text(text)
        d = find(errors_of(p), "empty")
        assert (d.line, d.col) == (1, 1)


def test_non_utf8_position(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"apiVersion: sandboxctl/v1\nmetadata:\n  name: caf\xe9\n")
    d = find(errors_of(p), "not UTF-8")
    assert (d.line, d.col) == (3, 12)


def test_not_a_mapping_and_several_documents(tmp_path):
    p = tmp_path / "l.yaml"
    p.write_text("- a\n- b\n")
    assert find(errors_of(p), "must be a mapping").line == 1
    p.write_text("a: 1\n---\nb: 2\n")
    d = find(errors_of(p), "one YAML document")
    assert d.line == 3


def test_syntax_error_position(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("apiVersion: sandboxctl/v1\nuname: {release: 4.4.0\n")
    d = find(errors_of(p), "invalid YAML")
    assert d.line == 3


def test_missing_file(tmp_path):
    d = find(errors_of(tmp_path / "nope.yaml"), "no such profile file")
    assert d.file.endswith("nope.yaml")


def test_scalar_types():
    doc = load_text("a: 0x10\nb: true\nc: ~\nd: 1.5\ne: '7'\nf: 0o17\n", "f")
    assert doc.plain() == {"a": 16, "b": True, "c": None, "d": 1.5, "e": "7", "f": 15}


def test_load_file_keeps_display_name(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("a: 1\n")
    assert load_file(p, "shown.yaml").get("a").loc.file == "shown.yaml"
