"""benchmarks/study_ablations.py: the ablation table from `dvc exp show --json` states (synthetic, in the shape of
DVC 3.67's real output: tests/fixtures/sweeps/exp_show.json), the plan of a dry run, and the study params."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import study_ablations as SA  # noqa: E402

LLM, GDMS = "minilm-l6", ["gat", "gvp"]
FIXTURE = json.loads((REPO / "tests" / "fixtures" / "sweeps" / "exp_show.json").read_text())


def _test_metrics(score: float) -> dict:
    return {"alignment_score": score, "baseline_alignment_score": score / 4, "recall@1_t2s": 0.1,
            "chance_recall@1": 0.01, "recall@10_t2s": 0.3, "chance_recall@10": 0.1, "n_test": 80}  # fmt: skip


def _cv(score: float) -> dict:
    block = lambda x: {"estimate": x, "ci_low": x - 0.01, "ci_high": x + 0.01, "n": 800}  # noqa: E731
    return {"headline_gain": score / 2, "methods": {m: {"alignment_score": block(score + d), "baseline_alignment_score": block(0.0),
                            "gain_over_baseline": block(score + d)} for m, d in (("random", 0.1), ("cluster", 0.0))}}  # fmt: skip


def _state(rev: str, name: str | None, writer: str, scores: dict[str, float], blind: bool = False) -> dict:
    """A state as DVC writes it (params/metrics per file under {"data": ...}), from the fixture's baseline."""
    state = copy.deepcopy(FIXTURE[1])
    state.update(rev=rev, name=name, experiments=None)
    params = state["data"]["params"]["params.yaml"]["data"]
    params["summarize"]["writer"] = writer
    params["structure"]["residue_types"] = not blind
    params["align"]["llms"] = [LLM]
    metrics = {}
    for gdm, score in scores.items():
        metrics[f"metrics/{LLM}__{gdm}.json"] = {"data": _test_metrics(score)}
        metrics[f"metrics/cv/{LLM}__{gdm}.json"] = {"data": _cv(score)}
    state["data"]["metrics"] = metrics
    state["data"]["rev"] = rev
    return state


def _exp(state: dict, name: str, executor: str | None = "success") -> dict:
    return {"revs": [state], "executor": None if executor is None else {"state": executor}, "name": name}


def states() -> list[dict]:
    base = _state("a" * 40, "master", "template", {"gat": 0.30, "gvp": 0.20})
    workspace = copy.deepcopy(base)
    workspace.update(rev="workspace", name=None)
    name_only = _state("c" * 40, None, "name_only", {"gat": 0.25, "gvp": 0.24})
    del name_only["data"]["metrics"][f"metrics/cv/{LLM}__gvp.json"]  # a pair whose CV did not run
    base["experiments"] = [
        _exp(_state("b" * 40, None, "no_ids", {"gat": 0.10, "gvp": 0.05}), "no_ids"),
        _exp(name_only, "name_only", executor=None),  # run outside the queue (--temp): no executor, finished
        _exp(_state("d" * 40, None, "length_only", {}), "length_only", executor="failed"),
        _exp(_state("e" * 40, None, "template", {"gat": 0.02, "gvp": 0.01}, blind=True), "sequence_blind"),
    ]
    return [workspace, base]


def test_table_one_row_per_ablation_and_gdm_with_reasons():
    table = SA.ablation_table(states(), LLM, GDMS, list(SA.ABLATIONS))
    assert len(table) == 5 * len(GDMS)
    cell = table.set_index(["ablation", "gdm"])
    assert cell.loc[("baseline", "gat"), "alignment_score"] == 0.30
    assert cell.loc[("baseline", "gat"), "baseline_alignment_score"] == pytest.approx(0.075)
    assert cell.loc[("no_ids", "gvp"), "alignment_score"] == 0.05
    assert cell.loc[("no_ids", "gvp"), "cv_cluster_alignment_score"] == 0.05
    assert cell.loc[("no_ids", "gvp"), "cv_random_alignment_score"] == pytest.approx(0.15)
    assert cell.loc[("no_ids", "gat"), "cv_cluster_ci_low"] == pytest.approx(0.09)
    assert cell.loc[("sequence_blind", "gat"), "recall@10_t2s"] == 0.3
    assert cell.loc[("sequence_blind", "gat"), "chance_recall@10"] == 0.1
    assert json.loads(cell.loc[("sequence_blind", "gat"), "changed"]) == {"structure.residue_types": False}
    assert json.loads(cell.loc[("no_ids", "gat"), "changed"]) == {"summarize.writer": "no_ids"}
    assert cell.loc[("name_only", "gat"), "status"] == "ok"
    assert cell.loc[("name_only", "gvp"), "status"] == "missing metrics (cv)"
    assert cell.loc[("length_only", "gat"), "status"].startswith("missing: state failed")
    assert (cell.xs("baseline")["status"] == "ok").all()
    assert cell.loc[("no_ids", "gat"), "headline_gain"] == pytest.approx(0.05)  # carried over where present


