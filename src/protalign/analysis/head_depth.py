"""`head_depth@<llm>-<gdm>-<layers>` stage (RQ5): cross-validated heads with a 1-3 layer structure head."""

from __future__ import annotations

from typing import Any

from protalign.analysis.cv import run_depth
from protalign.params import Params
from protalign.paths import Paths


def run(params: Params, paths: Paths, llm: str, gdm: str, layers: int) -> dict[str, Any]:
    return run_depth(params, paths, llm, gdm, layers)
