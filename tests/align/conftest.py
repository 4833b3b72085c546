"""Fixtures for the alignment tests (the synthetic worlds themselves are built in synthetic.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic import World, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)
