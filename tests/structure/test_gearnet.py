"""GearNet-Edge port: TorchDrug equivalence on a recorded fixture, exact graph semantics, state-dict import, encoder.

The fixture (tests/fixtures/gearnet/) was written once by benchmarks/verify_gearnet_torchdrug.py from TorchDrug 0.2.1
itself: a random-weight 2×32 GearNet-Edge state dict (randomised BN statistics), the node residues/Cα/chains
TorchDrug used for 1A8O, 1AAP, 1AYF, its edge list, line-graph angle-bin counts and outputs (eval mode).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from protalign.structure import gearnet_graph as gg
from protalign.structure.gearnet import GearNet, GearNetEncoder, load_torchdrug_state_dict
from protalign.structure.neighbors import nearest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gearnet"


@pytest.fixture(scope="module")
def td():
    arrays = dict(np.load(FIXTURE / "torchdrug_expected.npz"))
    state = torch.load(FIXTURE / "torchdrug_gearnet_edge_32x32.pt", map_location="cpu", weights_only=True)
    return arrays, state


def _encoder(hidden=(32, 32), **kw) -> GearNetEncoder:
    return GearNetEncoder({"hidden_dims": list(hidden), **kw}).eval()


def _td_samples(enc, arrays):
    ptr = arrays["ptr"]
    out = []
    for i, pid in enumerate(arrays["ids"]):
        sl = slice(ptr[i], ptr[i + 1])
        out.append(enc.make_sample(str(pid), torch.from_numpy(arrays["symbol"][sl].astype(np.int64)),
                                   torch.from_numpy(arrays["rtype"][sl].astype(np.int64)),
                                   torch.from_numpy(arrays["pos"][sl]),
                                   torch.from_numpy(arrays["chain"][sl].astype(np.int64))))  # fmt: skip
    return out


def test_graph_matches_torchdrug(td):
    arrays, _ = td
    enc = _encoder()
    batch = enc.collate(_td_samples(enc, arrays))
    ei, rel = batch["edge_index"], batch["relation"]
    mine = sorted(zip(ei[0].tolist(), ei[1].tolist(), rel.tolist(), strict=True))
    assert mine == sorted(map(tuple, arrays["edges"].tolist()))
    line = gg.line_graph(ei, batch["pos"], batch["ptr"][-1].item(), 8)
    assert torch.bincount(line[2], minlength=8).tolist() == arrays["line_bins"].tolist()


def test_outputs_match_torchdrug(td):
    arrays, state = td
    enc = _encoder()
    load_torchdrug_state_dict(enc, state)
    batch = enc.collate(_td_samples(enc, arrays))
    with torch.no_grad():
        node, graph = enc(batch), enc.embed(batch)
    for got, want in ((node, arrays["node_feature"]), (graph, arrays["graph_feature"])):
        want = torch.from_numpy(want)
        assert got.shape == want.shape
        scale = want.abs().max()
        assert (got - want).abs().max() <= 2e-6 * scale, float((got - want).abs().max() / scale)
    # and the check can fail: one perturbed weight moves the output well beyond that tolerance
    state = dict(state)
    state["layers.1.self_loop.bias"] = state["layers.1.self_loop.bias"] + 0.1
    load_torchdrug_state_dict(enc, state)
    with torch.no_grad():
        assert (enc(batch) - torch.from_numpy(arrays["node_feature"])).abs().max() > 1e-3


def test_6x512_keys_match_torchdrug():
    want = json.loads((FIXTURE / "torchdrug_keys_6x512.json").read_text())
    got = {k: list(v.shape) for k, v in GearNet([512] * 6).state_dict().items()}
    assert len(want) == 138 and list(got.items()) == list(want.items())


def test_state_dict_errors_and_engine_checkpoint(td):
    _, state = td
    enc = _encoder()
    missing = {k: v for k, v in state.items() if k != "edge_layers.0.linear.weight"}
    with pytest.raises(ValueError, match=r"1 missing \['edge_layers.0.linear.weight'\]"):
        load_torchdrug_state_dict(enc, missing)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_torchdrug_state_dict(_encoder(hidden=(32, 16)), state)
    with pytest.raises(ValueError, match="unexpected"):
        load_torchdrug_state_dict(enc, {**state, "extra.weight": torch.zeros(1)})
    engine = {
        "model": {**{f"model.{k}": v for k, v in state.items()}, "mlp.layers.0.weight": torch.zeros(2, 64)}
    }
    load_torchdrug_state_dict(enc, engine)
    assert torch.equal(enc.net.layers[0].linear.weight, state["layers.0.linear.weight"])


def test_residue_id_mapping():
    symbol, rtype = gg.td_residue_ids(np.array([0, 5, 18, 19, 20]))  # A G W Y unknown (store order)
    assert symbol.tolist() == [1, 0, 19, 18, 20] and rtype.tolist() == [1, 0, 19, 18, 0]
    with pytest.raises(ValueError, match="0..20"):
        gg.td_residue_ids(np.array([21]))


def test_edge_rules_chain_agnostic_filter_and_ties():
    # 12 residues on a line, 3.8 Å apart; chain break between 5 and 6
    pos = torch.tensor([[3.8 * i, 0.0, 0.0] for i in range(12)])
    chain = torch.tensor([0] * 6 + [1] * 6)
    ei, rel = gg.build_edges(pos, chain, radius=10.0, knn=3, min_distance=5)
    seq = ei[:, rel <= 4]
    assert not ((seq[0] <= 5) & (seq[1] >= 6)).any()  # sequential edges never cross chains
    assert ((seq[1] - seq[0]) == rel[rel <= 4] - 2).all()
    spatial = ei[:, rel >= 5]
    assert ((spatial[0] - spatial[1]).abs() >= 5).all()  # |Δindex| filter applies across chains too
    assert spatial.shape[1] == 0  # everything within 10 Å / 3-NN is < 5 residues apart
    # kNN ties (equidistant neighbours) keep the lower index; self is excluded
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])
    ei, rel = gg.build_edges(
        pos, torch.zeros(5, dtype=torch.long), radius=0, knn=2, seq_offsets=0, min_distance=0
    )
    knn0 = ei[0, (rel == 2) & (ei[1] == 0)].tolist()
    assert knn0 == [1, 2]


def test_nearest_equals_stable_sort_prefix_with_ties():
    # integer lattice: many equal distances straddle the k-th value; plus a random cloud without ties
    grid = torch.stack(torch.meshgrid(*[torch.arange(5.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for pos in (grid, torch.randn(300, 3) * 10):
        d2 = torch.cdist(pos, pos).pow(2)
        for k in (1, 7, 11, 31):
            want = torch.sort(d2, dim=1, stable=True).indices[:, :k]
            assert torch.equal(nearest(d2, k), want)


def test_radius_cap_counts_self_and_zero_length_dropped():
    pos = torch.zeros(40, 3)
    pos[:, 0] = torch.arange(40) * 0.1  # all within 10 Å of each other
    ei, rel = gg.build_edges(pos, torch.zeros(40, dtype=torch.long), knn=0, seq_offsets=0, min_distance=0,
                             max_radius_neighbors=32)  # fmt: skip
    rad = ei[:, rel == 1]
    per_centre = torch.bincount(rad[1], minlength=40)
    # legacy CUDA rule: the first 33 in-radius hits in index order INCLUDING self, then self is removed
    assert per_centre[:33].tolist() == [32] * 33 and per_centre[33:].tolist() == [33] * 7
    assert rad[0, rad[1] == 39].tolist() == list(range(33))
    dup = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [5.0, 0, 0]])
    ei, rel = gg.build_edges(dup, torch.zeros(3, dtype=torch.long), knn=2, seq_offsets=0, min_distance=0)
    lengths = (dup[ei[0]] - dup[ei[1]]).norm(dim=1)
    assert (lengths[rel > 0] > 0).all() and ((rel == 0).sum() == 3)


def test_edge_feature_layout_and_line_graph_bins():
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [1, 1, 0]])
    ei = torch.tensor([[0, 1, 1, 3], [1, 2, 0, 1]])  # 0→1, 1→2, 1→0, 3→1
    rel = torch.tensor([3, 6, 1, 5])
    rtype = torch.tensor([2, 19, 0, 4])
    f = gg.edge_features(ei, rel, rtype, pos, 7)
    assert f.shape == (4, 59)
    hot = f[0, :58].nonzero().flatten().tolist()
    assert hot == [2, 20 + 19, 40 + 3, 47 + 1] and f[0, 58] == pytest.approx(1.0)
    assert f[3, 58] == pytest.approx(1.0) and f[3, 47 + 2] == 1 and f[1, 58] == pytest.approx(1.0)
    line = gg.line_graph(ei, pos, 4, 8)
    pairs = {(a, b): c for a, b, c in line.t().tolist()}
    # node 1: in 0 (0→1), 3 (3→1) × out 1 (1→2), 2 (1→0); node 0: in 2 (1→0) × out 0 (0→1)
    assert set(pairs) == {(0, 1), (0, 2), (3, 1), (3, 2), (2, 0)}
    assert pairs[(2, 0)] == 0
    assert pairs[(0, 1)] == 7  # straight line, θ = π → clamped to the last bin
    assert pairs[(0, 2)] == 0  # back-tracking, θ = 0
    assert pairs[(3, 1)] == 4 and pairs[(3, 2)] == 4  # right angles


def test_encoder_batching_readout_crop_and_mask(make_structure):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    enc = _encoder(hidden=(16, 16, 16))
    assert enc.node_dim == 48 and enc.dim == 48
    structs = []
    for n, pid in ((25, "A"), (40, "B")):
        ca = np.cumsum(rng.normal(size=(n, 3)) * 2.2, axis=0)
        structs.append(
            make_structure(ca, ["A"] * (n // 2) + ["B"] * (n - n // 2), pid=pid, aa=rng.integers(0, 21, n))
        )
    samples = [enc.featurize(s) for s in structs]
    with torch.no_grad():
        both = enc.embed(enc.collate(samples))
        alone = enc.embed(enc.collate(samples[1:]))
        node = enc(enc.collate(samples[:1]))
    assert both.shape == (2, 48)
    torch.testing.assert_close(both[1:], alone, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(both[0], node.sum(0), rtol=1e-5, atol=1e-4)
    crop = enc.crop(samples[1], 5, 30)
    assert crop["num_nodes"] == 25 and crop["edge_index"].max() < 25 and crop["relation"].numel() > 0
    batch = enc.collate(samples[:1])
    mask = torch.zeros(25, dtype=torch.bool)
    mask[3] = True
    with torch.no_grad():
        masked = enc(batch, type_mask=mask)
    assert not torch.allclose(masked, node)
    with pytest.raises(ValueError, match="no residues"):
        enc.featurize(make_structure(np.zeros((0, 3)), [], pid="E", aa=np.zeros(0, dtype=np.int64)))


def test_mask_hides_residue_type(make_structure):
    """A masked residue's own type must not reach the output: changing it leaves the masked forward unchanged."""
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    enc = _encoder(hidden=(8, 8))
    ca = np.cumsum(rng.normal(size=(20, 3)) * 2.2, axis=0)
    aa = rng.integers(0, 20, 20)
    mask = torch.zeros(20, dtype=torch.bool)
    mask[4] = True
    outs = []
    for t in (0, 13):
        aa[4] = t
        s = enc.featurize(make_structure(ca, ["A"] * 20, aa=aa))
        with torch.no_grad():
            outs.append(enc(enc.collate([s]), type_mask=mask))
    torch.testing.assert_close(outs[0], outs[1])


