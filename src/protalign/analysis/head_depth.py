"""`head_depth@<llm>-<gdm>` stage (RQ5): cross-validated heads with a structure head of each depth in
analysis.depths (1-3 layers), all fitted by one worker pool, with the head seeds analysis.depth_seeds (two: the
depth comparison is real vs real, so no shuffled-pairing control is fitted; the archives' control columns are empty).
The saved heads' depth reuses crossval's archive rows for those seeds."""

from __future__ import annotations

from typing import Any

from protalign.analysis.cv import run_depths
from protalign.params import Params
from protalign.paths import Paths


def run(params: Params, paths: Paths, llm: str, gdm: str) -> dict[int, dict[str, Any]]:
    return run_depths(params, paths, llm, gdm)
