"""ScanNet port: chemistry tables, frames, neighbourhoods, invariance, type masking, bad input, training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protalign.corpus.store import AA_ORDER, ProteinStructure
from protalign.structure import registry
from protalign.structure import scannet_chem as chem
from protalign.structure import scannet_frames as sf
from protalign.structure.scannet import ScanNetEncoder

SIDE = {
    "G": [],
    "A": ["CB"],
    "S": ["CB", "OG"],
    "K": ["CB", "CG", "CD", "CE", "NZ"],
    "F": ["CB", "CG", "CD1", "CD2"],
}


def toy(seq: str = "GASKFAGSKA", seed: int = 0, pid: str = "TOY", chains: str | None = None, extra=None):
    """A protein with backbone + (partial) side chains at random but fixed offsets along a helix-like trace."""
    names, elements, xyz, ptr, ca = [], [], [], [0], []
    for i, letter in enumerate(seq):
        c = np.array([2.3 * np.cos(i * 1.75), 2.3 * np.sin(i * 1.75), 1.5 * i])
        atoms = ["N", "CA", "C", "O", *SIDE.get(letter, ["CB"]), *(extra or {}).get(i, [])]
        for j, a in enumerate(atoms):  # own stream per (residue, atom): a mutation leaves the rest in place
            rng = np.random.default_rng([seed, i, j])
            names.append(a)
            elements.append(a[0] if a != "SE" else "SE")
            xyz.append(c if a == "CA" else c + rng.normal(scale=1.3, size=3))
        ca.append(c)
        ptr.append(len(names))
    r = len(seq)
    return ProteinStructure(
        id=pid, chain=np.array(list(chains or "A" * r)), resnum=np.arange(1, r + 1, dtype=np.int32),
        resname=np.array(["UNK"] * r), aa=np.array([AA_ORDER.index(x) if x in AA_ORDER else 20 for x in seq]),
        ca=np.array(ca, np.float32), atom_ptr=np.array(ptr), atom_name=np.array(names), element=np.array(elements),
        xyz=np.array(xyz, np.float32),
    )  # fmt: skip


@pytest.fixture
def enc():
    torch.manual_seed(0)
    return ScanNetEncoder({"pooling": "mean"}).eval()


def test_chemistry_tables_keep_the_released_quirks():
    aa = AA_ORDER.index
    val = lambda r, a: chem.VALENCIES[chem.VALENCY[aa(r), chem.CODE[a]]]  # noqa: E731
    assert (
        val("G", "CA") == "CH2" and val("A", "CA") == "CH" and val("P", "N") == "N" and val("A", "N") == "NH"
    )
    assert (
        val("H", "NE2") == "C"
        and val("E", "CG") == "CH"
        and val("Y", "OH") == "OH"
        and val("K", "NZ") == "NH2"
    )
    assert (
        chem.PREV[aa("P"), chem.CODE["CD"]] == chem.CODE["CG"]
        and chem.NEXT[aa("P"), chem.CODE["CD"]] == chem.CODE["N"]
    )
    assert (
        chem.PREV[aa("A"), chem.CODE["N"]] == chem.PREV_C
        and chem.NEXT[aa("A"), chem.CODE["C"]] == chem.NEXT_N
    )
    assert list(chem.atom_codes(np.array(["OT1", "OT2", "H", "P"]))) == [
        chem.CODE["O"],
        chem.CODE["OXT"],
        -1,
        -1,
    ]


def test_frame_axes_follow_order_2_convention():
    o, nxt, prev = np.zeros((1, 3)), np.array([[0.0, 0.0, 2.0]]), np.array([[1.0, 1.0, -0.5]])
    rot = sf.frames(o, prev, nxt)[0]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(rot[2], [0, 0, 1], atol=1e-5)  # z towards next
    local_prev = rot @ prev[0]
    assert local_prev[0] > 0 and abs(local_prev[1]) < 1e-5  # previous atom in the xz half-plane, x > 0


def test_knn_puts_self_first_and_pads():
    pts = np.array([[0.0, 0, 0], [1, 0, 0], [0, 0, 0], [5, 5, 5]])  # a duplicated point
    idx = sf.knn(pts, 6)
    assert (idx[:, 0] == np.arange(4)).all() and (idx[:, 4:] == -1).all()
    assert sorted(idx[0, :4]) == [0, 1, 2, 3]


def test_features_are_invariant_to_rotation_and_translation(enc):
    s = toy(seed=1)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = toy(seed=1)
    moved.xyz[:] = (s.xyz.astype(np.float64) @ q.T + [10.0, -4.0, 3.0]).astype(np.float32)
    with torch.no_grad():
        a = enc.layers(enc.collate([enc.featurize(s)]))
        b = enc.layers(enc.collate([enc.featurize(moved)]))
    for k in ("SCAN_filter_activity_aa", "p_binding"):
        torch.testing.assert_close(a[k], b[k], atol=2e-4, rtol=1e-3)


def test_batching_equals_one_by_one_and_embeddings_pool(enc):
    s1, s2 = enc.featurize(toy("GASKFAGS", seed=3)), enc.featurize(toy("KKFASGAGSAKF", seed=4, pid="B"))
    with torch.no_grad():
        both = enc(enc.collate([s1, s2]))
        one = torch.cat([enc(enc.collate([s1])), enc(enc.collate([s2]))])
        torch.testing.assert_close(both, one, atol=1e-5, rtol=1e-5)
        emb = enc.embed(enc.collate([s1, s2]))
        torch.testing.assert_close(emb[1], one[8:].mean(0), atol=1e-5, rtol=1e-5)
        enc.pooling = "meanmax"
        assert enc.embed(enc.collate([s1, s2])).shape == (2, 256) and enc.dim == 256
    assert both.shape == (20, 128) and (both >= 0).all()


def test_type_mask_hides_type_and_side_chain(enc):
    """A masked residue's output must not depend on its type or side chain (the pretraining target)."""
    a, b = toy("GASKFAGSKA", seed=5), toy("GASKAAGSKA", seed=5)  # residue 4: F vs A (different side chains)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[4] = True
    with torch.no_grad():
        oa = enc(enc.collate([enc.featurize(a)]), type_mask=mask)
        ob = enc(enc.collate([enc.featurize(b)]), type_mask=mask)
        torch.testing.assert_close(oa, ob, atol=1e-5, rtol=1e-5)
        unmasked_a = enc(enc.collate([enc.featurize(a)]))
        unmasked_b = enc(enc.collate([enc.featurize(b)]))
    assert not torch.allclose(unmasked_a[4], unmasked_b[4])


