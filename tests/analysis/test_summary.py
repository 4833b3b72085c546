"""`summarize_run` and `protalign show` on synthetic metrics files: the values come from the files, a CV file without
the headline gives null (and says so), the table is ranked by the headline, and dvc.yaml declares only the summary."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from protalign.analysis import summary
from protalign.cli import main
from protalign.errors import InputError, MissingArtifactError
from protalign.params import load_params
from protalign.paths import Paths

REPO = Path(__file__).resolve().parents[2]
LLMS, GDMS = ["a", "b"], ["gat", "gvp"]
# pair -> (headline gain, lo, hi, test alignment score, R@10 t->s, n_test)
VALUES = {
    "a__gat": (0.02, -0.01, 0.05, 0.11, 0.40, 40),
    "a__gvp": (0.10, 0.06, 0.14, 0.05, 0.55, 40),
    "b__gat": (-0.03, -0.07, 0.01, 0.20, 0.30, 38),
    "b__gvp": (0.04, 0.00, 0.08, 0.01, 0.35, 40),
}


def _params(tmp_path: Path):
    text = (REPO / "tests" / "pipeline_params.yaml").read_text()
    data = yaml.safe_load(text)
    data["align"]["llms"], data["embed_text"]["llms"], data["structure"]["gdms"] = LLMS, LLMS, GDMS
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    return load_params(tmp_path / "params.yaml")


def _world(tmp_path: Path, headline: bool = True) -> Paths:
    """metrics/<pair>.json (evaluate's keys) and metrics/cv/<pair>.json (with issue 15's headline keys or not)."""
    (tmp_path / "metrics" / "cv").mkdir(parents=True)
    for pair, (gain, lo, hi, score, r10, n) in VALUES.items():
        test = {"alignment_score": score, "recall@10_t2s": r10, "recall@10_s2t": 0.9, "n_test": n,
                "chance_recall@10": 10 / n, "chance_recall@1": 1 / n, "llm": pair[0], "gdm": pair[-1]}  # fmt: skip
        (tmp_path / "metrics" / f"{pair}.json").write_text(json.dumps(test))
        cv = {"alignment_score": score - 0.01, "methods": {}}
        if headline:
            cv.update(headline_gain=gain, headline_ci_low=lo, headline_ci_high=hi, score_gain_control=0.3)
        (tmp_path / "metrics" / "cv" / f"{pair}.json").write_text(json.dumps(cv))
    return Paths(tmp_path)


def test_summary_takes_every_number_from_the_files(tmp_path):
    paths = _world(tmp_path)
    out = summary.run(_params(tmp_path), paths)
    assert json.loads((tmp_path / "reports" / "summary.json").read_text()) == out
    assert set(out) == set(VALUES) | {"chance"}
    for pair, (gain, lo, hi, score, r10, _) in VALUES.items():
        assert out[pair] == {"gain": gain, "gain_lo": lo, "gain_hi": hi, "score": score, "r10": r10}
    # run level: the highest chance level (smallest test set) and the range of test sizes
    assert out["chance"] == {"r10": 10 / 38, "n_min": 38, "n_max": 40}
    assert [p for p, _ in summary.ranked(out)] == ["a__gvp", "b__gvp", "a__gat", "b__gat"]


def test_cv_without_headline_gives_null_and_says_so(tmp_path, caplog):
    paths = _world(tmp_path, headline=False)
    with caplog.at_level(logging.WARNING, logger="protalign.analysis.summary"):
        out = summary.run(_params(tmp_path), paths)
    for pair, (*_, score, r10, _n) in VALUES.items():
        assert out[pair] == {"gain": None, "gain_lo": None, "gain_hi": None, "score": score, "r10": r10}
    assert sum("has no headline_gain" in r.message for r in caplog.records) == len(VALUES)
    text = summary.render_text(out)
    assert "No headline for 4 of 4 pair(s)" in text and "n/a" in text
    # without a headline the pairs are ranked by test score
    assert [p for p, _ in summary.ranked(out)] == ["b__gat", "a__gat", "a__gvp", "b__gvp"]


def test_missing_or_short_metrics_are_clear_errors(tmp_path):
    paths = _world(tmp_path)
    params = _params(tmp_path)
    (tmp_path / "metrics" / "cv" / "b__gvp.json").unlink()
    with pytest.raises(MissingArtifactError, match="crossval@b-gvp"):
        summary.build(params, paths)
    _world(tmp_path / "x")
    (tmp_path / "x" / "metrics" / "a__gat.json").write_text(json.dumps({"alignment_score": 0.1, "n_test": 4}))
    with pytest.raises(InputError, match="recall@10_t2s"):
        summary.build(params, Paths(tmp_path / "x"))


def _show(tmp_path, capsys, *args) -> tuple[int, str, str]:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(["show", *args])
    finally:
        os.chdir(cwd)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_show_prints_the_ranked_answer_and_where_to_look(tmp_path, capsys):
    summary.run(_params(tmp_path), _world(tmp_path))
    (tmp_path / "reports" / "findings.html").write_text("<html></html>")
    rc, out, _ = _show(tmp_path, capsys)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["rank", "pair", "gain"]
    first = next(line for line in lines if line.strip().startswith("1 "))
    assert "a × gvp" in first and "0.100" in first and "[0.060, 0.140]" in first and "0.55" in first
    assert out.index("b × gvp") < out.index("a × gat") < out.index("b × gat")  # ranked by headline gain
    assert "R@10 t→s 0.26 (random ranking of 38 test proteins; test sets: 38 to 40)" in out
    assert "reports/findings.html" in out and "reports/depth.png" not in out  # only what exists
    assert "No headline" not in out


def test_show_without_a_summary_is_a_user_error(tmp_path, capsys):
    rc, _, err = _show(tmp_path, capsys)
    assert rc == 2 and "run `dvc repro`" in err
    (tmp_path / "bad.json").write_text(json.dumps({"a__gat": {"gain": 1}}))
    rc, _, err = _show(tmp_path, capsys, "--summary", "bad.json")
    assert rc == 2 and "not a run summary" in err


def test_run_sh_ends_with_the_answer(tmp_path):
    """scripts/run.sh's last step, run on a synthetic summary, prints the ranked table (not `dvc exp show`)."""
    lines = [ln.strip() for ln in (REPO / "scripts" / "run.sh").read_text().splitlines()]
    last = [ln for ln in lines if ln and not ln.startswith("#")][-1]
    assert last.startswith("protalign show") and "dvc exp show" not in last
    summary.run(_params(tmp_path), _world(tmp_path))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run(["bash", "-c", last], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[2].split()[:4] == ["1", "a", "×", "gvp"], res.stdout
    assert "Chance:" in res.stdout
    assert shlex.split(last)[:2] == ["protalign", "show"]


def _stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_dvc_declares_only_the_summary_as_metrics():
    dag = _stages()
    declared = [next(iter(m)) if isinstance(m, dict) else m
                for st in dag["stages"].values() for m in st.get("metrics", [])]  # fmt: skip
    assert declared == ["reports/summary.json"] and "metrics" not in dag
    outs = {next(iter(o)): o[next(iter(o))] for st in dag["stages"].values() for o in st.get("outs", [])
            if isinstance(o, dict)}  # fmt: skip
    for detail in ("metrics/${item.llm}__${item.gdm}.json", "metrics/cv/${item.llm}__${item.gdm}.json"):
        assert outs[detail] == {"cache": False}  # still git-tracked for reports, use/ and sweeps
    assert "metrics" in dag["stages"]["summarize_run"]["deps"]


def test_readme_recipe_hides_dependency_hashes():
    readme = (REPO / "README.md").read_text()
    assert f"dvc exp show --only-changed --drop '{summary.DROP_DEPS}'" in readme


def test_matrix_has_one_row_per_gdm_and_one_column_per_llm(tmp_path):
    """The README's compact view: every pair's gain and interval in its (GDM, LLM) cell, best GDM first."""
    out = summary.run(_params(tmp_path), _world(tmp_path))
    lines = summary.render_matrix(out)
    assert lines[0] == "| GDM \\ LLM | a | b |"
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in lines[2:4]}
    assert list(rows) == ["gvp", "gat"]  # gvp holds the best gain (0.10)
    assert "| 0.100 [0.060, 0.140] | 0.040 [0.000, 0.080] |" in rows["gvp"]
    assert "| 0.020 [-0.010, 0.050] | -0.030 [-0.070, 0.010] |" in rows["gat"]
