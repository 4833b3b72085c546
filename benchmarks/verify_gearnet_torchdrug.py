"""One-time equivalence proof of protalign's GearNet-Edge against TorchDrug 0.2.1 itself (NOT part of the test suite).

Runs only in the throw-away TorchDrug environment of /work/shared/tools/torchdrug-reference/README.md, e.g.

    . /tmp/td-venv/bin/activate
    PYTHONPATH=/work/shared/tools/torchdrug-reference:src python benchmarks/verify_gearnet_torchdrug.py [--write]

It parses 3 real structures with TorchDrug (`Protein.from_pdb`, RDKit), builds TorchDrug's GearNet-Edge graph
(AlphaCarbonNode; Sequential(2), Spatial(10 Å, min 5), KNN(10, min 5); "gearnet" edge features), runs a small
random-weight GearNet-Edge (randomised BN statistics, eval mode) on the packed batch and compares protalign's port,
fed the SAME node residues/Cα/chains, on edges (exact set), line-graph size and outputs. `--write` stores the
TorchDrug state dict and the inputs/outputs as the CI fixture (tests/fixtures/gearnet/), plus TorchDrug's 6×512 key
list, so the test suite can check the port without TorchDrug.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchdrug_compat  # noqa: F401  (must precede torchdrug: cpp_extension signature shim)
from torchdrug import data, layers, models
from torchdrug.layers import geometry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from protalign.structure import gearnet_graph as gg  # noqa: E402
from protalign.structure.gearnet import GearNet, load_torchdrug_state_dict  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "structures"
IDS = ("1A8O", "1AAP", "1AYF")
HIDDEN = [32, 32]
FIXTURE = REPO / "tests" / "fixtures" / "gearnet"
SEED = 0


def td_graphs(ids):
    """TorchDrug proteins (residue view) → packed GearNet-Edge graph."""
    proteins = []
    with tempfile.TemporaryDirectory() as tmp:
        for pid in ids:
            pdb = Path(tmp) / f"{pid}.pdb"
            with gzip.open(DATA / f"{pid}.pdb.gz", "rb") as src, open(pdb, "wb") as dst:
                shutil.copyfileobj(src, dst)
            p = data.Protein.from_pdb(
                str(pdb), atom_feature=None, bond_feature=None, residue_feature="default"
            )
            p.view = "residue"
            proteins.append(p)
    batch = data.Protein.pack(proteins)
    batch.view = "residue"
    return construction()(batch)


def construction() -> layers.GraphConstruction:
    """TorchDrug's GearNet-Edge graph: Cα nodes, sequential (±2), radius 10 Å and 10-NN edges (|Δi| ≥ 5)."""
    return layers.GraphConstruction(
        node_layers=[geometry.AlphaCarbonNode()],
        edge_layers=[
            geometry.SequentialEdge(max_distance=2),
            geometry.SpatialEdge(radius=10.0, min_distance=5),
            geometry.KNNEdge(k=10, min_distance=5),
        ],
        edge_feature="gearnet",
    )


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Random weights AND random BN affine/running statistics, so every tensor of the state dict matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
            elif name.endswith("batch_norm.weight") or ".weight" in name and t.ndim == 1:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * (1.0 / max(1, t.shape[-1]) ** 0.5))


def td_model(hidden):
    return models.GearNet(input_dim=21, hidden_dims=hidden, num_relation=7, edge_input_dim=59, num_angle_bin=8,
                          batch_norm=True, concat_hidden=True, short_cut=True, readout="sum")  # fmt: skip


def compare_key_lists() -> dict[str, list[int]]:
    """TorchDrug's 6×512 state-dict keys and shapes (printed against ours)."""
    big_td = {k: list(v.shape) for k, v in td_model([512] * 6).state_dict().items()}
    big_ours = {k: list(v.shape) for k, v in GearNet([512] * 6).state_dict().items()}
    print(f"6x512: TorchDrug {len(big_td)} keys, ours {len(big_ours)}; identical names+shapes+order:",
          list(big_td.items()) == list(big_ours.items()))  # fmt: skip
    return big_td


