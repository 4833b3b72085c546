"""ScanNet's optimised forward (blocked kernels, u·S − S·c, class binning, k-d tree reuse) against the formulas
written out directly (spec §3), on toy proteins and on two real entries: same values and same gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_scannet import toy  # tests/structure is on sys.path (rootdir-less test modules)

from protalign.structure import scannet
from protalign.structure import scannet_frames as sf
from protalign.structure.scannet import ScanNetEncoder, _segment_softmax_pool

REAL = ("107L", "1PEN")  # a 164-residue lysozyme and a 16-residue toxin (fewer atoms than one block)


def naive_gauss(kernel, u):
    s = kernel.sqrt_precision.clamp(-10.0, 10.0)
    diff = u[..., :, None] - kernel.centers  # [..., d, N]
    proj = torch.einsum("ijn,...jn->...in", s, diff)
    return torch.exp(-0.5 * proj.square().sum(-2))


def naive_filters(bank, g, attr):
    outer = torch.einsum("mkn,mkf->mnf", g, attr).reshape(g.shape[0], -1)
    h = outer @ bank.kernel12.reshape(-1, bank.kernel12.shape[-1]) + g.sum(1) @ bank.kernel1
    return F.relu(bank.norm(h))


def naive_forward(net, b):
    """ScanNet's first layers with every neighbour attribute gathered and masked explicitly."""
    valid = (b["atom_nbr"] >= 0).unsqueeze(-1).to(b["atom_u"].dtype)
    g = naive_gauss(net.gauss_atom, b["atom_u"]) * valid
    attr = net.atom_embedding[b["atom_type"]][b["atom_nbr"].clamp_min(0)] * valid
    y = naive_filters(net.filters_atom, g, attr)
    w = net.pool_feat.weight / net.pool_feat.weight.norm(dim=1, keepdim=True)
    pooled = _segment_softmax_pool(net.pool_coef(y), y @ w.T, b["atom_res"], len(b["aa_in"]))
    onehot = F.one_hot(b["aa_in"], net.n_aa + 1)[:, : net.n_aa].to(y.dtype)
    x = torch.cat([F.relu(net.aa_norm(net.aa_proj(onehot))), F.relu(net.pool_norm(pooled))], 1)
    valid = (b["aa_nbr"] >= 0).unsqueeze(-1).to(x.dtype)
    g = naive_gauss(net.gauss_aa, b["aa_u"]) * valid
    return naive_filters(net.filters_aa, g, x[b["aa_nbr"].clamp_min(0)] * valid)


def _double(batch):
    return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}


def _model(seed=0):
    torch.manual_seed(seed)
    enc = ScanNetEncoder({"pooling": "mean"}).eval()
    with torch.no_grad():  # the zero-initialised attention weights would hide the atom pooling
        enc.net.pool_coef.weight.normal_(0, 0.3)
        for bn in (m for m in enc.net.modules() if isinstance(m, scannet.BetaBN)):
            bn.beta.normal_(0, 0.2)
            bn.bn.running_mean.normal_(0, 0.2)
            bn.bn.running_var.uniform_(0.5, 2.0)
    return enc


def _check(enc, batch):
    net = enc.net
    with torch.no_grad():
        fast32 = net(batch)["SCAN_filter_activity_aa"]
        net64, b64 = net.double(), _double(batch)
        fast64, ref64 = net64(b64)["SCAN_filter_activity_aa"], naive_forward(net64, b64)
        net.float()
    assert (ref64 > 0).float().mean() > 0.1  # the comparison is not between two zero tensors
    torch.testing.assert_close(fast64, ref64, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(fast32.double(), ref64, atol=2e-4, rtol=1e-4)


def test_blocked_forward_equals_direct_formulas_on_toys(monkeypatch):
    monkeypatch.setattr(scannet, "ROW_CHUNK", 100)  # many blocks, a partial last one
    enc = _model()
    samples = [
        enc.featurize(toy(seed=1)),
        enc.featurize(toy("G", pid="ONE")),
        enc.featurize(toy("KFA", seed=2)),
    ]
    _check(enc, enc.collate(samples))  # "G": 4 atoms < K, so padding neighbours are exercised too


def test_blocked_forward_equals_direct_formulas_on_real_proteins(shared_data):
    from protalign.corpus.structures import parse_structure

    enc = _model(1)
    samples = [
        enc.featurize(parse_structure(shared_data / "structures" / f"{p}.pdb.gz", p).structure) for p in REAL
    ]
    batch = enc.collate(samples)
    assert batch["atom_nbr"].shape[0] > scannet.ROW_CHUNK // sf.K_ATOM  # more than one block
    _check(enc, batch)
    for s in samples:  # the residue neighbourhood is the head of the graph one: same as its own query
        np.testing.assert_array_equal(s["aa_nbr"].numpy(), sf.knn(s["pos"].double().numpy(), sf.K_AA))


def test_gradients_equal_direct_formulas(monkeypatch):
    """train_structure@scannet backpropagates through the blocked path: same gradients as the formulas."""
    monkeypatch.setattr(scannet, "ROW_CHUNK", 100)
    enc = _model(2)
    net = enc.net.double().train()
    b = _double(enc.collate([enc.featurize(toy(seed=3)), enc.featurize(toy("GASKA", seed=4, pid="B"))]))
    weight = torch.randn(
        len(b["aa_in"]), 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    grads = []
    for forward in (lambda: net(b)["SCAN_filter_activity_aa"], lambda: naive_forward(net, b)):
        net.zero_grad()
        (forward() * weight).sum().backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "gauss_atom.sqrt_precision" in grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], atol=1e-9, rtol=1e-7, msg=k)


@pytest.mark.parametrize("n", [3, 40])
def test_knn_matches_brute_force(n):
    rng = np.random.default_rng(n)
    pts = rng.normal(size=(n, 3)) * 4
    idx = sf.knn(pts, 16)
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    brute = np.argsort(dist, axis=1, kind="stable")[:, :16]
    valid = min(n, 16)
    np.testing.assert_array_equal(idx[:, :valid], brute[:, :valid])
    assert (idx[:, valid:] == -1).all()
