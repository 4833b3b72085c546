"""Fixtures for the aligned-space commands (the synthetic run itself is built in use_world.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from use_world import make_run

from protalign.paths import Paths


@pytest.fixture
def run_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("PROTALIGN_CACHE", str(tmp_path / "cache"))
    return make_run(
        tmp_path / "repo", {("llm-a", "gdm-x"): 0.10, ("llm-b", "gdm-x"): 0.30, ("llm-a", "gdm-y"): None}
    )
