"""`@record`: a named tuple written as a class body, without importing `typing`.

`typing.NamedTuple` makes the same classes, but importing `typing` (~2 ms) and its class
machinery (~0.07 ms more a class than `collections.namedtuple`) are on the start-up path
of every `sandboxctl apply`, where the Plan's thirty-odd record types are made. The
fields are the body's annotations, in order; a value given to a field is its default;
the rest of the body (docstring, methods, properties, class attributes without an
annotation) goes on the class. The annotations stay in `__annotations__` (strings, with
`from __future__ import annotations`), so `typing.get_type_hints` reads them as it reads a
NamedTuple's, where something needs the types.

    @record
    class Point:
        x: int
        y: int = 0

        def norm1(self) -> int:
            return abs(self.x) + abs(self.y)
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")

_NOT_COPIED = frozenset(("__dict__", "__weakref__", "__annotations__"))


def record(cls: type[T]) -> type[T]:
    body = cls.__dict__
    fields = tuple(body.get("__annotations__", {}))
    defaults = [body[f] for f in fields if f in body]
    if any(f not in body for f in fields[len(fields) - len(defaults):]):
        raise TypeError(f"{cls.__name__}: a field without a default follows one with a default")
    base = namedtuple(cls.__name__, fields, defaults=defaults or None,  # type: ignore[misc]
                      module=cls.__module__)
    ns = {k: v for k, v in body.items() if k not in fields and k not in _NOT_COPIED}
    ns["__slots__"] = ()
    ns["__annotations__"] = dict(body.get("__annotations__", {}))
    made = type(cls.__name__, (base,), ns)
    made.__qualname__ = cls.__qualname__
    return made  # type: ignore[return-value]


__all__ = ["record"]
