"""Every branch of every verdict (F1..F8: reproduced, not reproduced, inconclusive, not testable), reached by
feeding synthetic per-protein x seed tables through the findings stage's own functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from params_helpers import default_params
from protalign.analysis import findings, properties
from protalign.analysis import verdicts as V
from protalign.analysis.evidence import Archive, Matrix, seeds_path
from protalign.analysis.stats import Interval
from protalign.paths import Paths

R, NR, INC, NT = V.REPRODUCED, V.NOT_REPRODUCED, V.INCONCLUSIVE, V.NOT_TESTABLE


def _params(llms=("tiny-1m",), gdms=("gearnet_edge", "gat"), depths=(1, 2, 3), methods=("cluster", "random")):
    return default_params(
        embed_text={"llms": llms}, structure={"gdms": gdms}, align={"llms": ()},
        analysis={"methods": methods, "seeds": (0, 1, 2), "depths": depths, "n_boot": 300},
    )  # fmt: skip


def _long(gain: float, noise: float, n: int, seed: int, methods=("cluster", "random"), control=True):
    """Long archive rows: rr = control + gain + noise per protein x seed; clusters of two proteins."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, g in (methods.items() if isinstance(methods, dict) else ((m, gain) for m in methods)):
        for s in (0, 1, 2):
            ctrl = 0.1 + 0.01 * rng.normal(size=n)
            rr = ctrl + g + noise * rng.normal(size=n)
            rows.append(pd.DataFrame({
                "id": [f"P{i:03d}" for i in range(n)], "method": method, "seed": s, "fold": 0,
                "cluster": [f"C{i // 2}" if method == "cluster" else f"P{i:03d}" for i in range(n)],
                "rr": rr, "rr_control": ctrl if control else np.nan, "score": rr, "matched": 0.0,
            }))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def _write(paths: Paths, llm: str, gdm: str, table: pd.DataFrame, variant: str = "") -> None:
    path = seeds_path(paths, llm, gdm, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


# ----------------------------------------------------------------------------------------------------------------
# rules


def test_rules_levels_and_single_interval_branches():
    r = V.Rules(0.01, 0.1, 0.05, "holm")
    assert r.level(1) == pytest.approx(0.95) and r.level(4) == pytest.approx(0.9875)
    assert V.Rules(0.01, 0.1, 0.05, "none").level(4) == pytest.approx(0.95)
    iv = lambda e, lo, hi: Interval(e, lo, hi, 0.95, 10, 10)  # noqa: E731
    assert V.effect_one(iv(0.05, 0.02, 0.08), 0.01) == R
    assert V.effect_one(iv(0.005, 0.001, 0.009), 0.01) == NR  # positive but below min_effect
    assert V.effect_one(iv(0.005, 0.001, 0.02), 0.01) == INC  # CI low > 0, estimate < min_effect
    assert V.null_one(iv(0.0, -0.05, 0.05), 0.1) == R
    assert V.null_one(iv(0.3, 0.1, 0.5), 0.1) == NR and V.null_one(iv(-0.3, -0.5, -0.1), 0.1) == NR
    assert V.null_one(iv(0.08, 0.02, 0.125), 0.1) == INC  # the "Holm-significant rho 0.125" case
    assert V.judge_effect([], 0.01) == (NT, None)
    assert V.judge_effect([iv(0.05, 0.02, 0.08), iv(0.0, -0.1, 0.005)], 0.01) == (NR, 1)
    assert V.diminishing_one(iv(0.1, 0.05, 0.15), iv(0.0, -0.02, 0.005), 0.01) == R
    assert V.diminishing_one(iv(0.0, -0.01, 0.005), iv(0.0, -0.02, 0.005), 0.01) == NR
    assert V.diminishing_one(iv(0.1, 0.05, 0.15), iv(0.05, 0.02, 0.08), 0.01) == NR
    assert V.diminishing_one(iv(0.1, 0.05, 0.15), iv(0.0, -0.05, 0.05), 0.01) == INC
    text = V.rules_text(r)
    assert "min_effect 0.01" in text and "(-0.1, 0.1)" in text and "holm" in text


def test_permutation_test_exact_and_monte_carlo():
    x = np.log([32, 64, 128, 256, 512, 1024])
    up = V.stratified_permutation_test([(x, np.arange(6.0))], seed=0)
    assert up.exact and up.n_permutations == 720 and up.p_increase == pytest.approx(1 / 720)
    assert V.judge_permutation(up, 0.05) == R
    down = V.stratified_permutation_test([(x, -np.arange(6.0))], seed=0)
    assert V.judge_permutation(down, 0.05) == NR and down.p_decrease == pytest.approx(1 / 720)
    mc = V.stratified_permutation_test([(x, np.arange(6.0)), (x, np.arange(6.0))], seed=0, n_monte_carlo=5000)
    assert not mc.exact and mc.n_permutations == 5000 and mc.statistic == pytest.approx(2.0)
    assert mc.p_increase == pytest.approx(1 / 5001)  # no shuffle of 518,400 reaches the observed sum
    again = V.stratified_permutation_test([(x, np.arange(6.0)), (x, np.arange(6.0))], seed=0, n_monte_carlo=5000)
    assert again == mc  # seeded


# ----------------------------------------------------------------------------------------------------------------
# F1 / F2 / F8: paired comparisons of per-protein rr gain over the control


@pytest.mark.parametrize(
    ("good", "bad", "noise", "expect"),
    [(0.2, 0.0, 0.02, R), (0.0, 0.2, 0.02, NR), (0.0, 0.0, 0.15, INC)],
)
def test_f1_branches(tmp_path, good, bad, noise, expect):
    paths, params = Paths(tmp_path), _params()
    _write(paths, "tiny-1m", "gearnet_edge", _long(good, noise, 60, 1))
    _write(paths, "tiny-1m", "gat", _long(bad, noise, 60, 2))
    f = findings.finding_gdm_kind(params, Archive(paths))
    assert f.verdict == expect, f.deciding
    assert f.leaky.startswith(expect)  # the random rows carry the same effect here
    assert "tiny-1m__gearnet_edge - tiny-1m__gat" in f.deciding


def test_f1_cluster_decides_and_random_is_shown_beside(tmp_path):
    paths, params = Paths(tmp_path), _params()
    _write(paths, "tiny-1m", "gearnet_edge", _long(0, 0.02, 60, 1, methods={"cluster": 0.0, "random": 0.3}))
    _write(paths, "tiny-1m", "gat", _long(0, 0.02, 60, 2, methods={"cluster": 0.0, "random": 0.0}))
    f = findings.finding_gdm_kind(params, Archive(paths))
    assert f.verdict == NR and f.leaky.startswith(R)  # homology look-up wins only on random folds


def test_f1_not_testable(tmp_path):
    paths = Paths(tmp_path)
    f = findings.finding_gdm_kind(_params(gdms=("gat",)), Archive(paths))
    assert f.verdict == NT and "graph+3D" in f.deciding
    f = findings.finding_gdm_kind(_params(), Archive(paths))  # old crossval outputs: no per-seed archive
    assert f.verdict == NT and "no per-seed archive" in f.deciding and "rerun crossval" in f.deciding
    _write(paths, "tiny-1m", "gearnet_edge", _long(0.2, 0.02, 20, 1, control=False))
    _write(paths, "tiny-1m", "gat", _long(0.0, 0.02, 20, 2, control=False))
    f = findings.finding_gdm_kind(_params(), Archive(paths))
    assert f.verdict == NT and "rr_control" in f.deciding


@pytest.mark.parametrize(
    ("big", "small", "noise", "expect"), [(0.2, 0.0, 0.02, R), (0.0, 0.2, 0.02, NR), (0.0, 0.0, 0.15, INC)]
)
def test_f2_branches(tmp_path, big, small, noise, expect):
    paths, params = Paths(tmp_path), _params(llms=("tiny-1m", "tiny-10m"), gdms=("gat",))
    _write(paths, "tiny-10m", "gat", _long(big, noise, 60, 1))
    _write(paths, "tiny-1m", "gat", _long(small, noise, 60, 2))
    assert findings.finding_llm_size(params, Archive(paths)).verdict == expect


def test_f2_not_testable(tmp_path):
    f = findings.finding_llm_size(_params(llms=("tiny-1m",)), Archive(Paths(tmp_path)))
    assert f.verdict == NT and ">= 2 base LLMs" in f.deciding


@pytest.mark.parametrize(
    ("tuned", "base", "noise", "expect"), [(0.2, 0.0, 0.02, R), (0.0, 0.2, 0.02, NR), (0.0, 0.0, 0.15, INC)]
)
def test_f8_branches(tmp_path, tuned, base, noise, expect):
    paths, params = Paths(tmp_path), _params(llms=("tiny-1m", "tiny-1m+lora"), gdms=("gat",))
    _write(paths, "tiny-1m+lora", "gat", _long(tuned, noise, 60, 1))
    _write(paths, "tiny-1m", "gat", _long(base, noise, 60, 2))
    assert findings.finding_finetune(params, Archive(paths)).verdict == expect


def test_f8_not_testable(tmp_path):
    f = findings.finding_finetune(_params(llms=("tiny-1m",)), Archive(Paths(tmp_path)))
    assert f.verdict == NT and "+lora" in f.deciding


# ----------------------------------------------------------------------------------------------------------------
# F3 / F4 / F5: property correlations with the per-protein rr gain (the properties stage's own functions)


def _property_world(n: int, gain_of, seed: int = 0, constant: str | None = None):
    rng = np.random.default_rng(seed)
    props = pd.DataFrame({
        "id": [f"P{i:04d}" for i in range(n)], "length": rng.integers(30, 800, n).astype(float),
        "n_chains": rng.integers(1, 8, n).astype(float), "name_count": rng.integers(1, 5, n).astype(float),
        "cluster_30_size": rng.integers(1, 40, n).astype(float),
    })  # fmt: skip
    if constant:
        props[constant] = 1.0
    base = np.asarray(gain_of(props), dtype=float)
    values = pd.DataFrame({s: base + 0.05 * rng.normal(size=n) for s in range(3)}, index=props["id"])
    clusters = pd.Series([f"C{i // 2}" for i in range(n)], index=props["id"])
    return props, {"tiny-1m__gat": Matrix(values, clusters)}


def _f345(params, props, gains):
    cols = ["length", "n_chains", "name_count", "cluster_30_size"]
    corr = properties.correlate_properties(props, gains, cols, params)
    return dict(zip(("F3", "F4", "F5"), findings.finding_properties(params, corr), strict=True))


def _z(col):
    return lambda p: (p[col] - p[col].mean()) / p[col].std()


@pytest.mark.parametrize("key,col", [("F3", "length"), ("F5", "n_chains")])
def test_no_effect_findings_branches(key, col):
    params = _params(gdms=("gat",))
    noise = lambda p: 0.0 * p["length"]  # noqa: E731
    assert _f345(params, *_property_world(1500, noise))[key].verdict == R  # CI inside the band
    assert _f345(params, *_property_world(400, _z(col)))[key].verdict == NR  # strong rho: CI outside
    assert _f345(params, *_property_world(40, noise))[key].verdict == INC  # few proteins: CI straddles
    f = _f345(params, *_property_world(100, noise, constant=col))[key]
    assert f.verdict == NT and "does not vary" in f.deciding


def test_f4_rarity_branches():
    params = _params(gdms=("gat",))
    f4 = _f345(params, *_property_world(400, _z("cluster_30_size")))["F4"]
    assert f4.verdict == R and "cluster size" in f4.claim
    assert any("molecule name" in str(b.content) for b in f4.body)  # the second, labelled measure
    neg = lambda p: -_z("cluster_30_size")(p)  # noqa: E731
    assert _f345(params, *_property_world(400, neg))["F4"].verdict == NR
    assert _f345(params, *_property_world(40, lambda p: 0.0 * p["length"]))["F4"].verdict == INC
    assert _f345(params, *_property_world(100, _z("length"), constant="cluster_30_size"))["F4"].verdict == NT


def test_properties_without_rr_are_not_testable(tmp_path):
    params = _params(gdms=("gat",))
    props, _ = _property_world(30, _z("length"))
    out = _f345(params, props, {"tiny-1m__gat": "no per-seed archive reports/cv/x (rerun crossval)"})
    assert all(f.verdict == NT and "rerun crossval" in f.deciding for f in out.values())


# ----------------------------------------------------------------------------------------------------------------
# F6: one stratified permutation test over widths at fixed depth


def _sweep(paths: Paths, scores, dims=(32, 64, 128, 256, 512, 1024), depth=2, llm="tiny-1m"):
    rows = [{"dim": d, "hidden_dims": str([d // depth] * depth), "llm": llm, "alignment_score": s, "context": "c0"}
            for d, s in zip(dims, scores, strict=True)]  # fmt: skip
    out = paths.reports / "sweeps" / "gdm_dim.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)


@pytest.mark.parametrize(
    ("scores", "expect"),
    [((0.1, 0.2, 0.3, 0.4, 0.5, 0.6), R), ((0.6, 0.5, 0.4, 0.3, 0.2, 0.1), NR), ((0.3, 0.1, 0.5, 0.2, 0.6, 0.4), INC)],
)
def test_f6_branches(tmp_path, scores, expect):
    paths = Paths(tmp_path)
    _sweep(paths, scores)
    f = findings.finding_gdm_dim(_params(), paths)
    assert f.verdict == expect and "exact over all 720" in f.deciding


def test_f6_not_testable(tmp_path):
    paths = Paths(tmp_path)
    f = findings.finding_gdm_dim(_params(), paths)
    assert f.verdict == NT and "protalign sweeps" in f.deciding
    _sweep(paths, (0.1, 0.2, 0.3, 0.4), dims=(32, 64, 128, 256))
    f = findings.finding_gdm_dim(_params(), paths)
    assert f.verdict == NT and ">= 6 widths" in f.deciding and "4 width(s)" in f.deciding


def test_f6_strata_keep_depth_fixed():
    table = pd.DataFrame({"dim": [32, 64, 128, 256, 512, 1024] * 2, "llm": "a", "context": "c",
                          "hidden_dims": ["[1]"] * 6 + ["[1, 1]"] * 6, "alignment_score": np.arange(12.0)})  # fmt: skip
    score, kept, skipped = findings.gdm_dim_strata(table)
    assert score == "alignment_score" and len(kept) == 2 and not skipped


# ----------------------------------------------------------------------------------------------------------------
# F7: diminishing returns over head depth


def _depths(paths, means, noise=0.02, archive=True):
    for d, mean in zip((1, 2, 3), means, strict=True):
        table = _long(mean, noise, 60, d, control=False)
        if archive:
            _write(paths, "tiny-1m", "gat", table, f"L{d}")
        else:
            seed_mean = table.groupby(["id", "method", "cluster"], as_index=False)["score"].mean()
            path = paths.cv_per_protein("tiny-1m", "gat", f"L{d}")
            path.parent.mkdir(parents=True, exist_ok=True)
            seed_mean.to_csv(path, index=False)


@pytest.mark.parametrize(
    ("means", "noise", "expect"),
    [((0.1, 0.2, 0.2), 0.02, R), ((0.1, 0.1, 0.1), 0.01, NR), ((0.1, 0.2, 0.3), 0.02, NR), ((0.1, 0.11, 0.11), 0.2, INC)],
)
def test_f7_branches(tmp_path, means, noise, expect):
    paths = Paths(tmp_path)
    _depths(paths, means, noise)
    f = findings.finding_depth(_params(gdms=("gat",)), Archive(paths), [("tiny-1m", "gat")])
    assert f.verdict == expect, f.deciding


def test_f7_falls_back_to_seed_means_and_is_not_testable_without_depth_3(tmp_path):
    paths = Paths(tmp_path)
    _depths(paths, (0.1, 0.2, 0.2), archive=False)
    f = findings.finding_depth(_params(gdms=("gat",)), Archive(paths), [("tiny-1m", "gat")])
    assert f.verdict == R and "no per-seed archive" in f.body[0].content["measure"].iloc[0]
    f = findings.finding_depth(_params(gdms=("gat",), depths=(1, 2)), Archive(paths), [("tiny-1m", "gat")])
    assert f.verdict == NT and "1, 2 and 3" in f.deciding


# ----------------------------------------------------------------------------------------------------------------
# the page: summary first, and the README's verdicts block still reads it


def test_page_opens_with_the_summary_and_feeds_the_readme(tmp_path):
    from protalign import docs_render
    from protalign.analysis.findings_page import Finding, page, table1_beside
    from protalign.analysis.findings_render import Block, render_md

    params = _params()
    found = [Finding("F1", "RQ1", "graph+3D GDMs align better", R, "a - b: 0.1 [0.05, 0.15] (0.95 CI)",
                     [Block("p", "evidence")], "reproduced: a - b: 0.3 [0.2, 0.4]"),
             Finding("F6", "RQ4", "wider is better", NT, "no sweep", [], "— (a test-split sweep: no folds)")]  # fmt: skip
    cv = {"tiny-1m__gearnet_edge": {"headline_gain": 0.05, "headline_ci_low": 0.01, "headline_ci_high": 0.09,
                                    "methods": {"cluster": {"alignment_score": {"estimate": 0.2}}}}}  # fmt: skip
    t1 = table1_beside(params, cv, "cluster")
    assert t1.loc[0, "paper, LLaMA-3.1-8B: score"] == 0.3211  # GearNet family, the paper's LLM, labelled
    assert t1.loc[0, "ours, tiny-1m: headline rr gain [CI]"] == "0.0500 [0.0100, 0.0900]"
    assert "rerun crossval" in t1.loc[1, "ours, tiny-1m: headline rr gain [CI]"]  # gat pair has no headline
    ranked = pd.DataFrame({"LLM": ["tiny-1m"], "rank": [1], "encoder": ["gearnet_edge"]})
    md = render_md(page(params, found, t1, [Block("h2", "RQ2: other")], 90, ranked))
    summary = md.split("## F1")[0]
    assert "| F1 (RQ1) | graph+3D GDMs align better | **reproduced** | a - b: 0.1 [0.05, 0.15]" in summary
    assert "Verdict rules" in summary and "paper, Gemma2-2B" in summary
    (tmp_path / "findings.md").write_text(md)
    rows = docs_render.render_verdicts(tmp_path, "findings.md")
    assert "| F1 | RQ1 | graph+3D GDMs align better | **reproduced** |" in rows
    assert "| F6 | RQ4 | wider is better | **not testable here** |" in rows
