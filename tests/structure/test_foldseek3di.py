"""foldseek3di: Foldseek's own 3Di strings (mini3di's upstream test), rigid-motion invariance, the descriptor."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from protalign.corpus.structures import parse_structure
from protalign.structure import foldseek3di as f3

pytest.importorskip("mini3di", reason="mini3di is not installed (requirements.lock pins it)")
REFERENCE = (
    Path(
        os.environ.get(
            "PROTALIGN_SHARED_REFERENCE", Path(__file__).resolve().parents[3] / "shared" / "reference"
        )
    )
    / "mini3di"
)
UPSTREAM = REFERENCE / "test_encoder_upstream.py"
SMALL_IDS = [
    "107L",
    "154L",
    "161L",
    "162L",
    "163L",
]  # real single-chain entries (tests/structure/conftest.py)
COMPLEX_ID = "11AS"  # a 2-chain complex


def _upstream_cases() -> list[tuple[str, str, str, str]]:
    """(file stem, chain, disordered_atom, expected 3Di string) of every TestEncoder assertion, read from the
    upstream test's source (statements in order: get_structure(name), encode_chain(structure[0][chain], ...),
    assertEqual(sequence, "..."))."""
    tree = ast.parse(UPSTREAM.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TestEncoder")
    cases = []
    for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_encode")):
        name = chain = None
        disordered = "best"  # encode_chain's default
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr == "get_structure":
                name = node.args[0].value
            elif node.func.attr == "encode_chain":
                chain = node.args[0].slice.value
                kw = {k.arg: k.value.value for k in node.keywords}
                disordered = kw.get("disordered_atom", "best")
            elif node.func.attr == "assertEqual" and isinstance(node.args[1], ast.Constant):
                cases.append((name, chain, disordered, node.args[1].value))
    return cases


def _bio_atoms(name: str, chain: str, disordered: str):
    """CA, CB, N, C of the chain's residues with a CA, read exactly as mini3di's encode_chain reads them."""
    bio = pytest.importorskip("Bio.PDB", reason="biopython (dev extra) parses the upstream test files")
    residues = [
        r
        for r in bio.PDBParser(QUIET=True).get_structure(name, REFERENCE / f"{name}.pdb")[0][chain]
        if "CA" in r
    ]
    out = {k: np.full((len(residues), 3), np.nan, dtype=np.float32) for k in ("CA", "CB", "N", "C")}
    for i, res in enumerate(residues):
        for atom in res.get_atoms():
            if atom.is_disordered() and disordered == "last":
                atom = list(atom.disordered_get_list())[-1]
            key = "CB" if atom.get_name() in ("CB", "CB A") else atom.get_name()
            if key in out:
                out[key][i] = atom.coord
    return out["CA"], out["CB"], out["N"], out["C"]


@pytest.fixture(scope="module")
def cases():
    if not UPSTREAM.is_file():
        pytest.skip(
            f"mini3di's upstream test and PDB files are not at {REFERENCE} (../shared/reference); "
            "set PROTALIGN_SHARED_REFERENCE"
        )
    found = _upstream_cases()
    assert len(found) >= 6, f"expected the 6 upstream 3Di assertions, parsed {len(found)}"
    return found


def test_upstream_3di_strings_from_the_same_atoms(cases):
    """Our encoder path (states_from_atoms -> sequence) reproduces every string the upstream test expects."""
    for name, chain, disordered, expected in cases:
        got = f3.sequence(f3.states_from_atoms(*_bio_atoms(name, chain, disordered)))
        assert got == expected, f"{name} chain {chain} ({disordered}): 3Di string differs"


def test_store_path_matches_upstream_where_altlocs_do_not_matter(cases):
    """The stored structure (prepare's parser) keeps the highest-occupancy altloc: it gives upstream's exact string
    where no altloc of N/CA/C/CB differs (3bww, 8crb), and mini3di's own 'best' reading everywhere (1xso)."""
    for name, chain, disordered, expected in cases:
        stored = parse_structure(REFERENCE / f"{name}.pdb", name.upper()).structure
        states = f3.structure_states(stored)
        got = f3.sequence(states[np.asarray(stored.chain) == chain])
        best = f3.sequence(f3.states_from_atoms(*_bio_atoms(name, chain, "best")))
        assert got == best, f"{name} chain {chain}: store path differs from the highest-occupancy atoms"
        if disordered == "best" or name != "1xso":
            assert got == expected, f"{name} chain {chain}"
        else:  # 1xso has altlocs on backbone / CB atoms: 'last' and 'best' differ in a few states
            assert 0 < sum(a != b for a, b in zip(got, expected, strict=True)) <= 5


def _rotated(structure, seed: int):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.linalg.det(q))  # a proper rotation
    shift = rng.normal(scale=50.0, size=3)
    move = lambda x: (np.asarray(x, dtype=np.float64) @ q.T + shift).astype(np.float32)  # noqa: E731
    return dataclasses.replace(structure, ca=move(structure.ca), xyz=move(structure.xyz))


