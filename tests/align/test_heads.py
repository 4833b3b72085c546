"""Projection heads: shapes, unit outputs, layer counts, seeded init, save/load round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from protalign.align.heads import HeadConfig, build_heads, load_heads, save_heads


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_heads_shapes_norms_and_layers(layers):
    config = HeadConfig(text_dim=10, structure_dim=6, dim=4, structure_layers=layers, hidden_dim=7)
    text_head, structure_head = build_heads(config, seed=0)
    g = torch.Generator().manual_seed(1)
    t, s = text_head(torch.randn(5, 10, generator=g)), structure_head(torch.randn(5, 6, generator=g))
    assert t.shape == s.shape == (5, 4)
    torch.testing.assert_close(t.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(s.norm(dim=1), torch.ones(5))
    linears = [m for m in structure_head.modules() if isinstance(m, nn.Linear)]
    relus = [m for m in structure_head.modules() if isinstance(m, nn.ReLU)]
    assert len(linears) == layers and len(relus) == layers - 1
    assert len([m for m in text_head.modules() if isinstance(m, nn.Linear)]) == 1


def test_invalid_layers():
    for layers in (0, 4):
        with pytest.raises(ValueError, match="structure_layers"):
            HeadConfig(text_dim=3, structure_dim=3, dim=3, structure_layers=layers)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    config = HeadConfig(text_dim=5, structure_dim=5, dim=3, structure_layers=2, hidden_dim=4)
    state = torch.random.get_rng_state()
    a, b = build_heads(config, 3), build_heads(config, 3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for x, y in zip(a, b, strict=True):
        for p, q in zip(x.parameters(), y.parameters(), strict=True):
            assert torch.equal(p, q)
    c = build_heads(config, 4)
    assert not torch.equal(a[0].proj.weight, c[0].proj.weight)


def test_save_load_round_trip(tmp_path):
    config = HeadConfig(text_dim=5, structure_dim=4, dim=3, structure_layers=3, hidden_dim=6)
    text_head, structure_head = build_heads(config, 0)
    path = tmp_path / "models" / "heads" / "a__b.pt"
    save_heads(path, text_head, structure_head, config, {"best_epoch": 7, "loss": "study"})
    t2, s2, config2, info = load_heads(path)
    assert config2 == config and info == {"best_epoch": 7, "loss": "study"}
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s2(x), structure_head(x))
    assert [p.name for p in path.parent.iterdir()] == ["a__b.pt"]  # no temporary leftovers
    with pytest.raises(FileNotFoundError, match="align stage"):
        load_heads(tmp_path / "missing.pt")
