"""`train_structure@<gdm>`: self-supervised (+ optional EC) pretraining of a GDM, or random / external weights.

`structure.<gdm>.weights` (each GDM's own; a variant's in its own section): `trained` trains here (an encoder class with `released = True`, e.g. ProteinMPNN, imports its published
weights instead: no training); `random` saves
the seeded initial weights untrained (a baseline); any other value is a path (`{gdm}` is replaced by the GDM
name): a file in the authors' released format that the encoder imports (`from_released`, e.g. ScanNet's .h5),
our own checkpoint format, or a bare state dict of the encoder that `params` build. A GDM the registry marks
`trainable = False` (a fixed descriptor: foldseek3di, composition) has no weights: its checkpoint records the
method and version, so the DAG keeps its shape. Training uses only the split's `train` proteins; `val` picks the best epoch
(never `test`). Each step takes a random contiguous crop of at most `max_residues` residues per protein (the
study cropped to 350) and optimises the sum of the `tasks` losses (tasks.py: masked residue type, Cα distance,
Cα angle bins, EC class). Deterministic given `structure.train.seed`: one seed for the weights and dropout, seeded
generators for order, crops, masks and sampled pairs; validation draws the same ones every epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from protalign.devices import resolve_device
from protalign.errors import MissingArtifactError
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import read_json, save_torch
from protalign.structure import registry, tasks
from protalign.structure.registry import Sample, StructureEncoder
from protalign.tracking import mlflow_run

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1
QUALITY = {"residue_type": "acc", "distance": "mae", "angle": "acc", "ec": "acc"}


@dataclasses.dataclass
class Item:
    """One training protein: the encoder's sample + what the tasks need (store-order types, Cα, EC class)."""

    sample: Sample
    aa: torch.Tensor
    pos: torch.Tensor
    ec: int = -1


def open_store(paths: Paths):
    """The packed structures written by `prepare`, as train_structure and embed_structure read them."""
    from protalign.corpus.store import StructureStore

    return StructureStore(paths.structures)


def featurize_many(
    encoder: StructureEncoder, store, ids: list[str], desc: str, ec: dict[str, int] | None = None
) -> tuple[list[Item], list[dict]]:
    """Featurize `ids`; a protein that fails is returned in the skip list with its reason, never dropped silently."""
    items, skipped = [], []
    for pid in tqdm(ids, desc=desc, disable=None, leave=False):
        try:
            st = encoder.input_structure(store.get(pid))  # sequence-blind when residue_types is false
            sample = encoder.featurize(st)
            if sample["num_nodes"] != len(st.aa):
                raise ValueError(f"encoder kept {sample['num_nodes']} of {len(st.aa)} residues")
            pos = torch.as_tensor(st.ca, dtype=torch.float32)
            items.append(Item(sample, torch.as_tensor(st.aa, dtype=torch.long), pos, (ec or {}).get(pid, -1)))
        except (ValueError, RuntimeError, IndexError, KeyError) as exc:
            skipped.append({"id": pid, "reason": f"{type(exc).__name__}: {exc}"})
    return items, skipped


def _crop(encoder: StructureEncoder, item: Item, max_residues: int, gen: torch.Generator) -> Item:
    n = item.sample["num_nodes"]
    if n <= max_residues:
        return item
    start = int(torch.randint(0, n - max_residues + 1, (1,), generator=gen))
    sl = slice(start, start + max_residues)
    return Item(encoder.crop(item.sample, start, start + max_residues), item.aa[sl], item.pos[sl], item.ec)


def step_losses(
    encoder, heads, items: list[Item], cfg, gen, device
) -> tuple[torch.Tensor | None, dict, dict]:
    """Crop, collate, one forward: (total loss or None when no task had targets, per-task losses, stats)."""
    crops = [_crop(encoder, it, cfg.max_residues, gen) for it in items]
    batch = registry.to_device(encoder.collate([c.sample for c in crops]), device)
    aa = torch.cat([c.aa for c in crops]).to(device)
    pos = torch.cat([c.pos for c in crops]).to(device)
    ec = torch.tensor([c.ec for c in crops], dtype=torch.long, device=device)
    losses, stats = tasks.task_losses(encoder, heads, batch, aa, pos, ec, cfg, gen)
    total = sum(losses.values()) if losses else None
    return total, losses, stats


