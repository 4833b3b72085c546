"""`evaluate` stage: test-split metrics of one pair's trained heads against the same heads untrained.

A pair's test set is the split's test proteins, scored with the pair's OWN two embedding sets (so evaluating one
pair needs only its two models). A test protein one of the two models could not embed is lost, and the loss is
loud: `metrics/<pair>.json` holds `n_test_split`, `n_test`, `n_test_lost` and `test_lost` (id -> reason, from each
embedding set's meta.json "skipped" list), and the stage prints them. Comparisons BETWEEN pairs (report, findings)
use the intersection of the pairs' evaluated ids and state its size.
The untrained baseline is `build_heads` with the training seed, i.e. exactly the weights training started from.
The shuffled-pairing control (one fit per pair) is `fit_heads` with the saved heads' config and training params on
the train and val pairs re-paired by `control_pairing(seed)` (text rows permuted within each part), scored on the
TRUE test pairs: what a model with no signal earns at this width and corpus. Per-protein reciprocal rank (both
directions averaged, ties against the model) gives `rr_mean`, `rr_control_mean` and their difference `rr_gain_control`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from protalign.align.heads import HeadConfig, StructureHead, TextHead, build_heads, load_heads
from protalign.align.metrics import (
    alignment_score,
    all_metrics,
    cosine_matrix,
    matched_cosine,
    reciprocal_ranks,
    retrieval_ranks,
)
from protalign.align.train import PairData, fit_heads, load_pair, load_split
from protalign.errors import InputError
from protalign.params import AlignParams, Params
from protalign.paths import Paths, pair_id
from protalign.storage import EmbeddingSet, write_json, write_text


def _skip_reasons(emb: EmbeddingSet) -> dict[str, str]:
    return {str(s["id"]): str(s.get("reason", "")) for s in emb.meta.get("skipped", []) if "id" in s}


def lost_with_reasons(
    ids: Sequence[str], text: EmbeddingSet, structure: EmbeddingSet, llm: str, gdm: str
) -> dict[str, str]:
    """id -> why the pair cannot score it, for each of `ids` one of the two embedding sets lacks."""
    sides = [
        (f"text/{llm}", text, _skip_reasons(text)),
        (f"structure/{gdm}", structure, _skip_reasons(structure)),
    ]
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


CONTROL_STREAM = 0xC0  # the control's permutation generator: numpy default_rng([head seed, CONTROL_STREAM])


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded permutation with no fixed point (one n-cycle through a random order): nobody keeps its partner."""
    order = rng.permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm


def control_pairing(n_train: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) row permutations of the TEXT side for the shuffled-pairing control of head seed `seed`.

    Train texts are re-paired among train proteins and val texts among val proteins (the parts keep their members
    and sizes), each a derangement drawn from numpy default_rng([seed, CONTROL_STREAM]): one fixed, documented
    pairing per head seed, independent of the fold's test proteins."""
    rng = np.random.default_rng([int(seed), CONTROL_STREAM])
    return _derangement(n_train, rng), _derangement(n_val, rng)


def _training_params(info: dict[str, Any]) -> AlignParams:
    """The align params the saved heads were trained with (stored beside the weights; `dim` lives in the config)."""
    fields = [f.name for f in dataclasses.fields(AlignParams)]
    missing = [f for f in fields if f != "dim" and f not in info]
    if missing:
        raise InputError(f"the heads file lacks training params {missing}; rerun the align stage")
    return AlignParams(**{f: info.get(f) for f in fields})


def control_similarity(
    data: PairData, config: HeadConfig, info: dict[str, Any], text, structure
) -> np.ndarray:
    """Similarities on the TRUE test pairs of heads fitted exactly like the saved ones on shuffled train/val pairs."""
    align = _training_params(info)
    (train_text, train_structure), (val_text, val_structure) = data.arrays("train"), data.arrays("val")
    p_train, p_val = control_pairing(len(train_text), len(val_text), int(align.seed))
    fit = fit_heads((train_text[p_train], train_structure), (val_text[p_val], val_structure), config, align)
    return _similarity(fit.text_head, fit.structure_head, text, structure)


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
    if params.analysis.control:
        control_sim = control_similarity(data, config, info, text, structure)
        rr, rr_control = reciprocal_ranks(sim), reciprocal_ranks(control_sim)
        metrics.update(
            {
                "control_alignment_score": alignment_score(control_sim),
                "alignment_gain_control": metrics["alignment_score"] - alignment_score(control_sim),
                "rr_mean": float(rr.mean()),
                "rr_control_mean": float(rr_control.mean()),
                "rr_gain_control": float(rr.mean() - rr_control.mean()),
            }
        )
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
        {"id": test_ids, "matched_cosine": matched_cosine(sim), "rank_s2t": rank_s2t, "rank_t2s": rank_t2s,
         "rr": reciprocal_ranks(sim)}
    )  # fmt: skip
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