def test_experiments_of_another_baseline_do_not_count():
    other = states()
    old = _state("f" * 40, "old", "template", {"gat": 0.9, "gvp": 0.9})
    old["experiments"] = [_exp(_state("0" * 40, None, "no_ids", {"gat": 0.9}), "no_ids")]
    head = other[1]
    head["experiments"] = []
    table = SA.ablation_table([other[0], head, old], LLM, GDMS, ["no_ids"])
    row = table[(table["ablation"] == "no_ids") & (table["gdm"] == "gat")].iloc[0]
    assert row["status"].startswith("missing") and SA.experiment_names([other[0], head, old]) == set()


def test_real_dvc_output_parses():
    """DVC's own dump (another LLM): every row says what is missing rather than failing."""
    table = SA.ablation_table(FIXTURE, "smollm2-135m", ["gat"], ["no_ids"])
    base = table[table["ablation"] == "baseline"].iloc[0]
    assert base["status"] == "ok" and -1 <= base["alignment_score"] <= 1
    assert table[table["ablation"] == "no_ids"].iloc[0]["status"].startswith("missing")


def test_study_params_one_llm_and_dry_run_changes_nothing(tmp_path, capsys, shared_data):
    params = SA.study_params(REPO / "params.yaml", "minilm-l6", None)
    assert params["align"]["llms"] == ["minilm-l6"] and params["embed_text"]["llms"] == ["minilm-l6"]
    assert (
        params["structure"]["gdms"] == yaml.safe_load((REPO / "params.yaml").read_text())["structure"]["gdms"]
    )
    scratch = tmp_path / "scratch"
    assert (
        SA.main([str(shared_data), "--scratch", str(scratch), "--out", str(tmp_path / "out"), "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out
    assert "to be created" in out and "sequence_blind: dvc exp run --temp -n sequence_blind" in out
    assert "-S structure.residue_types=false" in out and "[to run]" in out
    assert not scratch.exists() and not (tmp_path / "out").exists()


def test_set_overrides_and_headline_grid(tmp_path):
    src = tmp_path / "params.yaml"
    src.write_text("embed_text: {llms: [a, b]}\nalign: {llms: [a]}\nstructure: {gdms: [g1, g2]}\n"
                   "analysis: {methods: [cluster, random], seeds: [0, 1]}\n")  # fmt: skip
    p = SA.study_params(src, "b", None, ["analysis.methods=[cluster]"])
    assert p["analysis"]["methods"] == ["cluster"] and p["align"]["llms"] == ["b"] and p["analysis"]["seeds"] == [0, 1]
    with pytest.raises(SystemExit, match="existing params key"):
        SA.study_params(src, "b", None, ["analysis.nope=1"])
    table = pd.DataFrame({"ablation": ["baseline", "baseline", "no_ids"], "gdm": ["g1", "g2", "g1"],
                          "headline_gain": [0.1, 0.2, 0.05], "headline_ci_low": [0.0, 0.1, 0.01],
                          "headline_ci_high": [0.2, 0.3, 0.1]})  # fmt: skip
    md = SA.headline_md(table)
    assert "| g1 | 0.1000 [0.0000, 0.2000] | 0.0500 [0.0100, 0.1000] |" in md
    assert "| g2 | 0.2000 [0.1000, 0.3000] | — |" in md  # a missing cell is shown, never dropped


def test_per_pair_files_are_read_from_each_experiments_commit(tmp_path):
    """DVC lists only reports/summary.json as metrics: the per-pair files come from the experiment's git commit."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip

    git("init", "-q")
    (tmp_path / "metrics" / "cv").mkdir(parents=True)
    for gdm, score in (("gat", 0.4), ("gvp", 0.1)):
        (tmp_path / "metrics" / f"{LLM}__{gdm}.json").write_text(json.dumps(_test_metrics(score)))
        (tmp_path / "metrics" / "cv" / f"{LLM}__{gdm}.json").write_text(json.dumps(_cv(score)))
    git("add", "-A")
    git("commit", "-qm", "baseline")
    base = _state(git("rev-parse", "HEAD"), "master", "template", {})
    base["data"]["metrics"] = {"reports/summary.json": {"data": {}}}
    assert set(SA.ablation_table([base], LLM, GDMS, [])["status"]) == {"missing metrics (test) (cv)"}
    table = SA.ablation_table([base], LLM, GDMS, [], root=tmp_path).set_index("gdm")
    assert table.loc["gat", "alignment_score"] == 0.4 and table.loc["gvp", "status"] == "ok"
