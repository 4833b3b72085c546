"""`evaluate` stage: test-split metrics of one pair's trained heads against the same heads untrained.

A pair's test set is the split's test proteins, scored with the pair's OWN two embedding sets (so evaluating one
pair needs only its two models). A test protein one of the two models could not embed is lost, and the loss is
loud: `metrics/<pair>.json` holds `n_test_split`, `n_test`, `n_test_lost` and `test_lost` (id -> reason, from each
embedding set's meta.json "skipped" list), and the stage prints them. Comparisons BETWEEN pairs (report, findings)
use the intersection of the pairs' evaluated ids and state its size.
The untrained baseline is `build_heads` with the training seed, i.e. exactly the weights training started from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from protalign.align.heads import StructureHead, TextHead, build_heads, load_heads
from protalign.align.metrics import all_metrics, cosine_matrix, matched_cosine, retrieval_ranks
from protalign.align.train import load_pair, load_split
from protalign.errors import InputError
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import EmbeddingSet, write_json, write_text


def _skip_reasons(emb: EmbeddingSet) -> dict[str, str]:
    return {str(s["id"]): str(s.get("reason", "")) for s in emb.meta.get("skipped", []) if "id" in s}


def lost_with_reasons(
    ids: Sequence[str], text: EmbeddingSet, structure: EmbeddingSet, llm: str, gdm: str
) -> dict[str, str]:
    """id -> why the pair cannot score it, for each of `ids` one of the two embedding sets lacks."""
    sides = [(f"text/{llm}", text, _skip_reasons(text)), (f"structure/{gdm}", structure, _skip_reasons(structure))]
    present = [(name, set(emb.ids), reasons) for name, emb, reasons in sides]
    lost = {}
    for i in ids:
        why = [
            f"{name}: {reasons.get(i) or 'absent (not listed as skipped)'}"
            for name, have, reasons in present
            if i not in have
        ]
        if why:
            lost[i] = "; ".join(why)
    return lost


def loss_line(n_split: int, lost: dict[str, str], what: str = "test") -> str:
    """'lost 2 of 70 test proteins: ID (reason), ...' (at most five named) for the stage output."""
    if not lost:
        return f"lost 0 of {n_split} {what} proteins"
    named = ", ".join(f"{i} ({r})" for i, r in sorted(lost.items())[:5])
    return f"lost {len(lost)} of {n_split} {what} proteins: {named}{' ...' if len(lost) > 5 else ''}"


@torch.no_grad()
def _similarity(text_head: TextHead, structure_head: StructureHead, text: np.ndarray, structure: np.ndarray):
    t = text_head(torch.as_tensor(text, dtype=torch.float32))
    s = structure_head(torch.as_tensor(structure, dtype=torch.float32))
    return cosine_matrix(s.numpy(), t.numpy())


def chance_levels(n: int, ks: tuple[int, ...]) -> dict[str, float]:
    """Expected recall@k and MRR of a random ranking of n candidates (a reference line for readers)."""
    out = {f"chance_recall@{k}": min(k, n) / n for k in ks}
    out["chance_mrr"] = float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    return out


def evaluate_pair(params: Params, paths: Paths, llm: str, gdm: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics dict + per-protein table (id, matched_cosine, rank_s2t, rank_t2s) on the pair's test ids."""
    text_head, structure_head, config, info = load_heads(paths.heads(llm, gdm))
    data = load_pair(paths, llm, gdm)
    if (
        data.text.vectors.shape[1] != config.text_dim
        or data.structure.vectors.shape[1] != config.structure_dim
    ):
        raise InputError(
            f"embedding widths ({data.text.vectors.shape[1]}, {data.structure.vectors.shape[1]}) do not match the "
            f"trained heads ({config.text_dim}, {config.structure_dim}); rerun the align stage"
        )
    split_test = load_split(paths)["test"]
    lost = lost_with_reasons(split_test, data.text, data.structure, llm, gdm)
    test_ids = [i for i in split_test if i not in lost]
    if len(test_ids) < 2:
        raise InputError(f"{pair_id(llm, gdm)}: only {len(test_ids)} test protein(s) embedded by both models "
                         f"({loss_line(len(split_test), lost)}); need >= 2")  # fmt: skip
    text, structure = data.text.subset(test_ids), data.structure.subset(test_ids)
    ks = tuple(params.evaluate.ks)

    sim = _similarity(text_head, structure_head, text, structure)
    base_text, base_structure = build_heads(config, int(info["seed"]))
    base_sim = _similarity(base_text, base_structure, text, structure)

    metrics: dict[str, Any] = {"llm": llm, "gdm": gdm, "ties": "pessimistic"}
    metrics.update(all_metrics(sim, ks))
    metrics.update(all_metrics(base_sim, ks, prefix="baseline_"))
    metrics.update(chance_levels(len(test_ids), ks))
    metrics.update(
        {
            "n_test": len(test_ids),
            "n_test_split": len(split_test),
            "n_test_lost": len(lost),
            "test_lost": lost,
            "n_train": int(info["n_train"]),
            "n_val": int(info["n_val"]),
            "n_missing": data.n_missing,
            "best_epoch": int(info["best_epoch"]),
            "loss": info["loss"],
            "temperature": float(info["temperature"]),
        }
    )
    rank_s2t, rank_t2s = retrieval_ranks(sim)
    per_protein = pd.DataFrame(
        {"id": test_ids, "matched_cosine": matched_cosine(sim), "rank_s2t": rank_s2t, "rank_t2s": rank_t2s}
    )
    return metrics, per_protein


def run(params: Params, paths: Paths, llm: str, gdm: str) -> dict[str, Any]:
    """The DVC stage: write metrics/<pair>.json and reports/per_protein/<pair>.csv."""
    metrics, per_protein = evaluate_pair(params, paths, llm, gdm)
    write_json(paths.metrics(llm, gdm), metrics)
    write_text(
        paths.per_protein(llm, gdm), per_protein.to_csv(index=False, float_format="%.8f", lineterminator="\n")
    )
    print(
        f"evaluate {pair_id(llm, gdm)}: alignment score {metrics['alignment_score']:.4f} on {metrics['n_test']} "
        f"test proteins; {loss_line(metrics['n_test_split'], metrics['test_lost'])}"
    )
    return metrics
