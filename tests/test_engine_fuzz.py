"""Property-based tests: random and mutated documents fed to the loader, the validator
and the compiler. Nothing but ProfileError may ever escape."""

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from sandboxctl.engine.compile import compile_profile
from sandboxctl.engine.errors import ProfileError
from sandboxctl.engine.filter import build_filter
from sandboxctl.engine.plan import Plan

from _helpers_engine import REPO

DEFAULT = (REPO / "profiles" / "default.yaml").read_text()
EXAMPLE = (REPO / "profiles" / "examples" / "python-script.yaml").read_text()
SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
_DIR = tempfile.mkdtemp(prefix="sbx-fuzz-")


def run_bytes(data: bytes) -> None:
    path = Path(_DIR) / "examples" / "p.yaml"  # next to a python-app/ for relative sources
    path.parent.mkdir(exist_ok=True)
    (path.parent / "python-app").mkdir(exist_ok=True)
    path.write_bytes(data)
    try:
        plan = compile_profile(path)
    except ProfileError as exc:
        assert exc.diagnostics and all(d.line >= 1 and d.col >= 1 for d in exc.diagnostics)
        return
    # A profile that validates compiles to a Plan that round-trips and a filter libseccomp takes.
    assert Plan.from_json(plan.to_json()) == plan
    build_filter(plan)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(data):
    run_bytes(data)


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#@ \t\n,?%0.~") ), max_size=200))
def test_random_yaml_punctuation(text):
    run_bytes(text.encode())


def _mutate(source: str):
    return st.lists(st.tuples(st.integers(0, len(source)), st.integers(0, 8),
                              st.text(alphabet="abc-:{}[] \n\t&*!0@E_", max_size=6)),
                    min_size=1, max_size=4).map(lambda muts: _apply(source, muts))


def _apply(source: str, muts) -> str:
    s = source
    for pos, cut, ins in muts:
        pos = min(pos, len(s))
        s = s[:pos] + ins + s[pos + cut:]
    return s


@SETTINGS
@given(_mutate(DEFAULT))
def test_mutated_default(text):
    run_bytes(text.encode())


@SETTINGS
@given(_mutate(EXAMPLE))
def test_mutated_example(text):
    run_bytes(text.encode())


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["allow", "deny", "EPERM", "AF_UNIX", "@default",
                                                           "/tmp", "./x", "64Mi", "unlimited", "openat"]))
keys = st.sampled_from(["apiVersion", "kind", "extends", "process", "uname", "syscalls", "filesystem",
                        "network", "resources", "audit", "platform", "allow", "deny", "default",
                        "action", "errno", "name", "names", "args", "index", "op", "value", "mask",
                        "mounts", "target", "source", "type", "size", "egress", "publish", "host",
                        "cidr", "ports", "mode", "rlimits", "env", "command", "keep", "root",
                        "overlay", "capabilities", "hostname", "release", "sandbox"])
docs = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(keys, inner, max_size=5)),
                    max_leaves=25)


@SETTINGS
@given(st.dictionaries(keys, docs, max_size=6))
def test_random_documents(doc):
    doc = {"apiVersion": "sandboxctl/v1", "kind": "SandboxProfile", **doc}
    run_bytes(json.dumps(doc, default=str).encode())  # JSON is YAML


def _leaf_paths(value, prefix=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaf_paths(v, prefix + (i,))
    yield prefix


def _example_doc() -> dict:
    from sandboxctl.engine.yamlload import load_text

    doc = load_text(EXAMPLE, "x").plain()
    doc.update(load_text(DEFAULT, "d").plain())  # a full document of every section
    doc.pop("extends", None)
    return doc


_DOC = _example_doc()
_PATHS = [p for p in _leaf_paths(_DOC) if p]


def _replace(doc, path, value):
    doc = json.loads(json.dumps(doc))
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return doc


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(_PATHS), docs), min_size=1, max_size=3))
def test_valid_document_with_replaced_values(changes):
    doc = _DOC
    for path, value in changes:
        try:
            doc = _replace(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue
    run_bytes(json.dumps(doc, default=str).encode())