def _batches(n: int, size: int, gen: torch.Generator | None) -> list[list[int]]:
    order = torch.randperm(n, generator=gen).tolist() if gen is not None else list(range(n))
    return [order[i : i + size] for i in range(0, n, size)]


class _Meter:
    """Epoch averages: total loss per batch, each task's loss and quality measure."""

    def __init__(self) -> None:
        self.loss, self.batches = 0.0, 0
        self.task: dict[str, list[float]] = {}

    def add(self, total, losses, stats) -> None:
        if total is None:
            return
        self.loss, self.batches = self.loss + float(total), self.batches + 1
        for t, v in losses.items():
            acc = self.task.setdefault(t, [0.0, 0, 0.0, 0])
            acc[0], acc[1] = acc[0] + float(v), acc[1] + 1
            acc[2], acc[3] = acc[2] + stats[t][0], acc[3] + stats[t][1]

    def row(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}_loss": self.loss / self.batches if self.batches else float("nan")}
        for t, (loss, nb, q, nq) in sorted(self.task.items()):
            out[f"{prefix}_{t}_loss"] = loss / nb
            out[f"{prefix}_{t}_{QUALITY[t]}"] = q / max(nq, 1)
        return out


def evaluate(encoder, heads, items: list[Item], cfg, seed: int, device="cpu") -> dict[str, float]:
    """Validation metrics with fixed crops, masks and sampled pairs (same `seed` → same draws every epoch)."""
    encoder.eval()
    heads.eval()
    gen = torch.Generator().manual_seed(seed)
    meter = _Meter()
    with torch.inference_mode():
        for idx in _batches(len(items), cfg.batch_size, None):
            meter.add(*step_losses(encoder, heads, [items[i] for i in idx], cfg, gen, device))
    return meter.row("val")


def pretrain(
    encoder: StructureEncoder,
    train: list[Item],
    val: list[Item],
    cfg,
    tracker=None,
    n_ec: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Train `encoder` in place; it ends holding the best epoch's weights. Returns the training summary."""
    if not train:
        raise ValueError("no trainable proteins in the train split")
    heads = tasks.PretrainHeads(encoder.node_dim, cfg.tasks, n_ec)
    encoder.to(device)
    heads.to(device)
    opt = torch.optim.Adam([*encoder.parameters(), *heads.parameters()], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    selection = "val_loss" if val else "train_loss"  # no val proteins: fall back, and say so in the summary
    best: dict[str, Any] = {"score": float("inf")}
    history = []
    bar = tqdm(range(1, cfg.epochs + 1), desc="train_structure", disable=None)
    for epoch in bar:
        encoder.train()
        heads.train()
        t0, meter = time.perf_counter(), _Meter()
        for idx in _batches(len(train), cfg.batch_size, gen):
            total, losses, stats = step_losses(encoder, heads, [train[i] for i in idx], cfg, gen, device)
            if total is None:
                continue
            opt.zero_grad()
            total.backward()
            opt.step()
            meter.add(total.detach(), {k: v.detach() for k, v in losses.items()}, stats)
        row = {"epoch": epoch, **meter.row("train")}
        if val:
            row.update(evaluate(encoder, heads, val, cfg, seed=cfg.seed + 1, device=device))
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if tracker is not None:
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k in ("train_loss", "val_loss")})
        score = row[selection]
        if score < best["score"]:  # strict: ties keep the earlier epoch; NaN never wins
            best = {
                "score": score,
                "epoch": epoch,
                "encoder": {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
                "head": {k: v.detach().cpu().clone() for k, v in heads.state_dict().items()},
            }
    if "encoder" not in best:
        raise RuntimeError(f"training produced no finite {selection}; history: {history}")
    encoder.cpu().load_state_dict(best["encoder"])
    return {
        "weights": "trained",
        "tasks": list(cfg.tasks),
        "best_epoch": best["epoch"],
        "selection": selection,
        "best_score": best["score"],
        "history": history,
        "n_train": len(train),
        "n_val": len(val),
        "n_ec_classes": n_ec,
        "head_state_dict": best["head"],
    }


def _flat(prefix: str, obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else k, v))
        return out
    return {prefix: list(obj) if isinstance(obj, tuple) else obj}


