"""embed_text stage: summaries -> one pooled last-hidden-layer vector per protein (EmbeddingSet).

Texts are batched in order of token length, each batch bounded by a count (`batch_size`) and a token budget
(`batch_tokens`: rows x longest row), so batches carry little padding and long texts do not blow memory. Pooling
looks only at real tokens (attention mask) and position ids are derived from the mask, so a text's vector does not
depend on its batch mates or on the padding side. Pooling `auto` takes the registry entry's (last token for causal
LMs, mean for sentence encoders). Finished batches are kept as shards in the cache (keyed by model, dtype, pooling,
max_length, batching and the texts), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from protalign import compute
from protalign.compute.shards import ShardLedger, group
from protalign.errors import MissingArtifactError, check_losses
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, save_embeddings
from protalign.text.llms import POOLINGS, LoadedLLM, get_spec, load_llm

log = logging.getLogger(__name__)

__all__ = ["POOLINGS", "embed_texts", "forward", "plan_batches", "pool", "run", "tokenize"]


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last real (mask == 1) token; correct for left and right padding."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values
    if (last < 0).any():
        raise ValueError("a sequence in the batch has no real token (all padding)")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' hidden states (padding excluded, even if its states are not finite)."""
    keep = mask.bool().unsqueeze(-1)
    counts = keep.sum(dim=1)
    if (counts == 0).any():
        raise ValueError("a sequence in the batch has no real token (all padding)")
    total = torch.where(keep, hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).sum(dim=1)
    return total / counts.to(hidden.dtype)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "last_token":
        return last_token_pool(hidden, mask)
    if pooling == "mean":
        return mean_pool(hidden, mask)
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """0,1,2,... over real tokens only, so left padding does not shift positions (rotary models are shift-
    invariant anyway; absolute-position models are not)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


def forward(llm: LoadedLLM, batch: Sequence[Sequence[int]], pooling: str) -> np.ndarray:
    """Pad pre-tokenised ids (tokenizer's padding side), run the model, pool the last hidden layer."""
    enc = llm.tokenizer.pad({"input_ids": [list(ids) for ids in batch]}, return_tensors="pt")
    device = llm.device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    with torch.inference_mode():
        out = llm.model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False)
        pooled = pool(out.last_hidden_state, mask, pooling)
    return pooled.float().cpu().numpy()


