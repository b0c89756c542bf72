"""engine/record.py: named tuples written as class bodies, without `typing`."""

from __future__ import annotations

import json
import pickle
import typing
from pathlib import Path

import pytest

from sandboxctl.engine.builtins import builtin_file
from sandboxctl.engine.cache import compile_cached
from sandboxctl.engine.plan import Plan, Source, SyscallRule, tagged_hook
from sandboxctl.engine.record import record


@record
class Point:
    """A point."""

    x: int
    y: int = 0
    label: str | None = None
    ORIGIN_NAME = "o"  # a class attribute (no annotation): not a field

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)

    @property
    def mirrored(self) -> "Point":
        return self._replace(x=-self.x)


def test_a_record_is_a_named_tuple_with_the_class_body() -> None:
    p = Point(3)
    assert p == (3, 0, None) and Point._fields == ("x", "y", "label")
    assert (p.x, p.y, p.label) == (3, 0, None)
    assert p.norm1() == 3 and p.mirrored == Point(-3) and type(p.mirrored) is Point
    assert Point.ORIGIN_NAME == "o" and Point.__doc__ == "A point."
    assert repr(Point(1, 2, "a")) == "Point(x=1, y=2, label='a')"
    assert Point._make([1, 2, None]) == Point(1, 2) and Point(1, 2)._asdict()["y"] == 2
    assert hash(Point(1)) == hash(Point(1)) and {Point(1): 1}[Point(1)] == 1
    with pytest.raises(AttributeError):
        p.x = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.other = 1  # type: ignore[attr-defined]  (no __dict__)
    assert pickle.loads(pickle.dumps(Point(5, 6))) == Point(5, 6)
    assert typing.get_type_hints(Point) == {"x": int, "y": int, "label": str | None}


def test_a_field_without_a_default_after_one_with_a_default_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):
        @record
        class Bad:
            a: int = 0
            b: int


PROFILES = ["default", "examples/network-client.yaml", "examples/python-script.yaml",
            "examples/shell-pipeline.yaml"]


def _plan(name: str) -> Plan:
    path = builtin_file(name) if "/" not in name else str(
        Path(__file__).resolve().parent.parent / "profiles" / name)
    return compile_cached(path, use_cache=False)


@pytest.mark.parametrize("name", PROFILES)
def test_the_plan_caches_tagged_form_reads_back_equal(name: str) -> None:
    plan = _plan(name)
    text = json.dumps(plan.to_tagged(), sort_keys=True)
    back = Plan.from_tagged(json.loads(text, object_hook=tagged_hook))
    assert back == plan and back.to_json() == plan.to_json()
    assert type(back.seccomp.rules[0]) is SyscallRule and isinstance(back.seccomp.rules, tuple)
    assert Plan.from_dict(plan.to_dict()) == plan  # the checking reader, as before


def test_a_damaged_tagged_plan_is_refused_not_half_read() -> None:
    plan = _plan("default")
    data = plan.to_tagged()
    data["seccomp"]["@"] = "NoSuchRecord"
    with pytest.raises(KeyError):
        json.loads(json.dumps(data), object_hook=tagged_hook)
    data["seccomp"]["@"] = "Source"  # the wrong record's fields
    with pytest.raises(TypeError):
        json.loads(json.dumps(data), object_hook=tagged_hook)
    with pytest.raises(TypeError):
        Plan.from_tagged({"version": 1})  # an untagged dict is no Plan
    assert Source("f", 1, 2) == Source(file="f", line=1, col=2, text="")


# -- the Plan cache reads its entries with the C JSON scanner alone ---------------------


def test_the_cache_reader_reads_what_json_reads() -> None:
    from sandboxctl.engine.cache import _loads

    doc = {"a": [1, -2, 3.5, 1e-7, True, False, None], "s": "é\\u00e9\n\t\"q\" \\\\ 😀",
           "n": {"deep": [[], {}, [{"x": "y"}]]}, "big": 2**70}
    text = json.dumps(doc)
    assert _loads(text) == json.loads(text) == doc
    assert _loads(json.dumps(doc, ensure_ascii=False)) == doc
    plan = _plan("default")
    entry = json.dumps({"format": 2, "plan": plan.to_tagged()}, sort_keys=True)
    assert Plan.from_tagged(_loads(entry)["plan"]) == plan
    for bad in (text[:-1], text + "x", text + " {}", "", "{'a': 1}", '{"a": NaN}'):
        with pytest.raises(ValueError):
            _loads(bad)


def test_the_cache_key_is_stable_and_sees_every_input(tmp_path) -> None:
    from sandboxctl.engine.cache import _key

    prof = tmp_path / "p.yaml"
    prof.write_text("x")
    k = _key(prof, None, None)
    assert k == _key(prof, None, None) == _key(prof, None, {}) and len(k) == 64
    assert _key(prof, "shown", None) != k
    assert _key(prof, None, {"a": 1}) != k != _key(prof, None, {"a": 2})
    assert _key(prof, None, {"a": 1, "b": 2}) == _key(prof, None, {"b": 2, "a": 1})
    other = tmp_path / "q.yaml"
    other.write_text("x")
    assert _key(other, None, None) != k
