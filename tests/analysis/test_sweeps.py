"""`protalign sweeps` on a saved `dvc exp show --json` dump and finding F6 on the sweep table.

tests/fixtures/sweeps/exp_show.json is DVC 3.67's real output, captured from the pipeline scratch repository after
queueing GearNet-Edge widths [8] and [8, 8] (success), [] (failed) and [32] (still queued); see its README."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from params_helpers import default_params
from protalign.analysis import findings, sweeps, sweeps_readme
from protalign.cli import main
from protalign.paths import Paths
from protalign.structure.gearnet import GearNetEncoder

DUMP = Path(__file__).resolve().parents[1] / "fixtures" / "sweeps" / "exp_show.json"


def _raw_experiments() -> dict[str, dict]:
    """name -> finished experiment state, read straight from the dump (independently of sweeps.collect)."""
    out = {}
    for state in json.loads(DUMP.read_text()):
        for rng in state.get("experiments") or []:
            if rng["executor"]["state"] == "success":
                out[rng["name"]] = rng["revs"][0]
    return out


def test_collect_keeps_finished_and_records_the_rest():
    exps, skipped = sweeps.collect(sweeps.exp_show_json(Path("."), DUMP))
    assert [(e.name, e.kind) for e in exps] == [
        ("master", "baseline"),
        ("gdm16", "experiment"),
        ("gdm8", "experiment"),
    ]
    reasons = {s.name: s.reason for s in skipped}
    assert reasons["gdm32"] == "state queued"
    assert reasons["gdm-empty"].startswith("state failed")
    assert reasons["workspace"].startswith("identical to baseline master")
    gdm8 = next(e for e in exps if e.name == "gdm8")
    assert gdm8.changed["structure.gearnet_edge.hidden_dims"] == [8]
    assert gdm8.changed["structure.gdms"] == ["gearnet_edge"]
    assert "align.lr" not in gdm8.changed  # unchanged params are not listed
    assert gdm8.baseline == "master" and len(gdm8.rev) == 40


def test_run_writes_tables_that_match_the_dump(tmp_path):
    summary = sweeps.run(Paths(tmp_path), source=DUMP)
    out = tmp_path / "reports" / "sweeps"
    table = pd.read_csv(out / "gdm_dim.csv")
    raw = _raw_experiments()
    assert summary["gdm_dim_points"] == len(table) == 2
    for name, dims in (("gdm8", [8]), ("gdm16", [8, 8])):
        row = table[table["experiment"] == name].iloc[0]
        metrics = raw[name]["data"]["metrics"]["metrics/smollm2-135m__gearnet_edge.json"]["data"]
        assert row["dim"] == sum(dims) and json.loads(row["hidden_dims"]) == dims
        assert row["alignment_score"] == pytest.approx(metrics["alignment_score"], abs=1e-6)
        assert row["n_test"] == metrics["n_test"] and row["rev"] == raw[name]["rev"]
    assert table["context"].nunique() == 1
    exps = pd.read_csv(out / "experiments.csv")
    assert set(exps["experiment"]) == {"master", "gdm8", "gdm16"}
    assert {"alignment_score", "baseline_alignment_score", "recall@1_s2t", "mrr_t2s", "n_test"} <= set(exps)
    assert "structure.gearnet_edge.hidden_dims" in exps and "align.lr" not in exps
    base = exps[exps["experiment"] == "master"]
    assert set(base["gdm"]) == {"gat"} and (base["structure.gearnet_edge.hidden_dims"] == "[32, 32]").all()
    readme = (out / "README.md").read_text()
    assert f"protalign sweeps --from {DUMP}" in readme and "gdm32 | " in readme and "state queued" in readme
    assert (out / "gdm_dim.png").stat().st_size > 1000


def test_no_gearnet_point_removes_a_stale_table(tmp_path):
    states = json.loads(DUMP.read_text())
    for state in states:
        state["experiments"] = None  # baseline (GAT only) and workspace: no GearNet-Edge pair
    dump = tmp_path / "base.json"
    dump.write_text(json.dumps(states))
    out = tmp_path / "reports" / "sweeps"
    out.mkdir(parents=True)
    (out / "gdm_dim.csv").write_text("dim,alignment_score\n1,0.5\n")
    assert sweeps.run(Paths(tmp_path), source=dump)["gdm_dim_points"] == 0
    assert not (out / "gdm_dim.csv").exists()
    assert "No GearNet-Edge point" in (out / "README.md").read_text()


@pytest.mark.parametrize("text", ["not json", '{"rev": "workspace"}', "[1, 2]"])
def test_bad_dump_is_a_clear_error(tmp_path, text, capsys, monkeypatch):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(ValueError, match="dvc exp show --json"):
        sweeps.exp_show_json(tmp_path, tmp_path / "bad.json")
    monkeypatch.chdir(tmp_path)
    assert main(["sweeps", "--from", str(tmp_path / "bad.json")]) == 2
    assert "protalign sweeps: error" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("dims", "readout"), [([8], "sum"), ([8, 8], "sum"), ([4, 6], "meanmax"), ([5], "mean")]
)
def test_width_rule_matches_the_encoder(dims, readout):
    assert (
        sweeps.gearnet_width(dims, readout) == GearNetEncoder({"hidden_dims": dims, "readout": readout}).dim
    )


def _f6(tmp_path, rows) -> list:
    paths = Paths(tmp_path)
    (paths.reports / "sweeps").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(paths.reports / "sweeps" / "gdm_dim.csv", index=False)
    return findings.finding_gdm_dim(default_params(), paths)


def _verdict(f) -> str:
    return f.verdict


def test_f6_is_one_stratified_test_over_llms(tmp_path):
    dims = [64, 128, 256, 512, 1024, 3072]
    up = [{"dim": d, "llm": llm, "context": "c", "alignment_score": 0.01 * i + off}
          for llm, off in (("a", 0.0), ("b", 0.5)) for i, d in enumerate(dims)]  # fmt: skip
    assert _verdict(_f6(tmp_path, up)) == "reproduced"  # strata = LLMs; 720^2 orders: seeded Monte Carlo
    assert "Monte Carlo" in _f6(tmp_path, up).deciding
    down = [{**r, "alignment_score": -r["alignment_score"]} for r in up]
    assert _verdict(_f6(tmp_path, down)) == "not reproduced"
    # one LLM rising, the other falling: the summed statistic is 0, the one test cannot decide
    assert _verdict(_f6(tmp_path, up[:6] + down[6:])) == "inconclusive"
    two = [r for r in up if r["dim"] in (64, 128)]
    assert "not testable here" in _verdict(_f6(tmp_path, two))
    (tmp_path / "reports" / "sweeps" / "gdm_dim.csv").unlink()
    assert "not testable here" in _verdict(findings.finding_gdm_dim(default_params(), Paths(tmp_path)))


def test_pairs_outside_the_experiments_params_are_not_rows(tmp_path):
    # a metrics file the experiment inherited from its baseline commit (GAT pair, but structure.gdms=[gearnet_edge])
    states = json.loads(DUMP.read_text())
    for state in states:
        for rng in state.get("experiments") or []:
            if rng["name"] == "gdm8":
                metrics = rng["revs"][0]["data"]["metrics"]
                metrics["metrics/smollm2-135m__gat.json"] = metrics["metrics/smollm2-135m__gearnet_edge.json"]
    dump = tmp_path / "exp_show.json"
    dump.write_text(json.dumps(states))
    exps, skipped = sweeps.collect(sweeps.exp_show_json(Path("."), dump))
    table = sweeps.experiments_table(exps, skipped)
    assert set(table.loc[table["experiment"] == "gdm8", "gdm"]) == {"gearnet_edge"}
    assert any(s.name == "gdm8" and "smollm2-135m__gat" in s.reason for s in skipped)


def _commit(root: Path, files: dict[str, dict]) -> str:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(data))
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=root, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def test_per_pair_files_are_read_from_each_experiments_commit(tmp_path):
    """`dvc exp show` lists only reports/summary.json: the detail files come from each experiment's git commit."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    pair = "a__gearnet_edge"
    params = {"align": {"llms": ["a"], "lr": 0.001}, "structure": {"gdms": ["gearnet_edge"],
              "gearnet_edge": {"hidden_dims": [8], "readout": "sum"}}}  # fmt: skip
    states, revs = [], {}
    for name, lr, score in (("master", 0.001, 0.25), ("fast", 0.01, 0.5)):
        test = {"alignment_score": score, "baseline_alignment_score": 0.0, "n_test": 7, "recall@10_t2s": 0.5}
        revs[name] = _commit(tmp_path, {f"metrics/{pair}.json": test,
                                        f"metrics/cv/{pair}.json": {"alignment_score": score / 2}})  # fmt: skip
        p = json.loads(json.dumps(params))
        p["align"]["lr"] = lr
        head = {pair: {"gain": score / 10, "gain_lo": 0.0, "gain_hi": score / 5, "score": score, "r10": 0.5}}
        data = {"params": {"params.yaml": {"data": p}}, "metrics": {"reports/summary.json": {"data": head}}}
        states.append({"rev": revs[name], "name": name, "data": data})
    base, exp = states
    base["experiments"] = [{"name": "fast", "executor": {"state": "success"}, "revs": [exp]}]
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps([base]))
    sweeps.run(Paths(tmp_path), source=dump)
    table = pd.read_csv(tmp_path / "reports" / "sweeps" / "experiments.csv").set_index("experiment")
    assert table.loc["master", "alignment_score"] == 0.25 and table.loc["fast", "alignment_score"] == 0.5
    assert table.loc["fast", "cv_alignment_score"] == 0.25 and table.loc["fast", "gain"] == pytest.approx(0.05)
    assert table.loc["fast", "align.lr"] == 0.01 and table.loc["fast", "n_test"] == 7
    # a revision git does not know: recorded, not dropped
    exp["rev"] = "0" * 40
    dump.write_text(json.dumps([base]))
    sweeps.run(Paths(tmp_path), source=dump)
    readme = (tmp_path / "reports" / "sweeps" / "README.md").read_text()
    assert "per-pair metrics files unreadable" in readme


def test_rows_are_ranked_by_the_headline():
    table = pd.DataFrame(
        {"experiment": ["a", "b", "c", "d"], "llm": "l", "gdm": "g", "alignment_score": [0.9, 0.1, 0.5, 0.7],
         "headline_gain": [0.01, 0.20, None, 0.05], "headline_ci_low": [-0.01, 0.1, None, 0.0],
         "headline_ci_high": [0.03, 0.3, None, 0.1]}
    )  # fmt: skip
    ranked = sweeps.rank_by_headline(table)
    assert list(ranked["experiment"]) == ["b", "d", "a", "c"]  # no headline: last
    assert ranked["headline_rank"].tolist()[:3] == [1, 2, 3] and pd.isna(ranked["headline_rank"].iloc[3])
    assert "| 1 | b | l | g | 0.2000 |" in "\n".join(sweeps_readme.ranking_lines(ranked))
