"""`foldseek3di`: Foldseek's 3Di structural alphabet (van Kempen et al. 2024) as a fixed-width descriptor.

No training and no torch weights of ours: the per-residue 3Di states come from `mini3di` (Martin Larralde's NumPy
port of Foldseek's encoder, with Foldseek's released encoder weights; see THIRD_PARTY_NOTICES.md for its
licences). Each chain is encoded on its own, as Foldseek encodes chains: inputs are the N, CA, C and CB of each
stored residue (the store keeps the highest-occupancy altloc; a missing CB, e.g. glycine or the sequence-blind
ablation, is placed virtually by mini3di from the backbone, as Foldseek does). A residue lacking N, CA or C, or
whose neighbours are missing, gets no state (mini3di's mask) and is left out of every count.

Embedding (docs/MODELS.md "foldseek3di"), concatenated parts chosen by `structure.foldseek3di.parts`, each
L1-normalised to sum to 1 (all zeros where it counts nothing):
- `states` (20): 3Di composition over the residues with a state;
- `bigrams` (400): frequencies of (state i, state i+1) over consecutive residues of one chain that both have one;
- `aa_pairs` (400): joint (3Di state, amino-acid type) frequencies over residues with a state and a standard
  type. The sequence-blind ablation (`residue_types: false`) shows no types, so this part is dropped there.

`forward` gives the per-residue one-hot 3Di states (what the descriptor counts); `embed` gives the descriptor.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from protalign.structure.graph import backbone_atoms, chain_index
from protalign.structure.registry import Batch, Sample, StructureEncoder

N_STATES = 20
N_AA = 20
PARTS = {"states": N_STATES, "bigrams": N_STATES * N_STATES, "aa_pairs": N_STATES * N_AA}
NO_STATE = -1


@functools.cache
def _encoder():
    """mini3di's encoder (loads Foldseek's weights once per process)."""
    from mini3di import Encoder

    return Encoder()


def method_version() -> str:
    from importlib.metadata import version

    return f"mini3di {version('mini3di')}"


def states_from_atoms(ca: np.ndarray, cb: np.ndarray, n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """3Di state (0..19) per residue of ONE chain, NO_STATE where mini3di masks it; inputs R×3 with NaN gaps."""
    if len(ca) == 0:
        return np.zeros(0, dtype=np.int64)
    out = _encoder().encode_atoms(*(np.asarray(x, dtype=np.float32) for x in (ca, cb, n, c)))
    return np.where(np.ma.getmaskarray(out), NO_STATE, np.ma.getdata(out).astype(np.int64))


def structure_states(structure) -> np.ndarray:
    """3Di states of every stored residue, each chain encoded on its own (store order)."""
    bb = backbone_atoms(structure, ("N", "CA", "C", "CB"))
    chain = chain_index(structure.chain) if len(bb) else np.zeros(0, dtype=np.int64)
    states = np.full(len(bb), NO_STATE, dtype=np.int64)
    for k in np.unique(chain):
        idx = np.nonzero(chain == k)[0]
        n, ca, c, cb = (bb[idx, j] for j in range(4))
        states[idx] = states_from_atoms(ca, cb, n, c)
    return states


def sequence(states: np.ndarray) -> str:
    """The 3Di string of a chain as Foldseek (and mini3di's build_sequence) write it: a residue without a state
    is written as the letter of Foldseek's invalid state ('D'), so only the counts tell them apart."""
    from mini3di import Encoder
    from mini3di.encoder import ALPHABET

    filled = np.where(states == NO_STATE, Encoder._INVALID_STATE, states)
    return "".join(str(ALPHABET[s]) for s in filled)


def _l1(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else counts


def descriptor(states: np.ndarray, chain: np.ndarray, aa: np.ndarray, parts: tuple[str, ...]) -> np.ndarray:
    """The fixed-width embedding of one protein from its per-residue states (module docstring)."""
    ok = states != NO_STATE
    out = []
    for part in parts:
        if part == "states":
            counts = np.bincount(states[ok], minlength=N_STATES)
        elif part == "bigrams":
            pair = ok[:-1] & ok[1:] & (chain[:-1] == chain[1:])
            codes = states[:-1][pair] * N_STATES + states[1:][pair]
            counts = np.bincount(codes, minlength=N_STATES * N_STATES)
        elif part == "aa_pairs":
            typed = ok & (aa < N_AA)
            counts = np.bincount(states[typed] * N_AA + aa[typed], minlength=N_STATES * N_AA)
        else:
            raise ValueError(f"unknown foldseek3di part {part!r}; expected some of {list(PARTS)}")
        out.append(_l1(counts.astype(np.float64)))
    return np.concatenate(out).astype(np.float32)


class Foldseek3DiEncoder(StructureEncoder):
    """Registry wrapper around mini3di: featurize computes the states (CPU), embed counts them."""

    name = "foldseek3di"
    node_keys = ("aa", "state", "chain")
    trainable = False
    reference = False

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        parts = tuple(self.config.get("parts", tuple(PARTS)))
        if not self.config.get("residue_types", True):
            parts = tuple(p for p in parts if p != "aa_pairs")  # the ablation shows no types to pair with
        if not parts or any(p not in PARTS for p in parts) or len(set(parts)) != len(parts):
            raise ValueError(
                f"structure.foldseek3di.parts: {list(parts)}; expected distinct items of {list(PARTS)}"
            )
        self.parts = parts
        self.config["method"] = method_version()

    @classmethod
    def config_from_params(cls, params) -> dict[str, Any]:
        return {"parts": list(params.foldseek3di.parts), "pooling": params.pooling}

    @property
    def node_dim(self) -> int:
        return N_STATES

    @property
    def dim(self) -> int:
        return sum(PARTS[p] for p in self.parts)

    def estimate_bytes(self, sample: Sample) -> float:
        return 8.0 * sample["num_nodes"] * self.dim

    def featurize(self, structure) -> Sample:
        states = structure_states(structure)
        if not (states != NO_STATE).any():
            raise ValueError("no residue with a 3Di state (N, CA, C missing or chains too short)")
        return {
            "id": structure.id,
            "num_nodes": len(states),
            "edge_index": torch.zeros(2, 0, dtype=torch.long),
            "aa": torch.as_tensor(np.asarray(structure.aa), dtype=torch.long),
            "state": torch.from_numpy(states),
            "chain": torch.from_numpy(chain_index(structure.chain)),
        }

    def forward(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        state = batch["state"]
        onehot = torch.zeros(len(state), N_STATES, dtype=torch.float32, device=state.device)
        ok = state != NO_STATE
        onehot[ok, state[ok]] = 1.0
        return onehot

    def embed(self, batch: Batch) -> torch.Tensor:
        ptr = batch["ptr"].tolist()
        rows = []
        for i in range(batch["num_graphs"]):
            sl = slice(ptr[i], ptr[i + 1])
            st, ch, aa = (batch[k][sl].cpu().numpy() for k in ("state", "chain", "aa"))
            rows.append(descriptor(st, ch, aa, self.parts))
        return torch.from_numpy(np.stack(rows)).to(batch["state"].device)