def our_edges(pos: torch.Tensor, chain: torch.Tensor, ptr: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Our edges (index, relation) of every protein of the packed batch, offset to batch node numbers."""
    ei_all, rel_all = [], []
    for i in range(len(IDS)):
        a, b = ptr[i], ptr[i + 1]
        ei, rel = gg.build_edges(pos[a:b], chain[a:b])
        ei_all.append(ei + int(a))
        rel_all.append(rel)
    return torch.cat(ei_all, 1), torch.cat(rel_all)


def compare_graphs(graph, line, ei, rel, rtype, pos, ptr) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Print how our edges, edge features and line graph agree with TorchDrug's; returns (edge features, line
    graph, TorchDrug's sorted edge list)."""
    mine = sorted(zip(ei[0].tolist(), ei[1].tolist(), rel.tolist(), strict=True))
    theirs = sorted(map(tuple, graph.edge_list.tolist()))
    print("edge multiset identical:", mine == theirs, f"({len(mine)} vs {len(theirs)})")
    ef = gg.edge_features(ei, rel, rtype, pos, 7)
    lg = gg.line_graph(ei, pos, int(ptr[-1]), 8)
    # compare edge features / line-graph relation histograms order-independently
    key_td = {tuple(e): f for e, f in zip(graph.edge_list.tolist(), graph.edge_feature.float(), strict=True)}
    ef_err = max(float((key_td[(s, t, r)] - f).abs().max()) for s, t, r, f in
                 zip(ei[0].tolist(), ei[1].tolist(), rel.tolist(), ef, strict=True))  # fmt: skip
    print("edge feature max abs diff:", ef_err)
    print(
        "line edges:",
        lg.shape[1],
        "vs",
        int(line.num_edge),
        "angle-bin histogram identical:",
        torch.equal(torch.bincount(lg[2], minlength=8), torch.bincount(line.edge_list[:, 2], minlength=8)),
    )
    ours_edges = list(zip(ei[0].tolist(), ei[1].tolist(), rel.tolist(), strict=True))
    td_edges = list(map(tuple, graph.edge_list.tolist()))
    mine_l = sorted((ours_edges[a], ours_edges[b], c) for a, b, c in lg.t().tolist())
    theirs_l = sorted((td_edges[a], td_edges[b], c) for a, b, c in line.edge_list.tolist())
    print("line-graph (edge_in, edge_out, angle bin) multiset identical:", mine_l == theirs_l)
    return ef, lg, theirs


def check_study_size(graph, x, ei, rel, ef, lg) -> None:
    """The same comparison at the study's size (6×512), printed, not stored."""
    big = td_model([512] * 6)
    randomise(big, SEED + 1)
    big.eval()
    ours_big = GearNet([512] * 6)
    load_torchdrug_state_dict(ours_big, big.state_dict())
    ours_big.eval()
    with torch.no_grad():
        want = big(graph, graph.node_feature.float())["node_feature"]
        got = ours_big(x, ei, rel, ef, lg)
    d = (got - want).abs().max().item()
    print(
        f"6x512 node: max |x| {want.abs().max().item():.4g}, max abs diff {d:.3g}, rel {d / want.abs().max().item():.3g}"
    )


def write_fixture(model, graph, line, ptr, theirs, td_node, td_graph, big_td) -> None:
    """The CI fixture: TorchDrug's small model, its inputs, edges and outputs, and the 6×512 key list."""
    symbol = graph.node_feature.float().argmax(1)
    rtype, pos, chain = graph.residue_type, graph.node_position.float(), graph.chain_id
    FIXTURE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), FIXTURE / "torchdrug_gearnet_edge_32x32.pt")
    arrays = {"ids": np.array(IDS), "ptr": ptr.astype(np.int64), "symbol": symbol.numpy().astype(np.int8),
              "rtype": rtype.numpy().astype(np.int8), "pos": pos.numpy(), "chain": chain.numpy().astype(np.int16),
              "resnum": graph.residue_number.numpy().astype(np.int32),
              "edges": np.array(theirs, dtype=np.int32), "line_bins": torch.bincount(
                  line.edge_list[:, 2], minlength=8).numpy(),
              "node_feature": td_node.numpy(), "graph_feature": td_graph.numpy()}  # fmt: skip
    np.savez_compressed(FIXTURE / "torchdrug_expected.npz", **arrays)
    (FIXTURE / "torchdrug_keys_6x512.json").write_text(json.dumps(big_td, indent=0) + "\n")
    print("wrote", sorted(p.name for p in FIXTURE.iterdir()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write the CI fixture")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    big_td = compare_key_lists()

    # --- small model on 3 real proteins ---------------------------------------------------------------------
    graph = td_graphs(IDS)
    model = td_model(HIDDEN)
    randomise(model, SEED)
    model.eval()
    with torch.no_grad():
        out = model(graph, graph.node_feature.float())
    td_node, td_graph = out["node_feature"], out["graph_feature"]
    line = model.spatial_line_graph(graph)

    sizes = graph.num_nodes.tolist()
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    symbol = graph.node_feature.float().argmax(1)
    rtype = graph.residue_type
    pos = graph.node_position.float()
    chain = graph.chain_id
    print("nodes per protein:", dict(zip(IDS, sizes, strict=True)), "edges:", graph.num_edges.tolist(),
          "line edges:", line.num_edges.tolist())  # fmt: skip

    # --- our port on TorchDrug's inputs ---------------------------------------------------------------------
    ours = GearNet(HIDDEN)
    load_torchdrug_state_dict(ours, model.state_dict())
    ours.eval()
    ei, rel = our_edges(pos, chain, ptr)
    x = torch.nn.functional.one_hot(symbol, 21).float()
    assert torch.equal(x, graph.node_feature.float()), "node feature is not a one-hot"
    ef, lg, theirs = compare_graphs(graph, line, ei, rel, rtype, pos, ptr)
    with torch.no_grad():
        node = ours(x, ei, rel, ef, lg)
    graph_feat = torch.zeros(len(IDS), node.shape[1]).index_add_(
        0, torch.repeat_interleave(torch.arange(len(IDS)), torch.tensor(sizes)), node
    )
    for name, a, b in (("node", node, td_node), ("graph", graph_feat, td_graph)):
        d = (a - b).abs().max().item()
        print(f"{name}: max |x| {b.abs().max().item():.4g}, max abs diff {d:.3g}, "
              f"max rel diff (vs max |x|) {d / b.abs().max().item():.3g}")  # fmt: skip

    check_study_size(graph, x, ei, rel, ef, lg)
    if args.write:
        write_fixture(model, graph, line, ptr, theirs, td_node, td_graph, big_td)


if __name__ == "__main__":
    main()
