"""The checker behind params.py: a frozen dataclass built from a mapping, every value tested against its annotation.

Generic on purpose (it knows no protalign setting): params.py declares what is allowed, this module says whether a
value fits and, when not, which key, which value and what would be allowed.
"""

from __future__ import annotations

import dataclasses
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from protalign import errors


class ParamsError(errors.ParamsError):
    """A params value that does not fit the schema; `key` is its dotted path (e.g. 'align.epochs')."""

    def __init__(self, key: str, problem: str, source: str = "params") -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{source}: {key}: {problem}")


@dataclass(frozen=True)
class Range:
    """Allowed interval of a number (of its length for a list); `lo_open`/`hi_open` exclude the bound."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        above = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        below = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return above and below  # NaN is neither

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"


_SCALARS: dict[Any, tuple[str, Any]] = {  # type -> (words, test): a bool is no number, an int is a float
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    str: ("a string", lambda v: isinstance(v, str)),
}


def show_value(value: Any) -> str:
    return "null" if value is None else repr(list(value) if isinstance(value, tuple) else value)


def _describe(tp: Any) -> str:
    """What an annotation allows, in words for the error message."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        length = "with a length " if get_origin(args[0]) is tuple else ""
        return f"{_describe(args[0])} {length}{' '.join(map(str, tp.__metadata__))}"
    if origin in (Union, types.UnionType):  # the schema only uses `X | None`
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is tuple:
        each = _describe(args[0]) if args[-1] is Ellipsis else ", ".join(map(_describe, args))
        return f"a list of ({each})" if args[-1] is Ellipsis else f"a list of exactly {len(args)} items ({each})"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    return _SCALARS[tp][0]


def _check(tp: Any, value: Any, key: str, allowed: str | None = None) -> Any:
    """`value` as `tp` (lists -> tuples, ints -> floats) or a ParamsError naming `key` and `allowed` (or `tp`)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        out = _check(args[0], value, key, None if get_origin(args[0]) is tuple else _describe(tp))
        for rule in tp.__metadata__:
            if (len(out) if isinstance(out, tuple) else out) not in rule:
                what = f"has {len(out)} item(s)" if isinstance(out, tuple) else "is out of range"
                raise ParamsError(key, f"{show_value(value)} {what}; allowed: {_describe(tp)}")
        return out
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        try:
            return _check(inner, value, key)
        except ParamsError as exc:
            problem = f"{exc.problem} (or null)" if exc.key == key else exc.problem
            raise ParamsError(exc.key, problem) from None
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ParamsError(key, f"{show_value(value)} is not allowed; allowed: {_describe(tp)}")
    if origin is tuple:  # a YAML list; `tuple[X, ...]` any length, `tuple[X, Y, Z]` exactly three items
        if not isinstance(value, list | tuple) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise ParamsError(key, f"{show_value(value)} does not fit; allowed: {_describe(tp)}")
        types_ = [args[0]] * len(value) if args[-1] is Ellipsis else args
        return tuple(_check(t, v, f"{key}[{i}]") for i, (t, v) in enumerate(zip(types_, value, strict=True)))
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key)
    if not _SCALARS[tp][1](value):
        exp = tp is float and isinstance(value, str) and re.fullmatch(r"[-+]?[\d.]+[eE][-+]?\d+", value)
        hint = " (YAML reads 2e-4 as text: write 2.0e-4)" if exp else ""
        raise ParamsError(key, f"{show_value(value)} has the wrong type; allowed: {allowed or _describe(tp)}{hint}")
    return float(value) if tp is float else value


REST = "rest"  # field metadata: this field collects the mapping's other keys, unchecked (params.py checks them)


def build_dataclass(cls: type, data: Any, key: str) -> Any:
    """A frozen dataclass from a mapping holding exactly its fields, each checked against its annotation (a field
    with metadata {REST: True} instead receives, as a dict, the keys that no other field names)."""
    fields = dataclasses.fields(cls)
    rest = [f.name for f in fields if f.metadata.get(REST)]  # at most one: takes the keys no field names
    names = [f.name for f in fields if not f.metadata.get(REST)]
    if not isinstance(data, dict):
        raise ParamsError(key or "(file)", f"{show_value(data)} has the wrong type; allowed: {_describe(cls)}")
    join = (lambda k: f"{key}.{k}") if key else str
    unknown = [join(k) for k in data if k not in names]
    if unknown and not rest:
        raise ParamsError(", ".join(unknown), f"unknown key; allowed in {key or 'the top level'}: {', '.join(names)}")
    missing = [join(n) for n in names if n not in data]
    if missing:
        raise ParamsError(", ".join(missing), "missing; every key must be set (there are no defaults)")
    hints = get_type_hints(cls, include_extras=True)
    extra = {r: {k: v for k, v in data.items() if k not in names} for r in rest}  # raw: the owner checks them
    return cls(**{n: _check(hints[n], data[n], join(n)) for n in names}, **extra)
