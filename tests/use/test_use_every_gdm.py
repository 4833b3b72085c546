"""`embed` and `describe` with every GDM of the end-to-end run (test_use_pipeline covers the default pair in depth).

The use commands rebuild each GDM from its checkpoint outside DVC; for every GDM they must give the pipeline's
own embeddings and the evaluate stage's ranks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from protalign.cli import main
from protalign.params import load_params
from protalign.paths import Paths
from protalign.storage import load_embeddings
from protalign.use import describe
from protalign.use.models import load_pair_heads
from protalign.use.pairs import resolve_pair

pytestmark = pytest.mark.pipeline


@pytest.fixture
def in_run(pipeline_run, monkeypatch):
    monkeypatch.chdir(pipeline_run.root)
    monkeypatch.setenv("PROTALIGN_CACHE", pipeline_run.env["PROTALIGN_CACHE"])
    return pipeline_run


def test_embed_and_describe_with_every_gdm(in_run, tmp_path, capsys):
    root = in_run.root
    params, paths = load_params(root / "params.yaml"), Paths(root)
    llm = params.align.llms[0]
    files = pd.read_parquet(paths.proteins).set_index("id")["structure_file"]
    for gdm in params.structure.gdms:
        pair = resolve_pair(paths, f"{llm}__{gdm}")
        out = tmp_path / gdm
        assert main(["embed", "data/structures", "--pair", pair.id, "--out", str(out), "--skip-bad"]) == 0
        assert f"pair:  {pair.id}" in capsys.readouterr().out
        ref = load_embeddings(root / "embeddings" / "structure" / gdm)
        mine = load_embeddings(out / "structure")
        assert sorted(mine.ids) == sorted(ref.ids), gdm
        np.testing.assert_allclose(mine.subset(ref.ids), ref.vectors, rtol=1e-4, atol=1e-5, err_msg=gdm)
        aligned = load_embeddings(out / "aligned")
        np.testing.assert_allclose(
            aligned.subset(ref.ids),
            load_pair_heads(pair).project_structure(ref.vectors),
            atol=1e-5,
            err_msg=gdm,
        )
        per_protein = pd.read_csv(paths.per_protein(pair.llm, pair.gdm)).set_index("id")
        pid = per_protein.index[0]
        _, result = describe.run(params, paths, paths.data / files[pid], pair=pair.id, top=1000, split="test")
        assert result["pair"] == pair.id
        rank = next(h["rank"] for h in result["results"] if h["id"] == pid)
        assert rank == per_protein.at[pid, "rank_s2t"], (gdm, pid)
