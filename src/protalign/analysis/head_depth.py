"""`head_depth@<llm>-<gdm>` stage (RQ5): cross-validated heads with a structure head of each depth in
analysis.depths (1-3 layers), all fitted by one worker pool."""

from __future__ import annotations

from typing import Any

from protalign.analysis.cv import run_depths
from protalign.params import Params
from protalign.paths import Paths


def run(params: Params, paths: Paths, llm: str, gdm: str) -> dict[int, dict[str, Any]]:
    return run_depths(params, paths, llm, gdm)
