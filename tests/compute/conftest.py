"""The Ray tests share one real local cluster per pytest run (head + one worker node, 1 CPU each)."""

from __future__ import annotations

import pytest
from ray_local_cluster import start_cluster


@pytest.fixture(scope="session")
def ray_cluster():
    yield from start_cluster()