def save_checkpoint(path, encoder: StructureEncoder, gdm: str, summary: dict[str, Any]) -> None:
    """Atomic torch file: weights + config to rebuild + training summary (and the pretraining head).

    Wall-clock seconds stay out (they go to MLflow and the log): in the file they made every run's bytes, and so
    its DVC hash, differ even where every weight was identical.
    """
    summary = _without_timings(summary)
    head = summary.pop("head_state_dict", None)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "gdm": gdm,
        "encoder": encoder.name,
        "config": encoder.config,
        "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        "head_state_dict": head,
        "summary": summary,
    }
    save_torch(path, payload)


def _without_timings(summary: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in summary.items() if k != "seconds"}
    if isinstance(out.get("history"), list):
        out["history"] = [
            {k: v for k, v in row.items() if k != "seconds"} if isinstance(row, dict) else row
            for row in out["history"]
        ]
    return out


def load_checkpoint(path) -> tuple[StructureEncoder, dict[str, Any]]:
    """Rebuild the trained encoder (eval mode) from `models/structure/<gdm>.pt`; returns (encoder, payload)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {payload.get('format')!r}")
    encoder = registry.from_config(payload["encoder"], payload["config"])
    encoder.load_state_dict(payload["state_dict"])
    return encoder.eval(), payload


def set_threads(params) -> None:
    """Torch CPU threads for structure stages (embed_structure instead runs `threads` single-thread workers).

    Training at the default crop gains from 2 threads only on otherwise idle cores (measured 1.3-1.9x); on a busy
    machine 2 threads are several times slower than 1 (each op waits for the descheduled thread).
    """
    threads = int(params.structure.threads)
    if threads > 0:
        torch.set_num_threads(threads)


def load_external(path: str | Path, gdm: str, params) -> tuple[StructureEncoder, dict[str, Any]]:
    """Encoder from a checkpoint file: our format (must be for `gdm`), or a bare state dict for `params`' model."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"structure.{gdm}.weights: checkpoint {path} not found")
    sp = params.structure
    cls = registry.encoder_class(registry.base_name(gdm, sp))
    config = {**cls.config_from_params(sp.for_gdm(gdm)), "residue_types": bool(sp.residue_types)}
    released = cls.from_released(path, config)
    if released is not None:  # the authors' format, imported as published (no training here)
        return released.eval(), {"weights": str(path), "released": True, "best_epoch": None, "history": []}
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "format" in payload:
        if payload.get("gdm") != gdm and payload.get("encoder") != cls.name:
            raise ValueError(f"{path} holds a {payload.get('gdm')!r} model, not {gdm!r}")
        encoder, payload = load_checkpoint(path)
        return encoder, {**payload.get("summary", {}), "weights": str(path)}
    if not isinstance(payload, dict):
        raise ValueError(
            f"{path}: expected a state dict or a protalign checkpoint, got {type(payload).__name__}"
        )
    encoder = registry.build(gdm, params.structure)
    encoder.load_state_dict(payload.get("state_dict", payload))  # strict: a mismatch names the keys
    return encoder.eval(), {"weights": str(path)}


def import_released(gdm: str, params) -> tuple[StructureEncoder, dict[str, Any]]:
    """An encoder whose class ships published weights (`released = True`, e.g. ProteinMPNN): build it, load them
    (strict) and record where they came from and their sha256, so the checkpoint says which weights it holds."""
    encoder = registry.build(gdm, params.structure)
    state, info = encoder.released_state()
    encoder.load_state_dict(state, strict=True)
    return encoder.eval(), {**info, "weights": "released", "source": info["weights"], "best_epoch": None,
                            "history": []}


