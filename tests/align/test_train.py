"""Training the heads on synthetic pairs (text = linear map of structure + noise) and on a no-signal control."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from synthetic import make_world

from params_helpers import with_params
from protalign.align import evaluate, train
from protalign.align.heads import load_heads
from protalign.storage import write_json


@pytest.mark.parametrize("loss", ["study", "clip"])
def test_training_beats_untrained_baseline(tmp_path, loss):
    world = make_world(tmp_path, align={"loss": loss})
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    m = evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    assert m["alignment_score"] > m["baseline_alignment_score"] + 0.3
    for direction in ("s2t", "t2s"):
        assert m[f"recall@1_{direction}"] > m[f"baseline_recall@1_{direction}"] + 0.2
        assert m[f"mrr_{direction}"] > max(m[f"baseline_mrr_{direction}"], m["chance_mrr"]) + 0.2


def test_no_signal_control_stays_near_chance(tmp_path):
    """If text carries no information about structure, the test metrics must not look good (overfit train only)."""
    world = make_world(tmp_path, signal=0.0)
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    m = evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    assert m["alignment_score"] < 0.0
    assert m["mrr_s2t"] < 2 * m["chance_mrr"] and m["mrr_t2s"] < 2 * m["chance_mrr"]


def test_best_epoch_weights_are_restored(tmp_path):
    world = make_world(tmp_path, signal=0.0)  # no signal: validation loss rises once training overfits
    data = train.load_pair(world.paths, "llm-a", "gdm-x")
    align = world.params.align
    config = train.head_config(align, 20, 12)
    seen = []
    fit = train.fit_heads(
        data.arrays("train"), data.arrays("val"), config, align, on_epoch=lambda *a: seen.append(a)
    )
    val_losses = [h["val_loss"] for h in fit.history]
    assert len(seen) == len(fit.history) == align.epochs
    assert fit.best_epoch == int(np.argmin(val_losses)) + 1
    assert fit.best_epoch < align.epochs and val_losses[-1] > fit.best_val_loss  # the restore matters here
    text, structure = data.arrays("val")
    again = train.evaluate_loss(
        fit.text_head, fit.structure_head, text, structure, align.loss, align.temperature
    )
    assert again == pytest.approx(fit.best_val_loss, rel=1e-6)


def test_patience_stops_early_and_keeps_the_same_best_epoch(tmp_path):
    world = make_world(tmp_path, signal=0.0)  # no signal: validation loss rises once training overfits
    data = train.load_pair(world.paths, "llm-a", "gdm-x")
    config = train.head_config(world.params.align, 20, 12)
    full = train.fit_heads(data.arrays("train"), data.arrays("val"), config, world.params.align)
    early_align = dataclasses.replace(world.params.align, patience=2)
    early = train.fit_heads(data.arrays("train"), data.arrays("val"), config, early_align)
    assert len(early.history) < len(full.history)
    assert early.history == full.history[: len(early.history)]  # same run, cut short
    losses = [h["val_loss"] for h in early.history]
    assert len(losses) - 1 - int(np.argmin(losses)) == 2  # stopped exactly `patience` epochs after the best
    assert early.best_epoch <= full.best_epoch
    with pytest.raises(ValueError, match="patience"):
        train.fit_heads(data.arrays("train"), data.arrays("val"), config,
                        dataclasses.replace(world.params.align, patience=0))  # fmt: skip


def test_saved_heads_hold_config_and_history(world):
    info = train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    text_head, structure_head, config, saved = load_heads(world.paths.heads("llm-a", "gdm-x"))
    assert (config.text_dim, config.structure_dim, config.dim) == (20, 12, 20)  # dim null -> LLM width
    assert saved["best_epoch"] == info["best_epoch"] and saved["seed"] == 0 and saved["loss"] == "study"
    assert len(saved["history"]) == world.params.align.epochs
    assert (saved["n_train"], saved["n_val"], saved["n_test"], saved["n_missing"]) == (96, 32, 32, 0)


def test_structure_layers_and_dim_from_params(tmp_path):
    world = make_world(tmp_path, align={"dim": 8, "structure_layers": 3, "hidden_dim": 16, "epochs": 2})
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    _, structure_head, config, _ = load_heads(world.paths.heads("llm-a", "gdm-x"))
    assert config.dim == 8 and config.structure_layers == 3
    assert structure_head(torch.zeros(1, 12) + 1).shape == (1, 8)


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        world = make_world(tmp_path / name, align={"epochs": 5, "seed": seed})
        train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
        outs.append(load_heads(world.paths.heads("llm-a", "gdm-x"))[0].proj.weight)
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_missing_ids_are_dropped_from_every_split_and_counted(tmp_path):
    probe = make_world(tmp_path / "probe")
    lost_text = [probe.split["train"][0], probe.split["test"][0]]
    lost_structure = [probe.split["val"][0], probe.split["test"][0]]  # one overlap with the text side
    world = make_world(tmp_path / "w", drop={"text/llm-a": lost_text, "structure/gdm-x": lost_structure})
    data = train.load_pair(world.paths, "llm-a", "gdm-x")
    assert data.counts() == {
        "n_train": 95, "n_val": 31, "n_test": 31, "n_missing": 3, "n_missing_text": 2, "n_missing_structure": 2,
    }  # fmt: skip
    for part in ("train", "val", "test"):
        assert not set(data.split[part]) & set(lost_text + lost_structure)
    info = train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    assert info["n_missing"] == 3 and info["n_train"] == 95


def test_bad_split_and_params_fail_loudly(world):
    split = {k: list(v) for k, v in world.split.items()}
    split["test"].append(split["train"][0])
    write_json(world.paths.split, split)
    with pytest.raises(ValueError, match="overlap"):
        train.load_split(world.paths)
    data_params = with_params(world.params, "align.loss", "triplet")
    with pytest.raises(ValueError, match="unknown align.loss"):
        train.fit_heads((np.ones((4, 2)),) * 2, (np.ones((4, 2)),) * 2, train.head_config(data_params.align, 2, 2),
                        data_params.align)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="split stage"):
        train.load_split(type(world.paths)(world.paths.root / "nowhere"))


def test_run_logs_to_mlflow(world, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PROTALIGN_MLFLOW_EXPERIMENT", "test-align")
    params = with_params(world.params, "align.epochs", 3)
    info = train.run(params, world.paths, "llm-a", "gdm-x")
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("test-align")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["align.loss"] == "study"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert run.data.metrics["best_epoch"] == info["best_epoch"]


def test_fused_adam_equals_torch_adam_and_skips_dynamo():
    """The optimizer of the heads is torch's fused Adam update, bit for bit, without importing torch._dynamo."""
    import subprocess
    import sys

    torch.manual_seed(0)
    a = [torch.randn(7, 5, requires_grad=True), torch.randn(5, requires_grad=True)]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    ours, ref = train.FusedAdam(a, lr=0.01), torch.optim.Adam(b, lr=0.01, fused=True)
    for step in range(5):
        x = torch.randn(3, 7)
        for params, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            loss = ((x @ params[0] + params[1]) ** 2).sum() if step != 2 else (x @ params[0]).sum()
            loss.backward()  # step 2: params[1] gets no grad and must not step
            opt.step()
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p, q)
    code = ("import sys, torch; from protalign.align.train import FusedAdam; "
            "p = torch.zeros(2, requires_grad=True); o = FusedAdam([p], 0.1); p.sum().backward(); o.step(); "
            "print('torch._dynamo' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