def test_6x512_on_real_protein(real):
    torch.manual_seed(0)
    enc = _encoder(hidden=[512] * 6)
    with torch.no_grad():
        emb = enc.embed(enc.collate([enc.featurize(real("1A8O"))]))
    assert emb.shape == (1, 3072) and torch.isfinite(emb).all()


def test_our_parser_gives_torchdrug_nodes(td, real):
    """Same residues/Cα as TorchDrug's RDKit parse; only modified residues differ (store maps MSE → MET,
    TorchDrug keeps MSE as unknown symbol 20 / type GLY)."""
    arrays, _ = td
    ptr = arrays["ptr"]
    for i, pid in enumerate(arrays["ids"]):
        s = real(str(pid))
        sl = slice(ptr[i], ptr[i + 1])
        assert len(s.aa) == ptr[i + 1] - ptr[i]
        np.testing.assert_array_equal(s.ca, arrays["pos"][sl])
        np.testing.assert_array_equal(s.resnum, arrays["resnum"][sl])
        symbol, _ = gg.td_residue_ids(s.aa)
        differ = np.nonzero(symbol.numpy() != arrays["symbol"][sl])[0]
        assert (arrays["symbol"][sl][differ] == gg.TD_UNKNOWN_SYMBOL).all()
        assert len(differ) == (4 if pid == "1A8O" else 0)  # the 4 MSE of 1A8O


