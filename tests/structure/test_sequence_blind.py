"""The sequence-blind ablation (structure.residue_types: false): same backbone, different sequence → same embedding
for every GDM; with types the two differ. Plus the task rule and the checkpoint/params agreement check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_scannet import toy  # tests/structure is on sys.path (rootdir-less test modules)

from protalign.params import load_params
from protalign.paths import Paths
from protalign.structure import embed, registry, tasks, train
from protalign.structure.blind import BLIND_ATOMS, sequence_blind

REPO = Path(__file__).resolve().parents[2]
GDMS = ("gat", "gearnet_edge", "gvp", "scannet", "foldseek3di", "composition")
# same length, different residues (and so different side-chain atoms); toy() draws each atom from its own
# (seed, residue, atom) stream, so N, CA, C, O sit at identical coordinates in both
SEQ_A = "GASKFAGSKAGASKFAGSKAMW"
SEQ_B = "WKSAFGGAKSLASKFEGSRAGA"


def _params(residue_types: bool):
    params = load_params(REPO / "tests" / "pipeline_params.yaml")  # small widths
    return dataclasses.replace(
        params, structure=dataclasses.replace(params.structure, residue_types=residue_types)
    )


def _embed(gdm: str, residue_types: bool, structures) -> list[torch.Tensor]:
    torch.manual_seed(0)
    enc = registry.build(gdm, _params(residue_types).structure).eval()
    with torch.no_grad():
        return [enc.embed(enc.collate([enc.featurize(enc.input_structure(s))]))[0] for s in structures]


def test_blind_copy_keeps_backbone_only_and_no_types():
    a, b = toy(SEQ_A), toy(SEQ_B)
    assert not np.array_equal(a.aa, b.aa) and len(a.atom_name) != len(b.atom_name)
    ba, bb = sequence_blind(a), sequence_blind(b)
    for s in (ba, bb):
        assert (s.aa == 20).all() and set(s.resname) == {"UNK"}
        assert set(s.atom_name) <= set(BLIND_ATOMS) and len(s.atom_name) == 4 * len(s)
    assert np.array_equal(ba.xyz, bb.xyz) and np.array_equal(ba.atom_name, bb.atom_name)
    assert np.array_equal(ba.ca, a.ca) and np.array_equal(ba.chain, a.chain)
    assert len(a.atom_name) > len(ba.atom_name)  # side chains really were there


@pytest.mark.parametrize("gdm", GDMS)
def test_same_backbone_other_sequence_same_embedding_only_when_blind(gdm):
    structures = [toy(SEQ_A, pid="A"), toy(SEQ_B, pid="B")]
    blind = _embed(gdm, False, structures)
    assert torch.isfinite(blind[0]).all()
    assert torch.allclose(blind[0], blind[1], atol=1e-6), (blind[0] - blind[1]).abs().max()
    seen = _embed(gdm, True, structures)
    assert (seen[0] - seen[1]).abs().max() > 1e-4


@pytest.mark.parametrize("gdm", GDMS)
def test_config_records_the_setting(gdm):
    assert registry.build(gdm, _params(False).structure).config["residue_types"] is False
    assert registry.build(gdm, _params(True).structure).config["residue_types"] is True


def test_residue_type_task_dropped_or_refused_without_types(caplog):
    both = ("residue_type", "distance", "angle")
    assert tasks.usable_tasks(both, True) == both
    with caplog.at_level("INFO"):
        assert tasks.usable_tasks(both, False) == ("distance", "angle")
    assert "dropping the residue_type" in caplog.text
    with pytest.raises(ValueError, match="residue_type task has no targets"):
        tasks.usable_tasks(("residue_type",), False)


def test_embed_refuses_a_checkpoint_made_with_the_other_setting(tmp_path):
    paths = Paths(tmp_path)
    seen = registry.build("gat", _params(True).structure)
    train.save_checkpoint(paths.structure_model("gat"), seen, "gat", {"weights": "random"})
    with pytest.raises(ValueError, match="residue_types=True but params say False"):
        embed.run(_params(False), paths, "gat")
