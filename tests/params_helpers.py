"""Params for tests: the repo's params.yaml (the only source of values) with a test's overrides.

`default_params(align={"epochs": 3}, structure={"train": {"epochs": 1}})` replaces nested sections key by key;
`with_params(p, "align.epochs", 3)` replaces one dotted key. Overrides bypass validation on purpose, so a test can
hand a stage a bad value and check the stage's own error.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protalign.params import Params, load_params

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@functools.cache
def repo_params() -> Params:
    return load_params(REPO_PARAMS)


def _replace(obj: Any, overrides: Mapping[str, Any], where: str) -> Any:
    """`obj` (a params dataclass) with `overrides`; a mapping value for a dataclass field recurses into it."""
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise KeyError(f"no params key(s) {[f'{where}{k}' for k in unknown]}")
    changes = {}
    for name, value in overrides.items():
        current = getattr(obj, name)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
            value = _replace(current, value, f"{where}{name}.")
        elif isinstance(value, list):
            value = tuple(value)
        changes[name] = value
    return dataclasses.replace(obj, **changes)


def default_params(**sections: Any) -> Params:
    """params.yaml with per-section overrides (mappings merge into nested sections; other values replace)."""
    return _replace(repo_params(), sections, "")


def with_params(params: Any, key: str, value: Any) -> Any:
    """`params` with the dotted `key` (e.g. "align.epochs") set to `value`."""
    head, _, rest = key.partition(".")
    return _replace(params, {head: with_params(getattr(params, head), rest, value) if rest else value}, "")
