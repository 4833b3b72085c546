"""GVP-GNN: features, shapes, determinism, rotation invariance, bad input (missing atoms, NMR, tiny, huge)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from params_helpers import default_params
from protalign.structure import registry
from protalign.structure.embed import embed_samples
from protalign.structure.gvp import GVP, GVPEncoder, GVPLayerNorm, node_geometry

SMALL = default_params(
    structure={"gvp": {"knn": 30, "node_scalar": 16, "node_vector": 4, "edge_scalar": 8, "layers": 2, "out_dim": 12}}
).structure


def _encoder(params=SMALL, seed=0) -> GVPEncoder:
    torch.manual_seed(seed)
    return registry.build("gvp", params).eval()


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _moved(structure, rot, shift):
    return dataclasses.replace(
        structure,
        ca=(structure.ca @ rot.T + shift).astype(np.float32),
        xyz=(structure.xyz @ rot.T + shift).astype(np.float32),
    )


def _embed(enc, *structures) -> torch.Tensor:
    with torch.inference_mode():
        return enc.embed(enc.collate([enc.featurize(s) for s in structures]))


def test_registered_with_shape_and_default_dims(real):
    assert "gvp" in registry.available()
    enc = _encoder()
    s = real("107L")
    sample = enc.featurize(s)
    n = len(s)
    assert sample["node_s"].shape == (n, 7) and sample["node_v"].shape == (n, 3, 3)
    assert sample["edge_index"].shape == (2, 30 * n)  # kNN 30 incoming edges per residue
    assert sample["edge_s"].shape == (30 * n, 32) and sample["edge_v"].shape == (30 * n, 1, 3)
    assert torch.equal(torch.bincount(sample["edge_index"][1], minlength=n), torch.full((n,), 30))
    assert sample["node_s"][:, 6].min() == 1  # complete backbone everywhere
    # unit vectors where defined: forward is zero only for the chain's last residue
    fwd_norm = sample["node_v"][:, 0].norm(dim=1)
    assert torch.allclose(fwd_norm[:-1], torch.ones(n - 1), atol=1e-5) and fwd_norm[-1] == 0
    emb = _embed(enc, s, real("154L"))
    assert emb.shape == (2, 12) and enc.dim == 12 and torch.isfinite(emb).all()
    full = registry.build("gvp", default_params().structure)
    assert full.dim == 100 and full.W_v[1].wh.weight.shape == (16, 3)  # reference (100, 16) hidden


def test_deterministic_and_batch_independent(real):
    a, b = _encoder(seed=0), _encoder(seed=0)
    s1, s2 = real("107L"), real("11AS")
    e1, e2 = _embed(a, s1, s2), _embed(b, s1, s2)
    assert torch.equal(e1, e2)
    alone = _embed(a, s2)[0]
    torch.testing.assert_close(e1[1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_embed(_encoder(seed=1), s1)[0], e1[0])


def test_rotation_and_translation_invariance(real):
    enc = _encoder()
    s = real("11AS")  # two chains
    base = _embed(enc, s)[0]
    for seed in (1, 2):
        rot, shift = _rotation(seed), np.random.default_rng(seed).normal(scale=30, size=3)
        moved = _moved(s, rot, shift)
        torch.testing.assert_close(_embed(enc, moved)[0], base, atol=2e-4, rtol=1e-4)
        # node vectors are equivariant (they rotate with the frame), scalars invariant
        v0, v1 = enc.featurize(s)["node_v"], enc.featurize(moved)["node_v"]
        torch.testing.assert_close(v1, v0 @ torch.from_numpy(rot.T).float(), atol=1e-4, rtol=1e-4)
    # a reflection is not a rotation: the side-chain direction (chirality) changes the embedding
    mirror = _moved(s, np.diag([1.0, 1.0, -1.0]), np.zeros(3))
    assert not torch.allclose(_embed(enc, mirror)[0], base, atol=1e-3)


def test_gvp_block_equivariance():
    torch.manual_seed(0)
    gvp, norm = GVP((5, 4), (6, 3)), GVPLayerNorm((6, 3))
    s, v = torch.randn(10, 5), torch.randn(10, 4, 3)
    rot = torch.from_numpy(_rotation(3)).float()
    s1, v1 = norm(gvp((s, v)))
    s2, v2 = norm(gvp((s, v @ rot.T)))
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v1 @ rot.T, v2, atol=1e-5, rtol=1e-5)


def _drop_atoms(structure, name: str, residues) -> object:
    """The structure without atom `name` in the given residues (ptr/arrays rebuilt)."""
    ptr = structure.atom_ptr
    res_of_atom = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    drop = (structure.atom_name == name) & np.isin(res_of_atom, list(residues))
    keep = ~drop
    counts = np.bincount(res_of_atom[keep], minlength=len(ptr) - 1)
    return dataclasses.replace(
        structure,
        atom_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        atom_name=structure.atom_name[keep],
        element=structure.element[keep],
        xyz=structure.xyz[keep],
    )


def test_missing_backbone_atoms_imputed_or_skipped(real, make_structure):
    enc = _encoder()
    s = real("107L")
    holes = _drop_atoms(s, "N", [10, 11, 50])
    scal, vec, complete = node_geometry(holes)
    assert not complete[[10, 11, 50]].any() and complete.sum() == len(s) - 3
    assert (scal[[10, 11, 50], 6] == 0).all() and (vec[[10, 11, 50], 2] == 0).all()  # flag 0, no side chain
    assert np.isfinite(scal).all() and np.isfinite(vec).all()
    emb = _embed(enc, holes)
    assert torch.isfinite(emb).all()  # encoded, every residue kept
    # a Cα trace (no N/C at all) is skipped with a reason, not encoded from garbage
    trace = make_structure(s.ca, s.chain, pid="TRACE")
    with pytest.raises(ValueError, match="backbone N/C missing for 100%"):
        enc.featurize(trace)


def test_nmr_single_residue_and_tiny(real, make_structure):
    enc = _encoder()
    nmr = real("1LVZ")  # solution NMR, 20 models: the parser keeps model 1
    emb = _embed(enc, nmr)
    assert emb.shape == (1, 12) and torch.isfinite(emb).all()
    assert enc.featurize(nmr)["edge_index"].shape[1] == len(nmr) * (len(nmr) - 1)  # kNN capped at R-1
    first = real("107L")
    a1 = int(first.atom_ptr[1])
    one = dataclasses.replace(
        first,
        **{k: getattr(first, k)[:1] for k in ("chain", "resnum", "resname", "aa", "ca")},
        atom_ptr=first.atom_ptr[:2], atom_name=first.atom_name[:a1], element=first.element[:a1], xyz=first.xyz[:a1],
    )  # fmt: skip
    sample = enc.featurize(one)
    assert sample["num_nodes"] == 1 and sample["edge_index"].shape == (2, 0)
    out = _embed(enc, one)
    assert out.shape == (1, 12) and torch.isfinite(out).all()  # no edges: node features alone
    with pytest.raises(ValueError, match="non-finite"):
        enc.featurize(dataclasses.replace(first, ca=np.full_like(first.ca, np.nan)))


def test_thousands_of_residues_bounded(real):
    enc = _encoder()
    big = real("4KYA")  # ~4,000 residues
    sample = enc.featurize(big)
    assert sample["num_nodes"] == len(big) >= 4000
    vectors, skipped = embed_samples(enc, [sample], batch_size=4, max_gb=4.0)
    assert list(vectors) == [big.id] and not skipped
    # over the memory budget: skipped with the reason, never silently
    vectors, skipped = embed_samples(enc, [sample], batch_size=4, max_gb=0.01)
    assert not vectors and skipped[0]["id"] == big.id and "too large" in skipped[0]["reason"]


def test_first_message_equals_the_gvp_on_concatenated_edge_inputs():
    """The per-node factorisation of message[0] is the same function as GVP(x_src ‖ e ‖ x_dst), values and grads."""
    from protalign.structure.gvp import GVPConvLayer, _cat

    torch.manual_seed(0)
    layer = GVPConvLayer((100, 16), (32, 1), 0.0).double()
    n, m = 40, 300
    s = torch.randn(n, 100, dtype=torch.float64, requires_grad=True)
    v = torch.randn(n, 16, 3, dtype=torch.float64, requires_grad=True)
    e = (torch.randn(m, 32, dtype=torch.float64), torch.randn(m, 1, 3, dtype=torch.float64))
    src, dst = torch.randint(0, n, (m,)), torch.randint(0, n, (m,))
    fast = layer._first_message(s, v, e, src, dst)
    ref = layer.message[0](_cat((s[src], v[src]), e, (s[dst], v[dst])))
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    w = [torch.randn_like(t) for t in ref]
    wrt = [s, v, *layer.message[0].parameters()]
    g_fast = torch.autograd.grad(sum((a * b).sum() for a, b in zip(fast, w, strict=True)), wrt)
    g_ref = torch.autograd.grad(sum((a * b).sum() for a, b in zip(ref, w, strict=True)), wrt)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