def test_states_invariant_under_rotation_and_translation(real):
    total = same = 0
    for k, pid in enumerate([*SMALL_IDS, COMPLEX_ID]):
        st = real(pid)
        a, b = f3.structure_states(st), f3.structure_states(_rotated(st, k))
        assert (a != f3.NO_STATE).mean() > 0.9, pid
        total, same = total + len(a), same + int((a == b).sum())
    assert same / total >= 0.995, f"only {same}/{total} 3Di states unchanged by a rigid motion"


def test_descriptor_parts_widths_and_chains(make_structure):
    states = np.array([0, 1, 1, f3.NO_STATE, 2, 3])
    chain = np.array([0, 0, 0, 0, 1, 1])
    aa = np.array([5, 5, 20, 1, 7, 7])
    d = f3.descriptor(states, chain, aa, ("states", "bigrams", "aa_pairs"))
    assert d.shape == (820,)
    comp, bi, pairs = d[:20], d[20:420].reshape(20, 20), d[420:].reshape(20, 20)
    assert np.allclose([comp.sum(), bi.sum(), pairs.sum()], 1.0)
    assert np.allclose(comp[:4], [0.2, 0.4, 0.2, 0.2])
    # bigrams: (0,1), (1,1) in chain 0 and (2,3) in chain 1; none across the state gap or the chain boundary
    assert {tuple(x) for x in np.argwhere(bi > 0)} == {(0, 1), (1, 1), (2, 3)}
    assert pairs[1, 5] == pytest.approx(0.25)  # state 1 with type 5; the unknown type is not counted
    assert f3.descriptor(np.full(3, f3.NO_STATE), np.zeros(3, int), aa[:3], ("states",)).sum() == 0


def test_encoder_embeds_whole_proteins_and_blind_drops_types(real):

    st = real(COMPLEX_ID)
    enc = f3.Foldseek3DiEncoder({"parts": ["states", "bigrams", "aa_pairs"]})
    assert enc.dim == 820 and enc.config["method"].startswith("mini3di ")
    other = real(SMALL_IDS[0])
    batch = enc.collate([enc.featurize(st), enc.featurize(other)])
    emb = enc.embed(batch)
    assert emb.shape == (2, 820) and torch.allclose(emb[:, :20].sum(1), torch.ones(2))
    alone = enc.embed(enc.collate([enc.featurize(other)]))
    assert torch.equal(alone[0], emb[1])  # batching does not mix proteins
    blind = f3.Foldseek3DiEncoder({"parts": ["states", "bigrams", "aa_pairs"], "residue_types": False})
    assert blind.parts == ("states", "bigrams") and blind.dim == 420
    be = blind.embed(blind.collate([blind.featurize(blind.input_structure(other))]))
    # without side chains CB is placed virtually: the states stay close to the typed ones
    assert float((be[0, :20] - alone[0, :20]).abs().sum()) < 0.5
    with pytest.raises(ValueError, match="parts"):
        f3.Foldseek3DiEncoder({"parts": ["states", "nope"]})