def test_tiny_proteins_and_config_from_params():
    from params_helpers import default_params

    cfg = GearNetEncoder.config_from_params(default_params().structure)
    assert cfg["hidden_dims"] == [512, 512] and cfg["readout"] == "sum" and cfg["graph"]["radius"] == 10.0
    enc = _encoder(hidden=(8,))
    for n, rels in ((1, [2]), (2, [1, 2, 2, 3])):
        s = enc.make_sample("t", torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                            torch.randn(n, 3), torch.zeros(n, dtype=torch.long))  # fmt: skip
        assert s["relation"].tolist() == rels
        with torch.no_grad():
            assert enc.embed(enc.collate([s])).shape == (1, 8)
    with pytest.raises(ValueError, match="unknown gearnet readout"):
        GearNetEncoder({"readout": "bad"})


def test_registered_and_built_from_params():
    from protalign.params import load_params
    from protalign.structure import registry

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    assert "gearnet_edge" in registry.available()
    enc = registry.build("gearnet_edge", params.structure)
    assert enc.dim == sum(params.structure.gearnet_edge.hidden_dims)  # concat_hidden + sum readout


def test_line_plan_edge_conv_equals_plain_relational_conv():
    """The compressed line-graph conv (one aggregate per node pair, empty angle bins skipped) = TorchDrug's form."""
    from protalign.structure.gearnet import GeometricRelationalGraphConv
    from protalign.structure.gearnet_kernels import line_plan, relational_adjacency

    g = torch.Generator().manual_seed(3)
    pos = torch.randn(40, 3, generator=g) * 6
    ei, rel = gg.build_edges(pos, torch.zeros(40, dtype=torch.long), knn=6, min_distance=3)
    e = ei.shape[1]
    assert torch.unique(ei[0] * 40 + ei[1]).numel() < e  # radius/kNN duplicates of one pair are exercised
    line = gg.line_graph(ei, pos, 40, 8)
    conv = GeometricRelationalGraphConv(16, 24, 8).eval()
    with torch.no_grad():
        conv.batch_norm.running_mean.normal_(generator=g)
        conv.batch_norm.running_var.uniform_(0.5, 2.0, generator=g)
    m = torch.randn(e, 16, generator=g, requires_grad=True)
    want = conv(m, relational_adjacency(line[0], line[1], line[2], e, 8, e))
    plan = line_plan(ei, line, 40, 8)
    assert plan.agg.shape[0] < 8 * e  # rows were actually compressed
    got = conv.forward_line(m, plan)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the in-place inference branch too
        assert torch.allclose(conv.forward_line(m, plan), want, atol=1e-5, rtol=1e-5)
    got.sum().backward()  # and it trains
    assert m.grad is not None and torch.isfinite(m.grad).all()
    # a wrong plan (line edges dropped) must differ
    bad = line_plan(ei, line[:, line[2] != 3], 40, 8)
    assert not torch.allclose(conv.forward_line(m, bad), want, atol=1e-5)


def test_row_sum_equals_dense_product_and_its_gradient():
    from protalign.structure.gearnet_kernels import _csr

    gen = torch.Generator().manual_seed(0)
    row = torch.tensor([3, 0, 3, 3, 1, 0])  # duplicates (3, 2) add up; row 2 and 4 empty
    col = torch.tensor([2, 1, 2, 0, 4, 4])
    dense = torch.zeros(5, 5, dtype=torch.float64)
    dense.index_put_((row, col), torch.ones(6, dtype=torch.float64), accumulate=True)
    rs = _csr(row, col, 5, 5)
    assert rs.shape == (5, 5)
    x = torch.randn(5, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    y = rs @ x
    assert torch.allclose(y, dense @ x)
    w = torch.randn(5, 7, dtype=torch.float64, generator=gen)
    (g,) = torch.autograd.grad((y * w).sum(), x)
    assert torch.allclose(g, dense.t() @ w)
    assert torch.autograd.gradcheck(lambda v: rs @ v, (x,))
    empty = _csr(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), 3, 5)
    assert torch.equal(empty @ x.detach(), torch.zeros(3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="5 rows"):
        rs @ torch.zeros(4, 7)