@pytest.mark.parametrize(
    ("seq", "extra"),
    [
        ("G", None),  # single glycine
        ("A", None),
        ("GGGG", None),  # no side chains at all
        ("AXSA", None),  # unknown residue: kept as a type-hidden backbone (counted)
        ("MAM", {0: ["SE"], 2: ["H1", "P"]}),  # selenium kept (strange atom), H/P dropped (counted)
    ],
)
def test_bad_input_encodes(enc, seq, extra):
    s = enc.featurize(toy(seq, extra=extra))
    assert s["num_nodes"] == len(seq)  # unknown residues stay, type-hidden
    assert s["drops"]["unknown_residues"] == seq.count("X")
    with torch.no_grad():
        out = enc(enc.collate([s]))
    assert torch.isfinite(out).all() and out.shape == (s["num_nodes"], 128)


def test_missing_backbone_and_chain_breaks_encode(enc):
    s = toy("GASKFAGSKA", chains="AAAAABBBBB")
    keep = ~np.isin(
        np.arange(len(s.atom_name)), [s.atom_ptr[2], s.atom_ptr[2] + 2, s.atom_ptr[6] + 3]
    )  # N, C, O
    counts = np.bincount(np.repeat(np.arange(10), np.diff(s.atom_ptr))[keep], minlength=10)
    s2 = ProteinStructure(id="GAP", chain=s.chain, resnum=s.resnum, resname=s.resname, aa=s.aa, ca=s.ca,
                          atom_ptr=np.concatenate([[0], counts.cumsum()]), atom_name=s.atom_name[keep],
                          element=s.element[keep], xyz=s.xyz[keep])  # fmt: skip
    with torch.no_grad():
        out = enc(enc.collate([enc.featurize(s2)]))
    assert torch.isfinite(out).all()


def test_refusals_are_reasons(enc):
    with pytest.raises(ValueError, match="no residue of a standard type"):
        enc.featurize(toy("XX"))
    big = ScanNetEncoder({"max_residues": 5})
    with pytest.raises(ValueError, match="max_residues"):
        big.featurize(toy("GASKFAGSKA"))
    with pytest.raises(FileNotFoundError, match="scannet.weights"):
        ScanNetEncoder({"weights": "/nonexistent/ScanNet.h5"})


def test_crop_rebuilds_neighbourhoods(enc):
    s = enc.featurize(toy("GASKFAGSKAGASKFAGSKA", seed=6))
    c = enc.crop(s, 5, 12)
    assert c["num_nodes"] == 7 and c["aa_nbr"].max() < 7 and c["atom_nbr"].max() < c["num_atoms"]
    assert torch.equal(c["aa"], s["aa"][5:12])


def test_registry_and_one_training_step():
    from params_helpers import default_params
    from protalign.structure.tasks import type_mask

    params = default_params().structure
    torch.manual_seed(0)
    enc = registry.build("scannet", params)
    assert enc.dim == 128 and sum(p.numel() for p in enc.parameters() if p.requires_grad) == 473_988
    head = torch.nn.Linear(enc.node_dim, 20)
    samples = [enc.featurize(toy(seed=i, pid=f"P{i}")) for i in range(3)]
    cfg = default_params(structure={"train": {"max_residues": 6, "mask_rate": 0.3}}).structure.train
    enc.train()
    batch = enc.collate([enc.crop(s, 2, 2 + cfg.max_residues) for s in samples])
    mask = type_mask(batch["aa"], cfg.mask_rate, torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(head(enc(batch, type_mask=mask)[mask]), batch["aa"][mask])
    loss.backward()
    assert mask.any() and torch.isfinite(loss)
    assert enc.net.filters_aa.kernel12.grad is not None and enc.net.gauss_atom.centers.grad.abs().sum() > 0