def ec_labels(paths, ids: list[str], level: int) -> tuple[dict[str, int], list[str]]:
    """EC class index per train id (first `level` digits; classes from the TRAIN split only) and the classes."""
    import pandas as pd

    table = pd.read_parquet(paths.proteins, columns=["id", "ec_numbers"])
    labels = {
        pid: tasks.ec_label(ecs, level) for pid, ecs in zip(table["id"], table["ec_numbers"], strict=True)
    }
    classes = tasks.ec_classes(labels, ids)
    index = {c: k for k, c in enumerate(classes)}
    return {pid: index[lab] for pid, lab in labels.items() if lab in index}, classes


def run(params: Params, paths: Paths, gdm: str) -> dict[str, Any]:
    """Stage entry: train (or take random / external weights for) `gdm`; save `models/structure/<gdm>.pt`."""
    cfg = params.structure.train
    if not registry.is_trainable(gdm, params.structure):
        return _fixed(params, paths, gdm)
    weights = str(params.structure.section(gdm).weights)
    tasks.check_tasks(cfg.tasks)
    if weights == "trained":
        cfg = dataclasses.replace(cfg, tasks=tasks.usable_tasks(cfg.tasks, params.structure.residue_types))
    set_threads(params)
    device = resolve_device(params.structure.device, "structure.device")
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    mlflow_params = {"gdm": gdm, **_flat("structure", params.structure)}
    t0 = time.perf_counter()
    with mlflow_run(paths, stage="train_structure", item=gdm, params=mlflow_params) as tracker:
        if weights == "trained" and getattr(registry.encoder_class(gdm), "released", False):
            encoder, summary = import_released(gdm, params)  # published weights: imported, never trained here
        elif weights == "trained":
            split = read_json(paths.split)
            store = open_store(paths)
            ec, classes = ({}, [])
            if "ec" in cfg.tasks:
                ec, classes = ec_labels(paths, list(split["train"]), cfg.ec_level)
            encoder = registry.build(gdm, params.structure)
            train, skip_train = featurize_many(encoder, store, list(split["train"]), "featurize train", ec)
            val, skip_val = featurize_many(encoder, store, list(split["val"]), "featurize val", ec)
            for s in skip_train + skip_val:
                log.warning("train_structure@%s: skipped %s (%s)", gdm, s["id"], s["reason"])
            summary = pretrain(encoder, train, val, cfg, tracker, n_ec=len(classes), device=device)
            summary.update(ec_classes=classes, skipped=skip_train + skip_val)
            tracker.log_metrics({"best_epoch": summary["best_epoch"], "best_score": summary["best_score"]})
        elif weights == "random":
            encoder = registry.build(gdm, params.structure).eval()
            summary = {"weights": "random", "best_epoch": None, "history": [], "seed": cfg.seed}
        else:
            source = Path(weights.replace("{gdm}", gdm))
            encoder, summary = load_external(
                source if source.is_absolute() else paths.root / source, gdm, params
            )
            # as params.yaml names it: the checkout's absolute root in the file would differ in every clone
            summary["weights"] = str(source)
            encoder.config["residue_types"] = bool(params.structure.residue_types)  # what embed_structure shows it
        summary["seconds"] = time.perf_counter() - t0
        tracker.log_metrics({"seconds": summary["seconds"]})
    save_checkpoint(paths.structure_model(gdm), encoder, gdm, summary)
    return {k: v for k, v in summary.items() if k != "head_state_dict"}


def _fixed(params: Params, paths: Paths, gdm: str) -> dict[str, Any]:
    """A fixed descriptor (registry `trainable = False`): the checkpoint records its config, method and version
    (no MLflow run: nothing is fitted or tracked)."""
    encoder = registry.build(gdm, params.structure).eval()
    summary = {
        "weights": "none",
        "trainable": False,
        "method": encoder.config.get("method", encoder.name),
        "best_epoch": None,
        "history": [],
    }
    save_checkpoint(paths.structure_model(gdm), encoder, gdm, summary)
    return summary
