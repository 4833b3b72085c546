"""GAT encoder: shapes, batching/permutation consistency, masking, pooling, registry round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from params_helpers import default_params
from protalign.structure import registry
from protalign.structure.gat import GATEncoder


def _encoder(pooling: str = "mean", seed: int = 0) -> GATEncoder:
    torch.manual_seed(seed)
    gat = {"hidden": 4, "heads": 3, "layers": 2, "dropout": 0.1}
    params = default_params(structure={"gat": gat, "pooling": pooling}).structure
    return registry.build("gat", params).eval()


def _toy(make_structure, n: int, pid: str, seed: int):
    rng = np.random.default_rng(seed)
    ca = np.cumsum(rng.normal(size=(n, 3)) * 2.2, axis=0)
    return make_structure(ca, ["A"] * (n // 2) + ["B"] * (n - n // 2), pid=pid, aa=rng.integers(0, 21, n))


def test_registry_builds_gat():
    assert "gat" in registry.available()
    enc = _encoder()
    assert isinstance(enc, GATEncoder) and enc.node_dim == 12 and enc.dim == 12
    with pytest.raises(KeyError, match="unknown structure model"):
        registry.build("nope", default_params().structure)


def test_forward_and_embed_shapes(make_structure):
    enc = _encoder()
    samples = [enc.featurize(_toy(make_structure, n, f"P{n}", n)) for n in (7, 30, 55)]
    batch = enc.collate(samples)
    assert batch["batch"].tolist() == [0] * 7 + [1] * 30 + [2] * 55
    assert enc(batch).shape == (92, 12)
    assert enc.embed(batch).shape == (3, 12)


def test_single_equals_batched_and_permutation(make_structure):
    enc = _encoder()
    samples = [enc.featurize(_toy(make_structure, n, f"P{n}", n)) for n in (9, 40, 23)]
    with torch.inference_mode():
        alone = torch.cat([enc.embed(enc.collate([s])) for s in samples])
        together = enc.embed(enc.collate(samples))
        reversed_ = enc.embed(enc.collate(samples[::-1]))
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reversed_, alone.flip(0), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alone[0], alone[1])  # different proteins, different vectors


def test_pooling_variants(make_structure):
    sample = _encoder().featurize(_toy(make_structure, 20, "X", 1))
    means = _encoder("mean").embed(_encoder("mean").collate([sample]))
    enc = _encoder("meanmax")
    with torch.inference_mode():
        nodes = enc(enc.collate([sample]))
        both = enc.embed(enc.collate([sample]))
    assert enc.dim == 24 and both.shape == (1, 24)
    torch.testing.assert_close(both[0, :12], nodes.mean(0))
    torch.testing.assert_close(both[0, 12:], nodes.max(0).values)
    torch.testing.assert_close(means[0], nodes.mean(0))  # same seed -> same weights
    with pytest.raises(ValueError, match="pooling"):
        registry.build("gat", default_params(structure={"pooling": "sum"}).structure)


def test_type_mask_hides_residue_type(make_structure):
    enc = _encoder()
    batch = enc.collate([enc.featurize(_toy(make_structure, 15, "X", 2))])
    mask = torch.zeros(15, dtype=torch.bool)
    mask[3] = True
    x = enc.node_input(batch, mask)
    assert x[3, :21].sum() == 0 and x[4, :21].sum() == 1
    # the output at a masked residue no longer depends on its true type
    other = dict(batch, aa=batch["aa"].clone())
    other["aa"][3] = (int(batch["aa"][3]) + 1) % 20
    with torch.inference_mode():
        torch.testing.assert_close(enc(batch, mask), enc(other, mask))
        assert not torch.allclose(enc(batch), enc(other))


def test_crop_keeps_inner_edges(make_structure):
    enc = _encoder()
    sample = enc.featurize(_toy(make_structure, 60, "X", 3))
    crop = enc.crop(sample, 10, 30)
    assert crop["num_nodes"] == 20 and crop["aa"].tolist() == sample["aa"][10:30].tolist()
    src, dst = sample["edge_index"]
    inner = ((src >= 10) & (src < 30) & (dst >= 10) & (dst < 30)).sum()
    assert crop["edge_index"].shape[1] == inner and crop["edge_index"].max() < 20


def test_real_protein_featurize(real):
    enc = _encoder()
    s = real("11AS")
    sample = enc.featurize(s)
    assert sample["num_nodes"] == len(s.ca) and sample["geo"].shape == (len(s.ca), 6)
    assert sample["geo"].abs().sum() > 0
    with torch.inference_mode():
        emb = enc.embed(enc.collate([sample]))
    assert torch.isfinite(emb).all()


def test_bad_structure_is_an_error(make_structure):
    enc = _encoder()
    with pytest.raises(ValueError, match="out of range"):
        enc.featurize(
            make_structure(np.zeros((3, 3)) + np.arange(3)[:, None] * 4, ["A"] * 3, aa=np.array([0, 25, 1]))
        )