def tokenize(llm: LoadedLLM, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids per text (truncated to max_length, and to the position table of absolute-position encoders)
    and how many texts were truncated."""
    if llm.max_positions is not None:
        max_length = min(max_length, llm.max_positions)
    full = llm.tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    cut = llm.tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length)[
        "input_ids"
    ]
    return [list(c) for c in cut], sum(len(f) > max_length for f in full)


def plan_batches(
    ids: Sequence[str], lengths: Sequence[int], batch_size: int, batch_tokens: int | None = None
) -> list[list[int]]:
    """Row indices grouped into batches of similar length (ties broken by id, so the plan is deterministic): at
    most `batch_size` rows and at most `batch_tokens` padded tokens (a longer single text gets its own batch)."""
    if batch_size < 1:
        raise ValueError(f"embed_text.batch_size must be >= 1, got {batch_size}")
    if batch_tokens is not None and batch_tokens < 1:
        raise ValueError(f"embed_text.batch_tokens must be >= 1, got {batch_tokens}")
    order = sorted(range(len(ids)), key=lambda i: (lengths[i], ids[i]))
    plan: list[list[int]] = []
    for i in order:  # ascending length: the newest row is the batch's longest
        batch = plan[-1] if plan else None
        if (
            batch is None
            or len(batch) >= batch_size
            or (batch_tokens is not None and (len(batch) + 1) * lengths[i] > batch_tokens)
        ):
            plan.append([i])
        else:
            batch.append(i)
    return plan


def cache_key(
    llm: LoadedLLM,
    pooling: str,
    max_length: int,
    batch_size: int,
    ids: Sequence[str],
    texts: Sequence[str],
    batch_tokens: int | None = None,
) -> str:
    h = hashlib.sha256()
    config = [llm.fingerprint, llm.dtype, pooling, max_length, batch_size, batch_tokens]
    h.update(json.dumps(config, sort_keys=True).encode())
    for i, t in zip(ids, texts, strict=True):
        h.update(f"{i}\t{t}\n".encode())
    return h.hexdigest()[:16]


def _save_shard(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)


def _load_shard(path: Path, rows: int, width: int) -> np.ndarray | None:
    """A finished shard, or None where it is absent or unusable (then the batch is recomputed)."""
    if not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if array.shape != (rows, width) or not np.isfinite(array).all():
        return None
    return array


def embed_texts(
    llm: LoadedLLM,
    ids: Sequence[str],
    texts: Sequence[str],
    pooling: str = "last_token",
    max_length: int = 256,
    batch_size: int = 16,
    shard_dir: Path | None = None,
    on_batch: Callable[[int, bool], None] | None = None,
    batch_tokens: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Vectors (N x width, float32, rows in `ids` order) + stats; `on_batch(b, reused)` runs after each batch."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    tokens, n_truncated = tokenize(llm, texts, max_length)
    plan = plan_batches(ids, [len(t) for t in tokens], batch_size, batch_tokens)
    width = llm.width
    vectors = np.zeros((len(ids), width), dtype=np.float32)
    if shard_dir is not None:
        shard_dir.mkdir(parents=True, exist_ok=True)
    reused = 0
    for b, rows in enumerate(tqdm(plan, desc=f"embed {llm.spec.name}", unit="batch", disable=None)):
        shard = shard_dir / f"batch-{b:05d}.npy" if shard_dir is not None else None
        array = _load_shard(shard, len(rows), width) if shard is not None else None
        was_reused = array is not None
        if array is None:
            array = forward(llm, [tokens[i] for i in rows], pooling)
            bad = [ids[rows[k]] for k in np.where(~np.isfinite(array).all(axis=1))[0]]
            if bad:
                raise FloatingPointError(
                    f"{llm.spec.name}: non-finite embedding for {len(bad)} text(s): {bad[:10]}"
                )
            if shard is not None:
                _save_shard(shard, array)
        reused += was_reused
        vectors[rows] = array
        if on_batch is not None:
            on_batch(b, was_reused)
    padded = sum(len(rows) * max(len(tokens[i]) for i in rows) for rows in plan)
    stats = {
        "n_truncated": int(n_truncated),
        "n_batches": len(plan),
        "n_batches_reused": reused,
        "tokens": int(sum(len(t) for t in tokens)),
        "padded_tokens": int(padded),
    }
    return vectors, stats


def _load_for_actor(spec, cache, device, dtype, quantize_4bit) -> LoadedLLM:
    """Ray actor setup: the model once per actor (gpus > 1 per actor: hub models spread with device_map auto)."""
    return load_llm(spec, cache=cache, device=device, dtype=dtype, quantize_4bit=quantize_4bit)


def _forward_shard(llm: LoadedLLM, payload: tuple[list[list[list[int]]], str]) -> list[np.ndarray]:
    batches, pooling = payload
    return [forward(llm, batch, pooling) for batch in batches]


def embed_texts_sharded(
    engine: compute.Engine, llm: LoadedLLM, load_args: tuple, ids: Sequence[str], texts: Sequence[str],
    pooling: str, max_length: int, batch_size: int, batch_tokens: int | None, shard_size: int, ledger: ShardLedger,
) -> tuple[np.ndarray, dict[str, Any]]:
    """`embed_texts` on an engine: the driver tokenizes and plans the batches exactly as one process would, shards
    are runs of whole batches (~shard_size texts), workers (one model per actor) forward them: same floats."""
    tokens, n_truncated = tokenize(llm, texts, max_length)
    plan = plan_batches(ids, [len(t) for t in tokens], batch_size, batch_tokens)
    groups = list(group(plan, len, shard_size))
    shards = (
        (f"shard-{k:06d}", [ids[i] for rows in g for i in rows], ([[tokens[i] for i in rows] for rows in g], pooling))
        for k, g in enumerate(groups)
    )  # fmt: skip
    vectors = np.zeros((len(ids), llm.width), dtype=np.float32)
    done = ledger.done()
    reused = sum(len(g) for k, g in enumerate(groups) if f"shard-{k:06d}" in done)  # batches, as embed_texts
    results = engine.map_shards(_forward_shard, shards, setup=_load_for_actor, setup_args=load_args, ledger=ledger)
    for g, arrays in zip(groups, results, strict=True):
        for rows, array in zip(g, arrays, strict=True):
            bad = [ids[rows[k]] for k in np.where(~np.isfinite(array).all(axis=1))[0]]
            if bad:
                raise FloatingPointError(f"{llm.spec.name}: non-finite embedding for {len(bad)} text(s): {bad[:10]}")
            vectors[rows] = array
    padded = sum(len(rows) * max(len(tokens[i]) for i in rows) for rows in plan)
    stats = {
        "n_truncated": int(n_truncated), "n_batches": len(plan), "n_batches_reused": reused,
        "tokens": int(sum(len(t) for t in tokens)), "padded_tokens": int(padded),
    }  # fmt: skip
    return vectors, stats


def read_summaries(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise MissingArtifactError(f"no summaries at {path} (has the summarize stage run?)")
    frame = pd.read_parquet(path)
    missing = {"id", "text"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks column(s) {sorted(missing)}")
    if frame["id"].duplicated().any():
        raise ValueError(
            f"{path} has duplicate ids, e.g. {frame.loc[frame['id'].duplicated(), 'id'].iloc[0]}"
        )
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def resolve_pooling(requested: str, default: str) -> str:
    """`auto` -> the registry entry's pooling; anything else must be a known pooling."""
    pooling = default if requested == "auto" else requested
    if pooling not in POOLINGS:
        raise ValueError(f"embed_text.pooling: unknown {requested!r}; choose auto or one of {POOLINGS}")
    return pooling


def run(
    params: Params,
    paths: Paths,
    llm: str,
    loaded: LoadedLLM | None = None,
    on_batch: Callable[[int, bool], None] | None = None,
) -> EmbeddingSet:
    """Embed every summary with `llm`; `loaded` reuses a model already in memory (tests, benchmarks)."""
    p = params.embed_text
    spec = get_spec(llm)
    pooling = resolve_pooling(p.pooling, spec.pooling)
    if p.max_length < 1:
        raise ValueError(f"embed_text.max_length must be >= 1, got {p.max_length}")
    torch.set_num_threads(p.threads)
    frame = read_summaries(paths.summaries)
    text = frame["text"].fillna("").astype(str)
    empty = text.str.strip() == ""
    skipped = [{"id": i, "reason": "empty summary text"} for i in frame.loc[empty, "id"]]
    limit = params.prepare.max_skipped_fraction
    check_losses(f"embed_text@{llm}", [s["reason"] for s in skipped], len(frame), limit)
    frame, text = frame.loc[~empty], text.loc[~empty]
    if frame.empty:
        raise ValueError(f"no non-empty summaries in {paths.summaries}")
    ids, texts = frame["id"].astype(str).tolist(), text.tolist()

    if loaded is None:
        loaded = load_llm(
            spec, cache=paths.cache, device=p.device, dtype=p.dtype, quantize_4bit=p.quantize_4bit
        )
    elif loaded.spec != spec:
        raise ValueError(f"loaded model is {loaded.spec.name!r}, but the stage was asked for {llm!r}")
    key = cache_key(loaded, pooling, p.max_length, p.batch_size, ids, texts, p.batch_tokens)
    shard_dir = paths.cache / "embed_text" / f"{llm}-{key}"
    engine = compute.engine_for(params)
    if engine.name == "local":
        vectors, stats = embed_texts(
            loaded, ids, texts, pooling, p.max_length, p.batch_size, shard_dir, on_batch, p.batch_tokens
        )
    else:
        ledger = ShardLedger(shard_dir / f"shards-{params.compute.shard_size}")
        load_args = (spec, str(paths.cache), p.device, p.dtype, p.quantize_4bit)
        vectors, stats = embed_texts_sharded(
            engine, loaded, load_args, ids, texts, pooling, p.max_length, p.batch_size, p.batch_tokens,
            params.compute.shard_size, ledger,
        )  # fmt: skip
    if stats["n_batches_reused"]:
        log.info(
            "%s: reused %d of %d batches from %s",
            llm,
            stats["n_batches_reused"],
            stats["n_batches"],
            shard_dir,
        )
    meta = {
        "model": spec.name,
        "kind": spec.kind,
        "source": spec.source,
        "file": spec.file,
        "weights": {k: v for k, v in loaded.fingerprint.items() if k in ("package_version", "transformers")},
        "pooling": pooling,
        "dtype": loaded.dtype,
        "max_length": p.max_length,
        "batch_size": p.batch_size,
        "batch_tokens": p.batch_tokens,
        "layer": "last",
        "dim": loaded.width,
        "n_truncated": stats["n_truncated"],
        "skipped": skipped,
    }
    if "writer" in frame.columns:
        meta["writers"] = sorted(frame["writer"].astype(str).unique().tolist())
    emb = EmbeddingSet(ids=ids, vectors=vectors, meta=meta)
    save_embeddings(paths.text_embeddings(llm), emb)
    compute.ShardLedger.keep_record(shard_dir)  # the ledger lines stay (audit), the shard results go
    shutil.rmtree(shard_dir, ignore_errors=True)  # resume state is spent once the artifact exists
    return emb
