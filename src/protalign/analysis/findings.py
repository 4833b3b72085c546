"""`findings` stage: the study's eight findings, each with our evidence, interval and verdict.

Reads only stage outputs (CV metrics and per-protein scores, head-depth CV, property correlations, the primary
split's per-protein tables) plus, when present, the sweep summaries under reports/sweeps/ (written by a command
outside the DAG). Verdicts: "reproduced" / "not reproduced" only when the intervals say so (Bonferroni-widened
when several comparisons make one finding), "inconclusive" when they do not, "not testable here" with the reason
when the run lacks what the finding needs. Writes reports/findings.md, findings.html (plots embedded),
alignment_matrix.csv (+ heatmaps) and table1.csv (the study's Table 1 beside ours).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from protalign.analysis import plots, stats
from protalign.analysis.findings_render import Block, render_html, render_md
from protalign.analysis.properties import read_cv_scores
from protalign.analysis.report import pairs
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import read_json, write_text

# Table 1 of the study (alignment score, test split): GDM family -> (Gemma2-2B, LLaMA-3.1-8B, LLaMA-3.1-70B)
STUDY_LLMS = ("gemma2-2b", "llama31-8b", "llama31-70b")
STUDY_TABLE1 = {
    "GearNet": (0.2958, 0.3211, 0.3515),
    "GAT": (-0.0533, -0.0700, -0.0610),
    "GVP": (0.0774, 0.0965, 0.1408),
    "ScanNet": (0.3223, 0.3375, 0.3856),
}
GDM_FAMILY = {
    "gearnet_edge": "GearNet",
    "gearnet": "GearNet",
    "gat": "GAT",
    "gvp": "GVP",
    "scannet": "ScanNet",
}
GRAPH_AND_3D = {"GearNet", "ScanNet"}  # the study's "graph + 3D structure" GDMs
FINETUNED = re.compile(r"^(?P<base>.+?)[-_+](ft|lora|finetuned)$")
NULL_BAND = 0.3  # |rho| the CI must stay within for a "no effect" finding to count as reproduced


def llm_size(name: str) -> float | None:
    """Parameter count from a registry name ('llama31-8b' -> 8e9, 'smollm2-135m' -> 1.35e8); None if absent."""
    m = re.search(r"(\d+(?:\.\d+)?)([mb])(?![a-z])", name.lower().split("-", 1)[-1])
    return float(m.group(1)) * (1e6 if m.group(2) == "m" else 1e9) if m else None


def _diff_verdict(intervals: list[stats.Interval], expect_positive: bool = True) -> str:
    if not intervals:
        return "not testable here"
    sign = 1 if expect_positive else -1
    if all(sign * iv.low > 0 for iv in intervals):
        return "reproduced"
    if any(sign * iv.high < 0 for iv in intervals):
        return "not reproduced"
    return "inconclusive"


def _compare(wide: pd.DataFrame, better: str, worse: str, params: Params, m: int) -> stats.Interval:
    a = params.analysis
    ci = stats.bonferroni_ci(a.ci, m)
    return stats.paired_difference_ci(wide[better], wide[worse], n_boot=a.n_boot, ci=ci, seed=a.seed)


def _comparisons(params: Params, wide: pd.DataFrame, todo: list[tuple[str, str]]) -> tuple[list, list[dict]]:
    ivs, rows = [], []
    for better, worse in todo:
        iv = _compare(wide, better, worse, params, len(todo))
        ivs.append(iv)
        rows.append({"expected better": better, "than": worse, "mean difference [CI]": iv.fmt(4), "n": iv.n})
    return ivs, rows


def finding_gdm_kind(params: Params, wide: pd.DataFrame) -> list[Block]:
    claim = (
        "F1 (RQ1): GDMs with both graph and 3D information (GearNet, ScanNet) align better than GAT and GVP."
    )
    todo = []
    for llm in params.pair_llms():
        fam = {g: GDM_FAMILY.get(g) for g in params.structure.gdms}
        good = [g for g, f in fam.items() if f in GRAPH_AND_3D]
        rest = [g for g, f in fam.items() if f and f not in GRAPH_AND_3D]
        todo += [(pair_id(llm, g), pair_id(llm, o)) for g in good for o in rest]
    if not todo:
        return _untestable(
            claim, f"needs a graph+3D GDM and another GDM; params have {list(params.structure.gdms)}"
        )
    ivs, rows = _comparisons(params, wide, todo)
    return _section(claim, _diff_verdict(ivs), [Block("table", pd.DataFrame(rows))])


def finding_llm_size(params: Params, wide: pd.DataFrame) -> list[Block]:
    claim = "F2 (RQ1): larger LLMs align better."
    base = [m for m in params.pair_llms() if not FINETUNED.match(m) and llm_size(m) is not None]
    ordered = sorted(base, key=llm_size)
    todo = [
        (pair_id(big, g), pair_id(small, g))
        for g in params.structure.gdms
        for small, big in zip(ordered[:-1], ordered[1:], strict=True)
        if llm_size(big) > llm_size(small)
    ]
    if not todo:
        return _untestable(
            claim, f"needs >= 2 base LLMs of different sizes; params have {list(params.pair_llms())}"
        )
    ivs, rows = _comparisons(params, wide, todo)
    return _section(claim, _diff_verdict(ivs), [Block("table", pd.DataFrame(rows))])


def _property_finding(claim: str, corr: pd.DataFrame, prop: str, effect: bool, params: Params) -> list[Block]:
    sub = corr[corr["property"] == prop]
    if sub.empty or sub["rho"].isna().all():
        return _untestable(claim, f"'{prop}' does not vary over the scored proteins (or is missing)")
    sig = sub["p_adjusted"] < 1 - params.analysis.ci
    if effect:  # common proteins (high count) align better: rho > 0
        verdict = (
            "reproduced"
            if ((sub["rho"] > 0) & sig).all()
            else (
                "not reproduced"
                if ((sub["rho"] < 0) & sig).any() or (sub["ci_high"].abs() < 0.1).all()
                else "inconclusive"
            )
        )
    else:
        within = (sub["ci_low"] > -NULL_BAND) & (sub["ci_high"] < NULL_BAND)
        verdict = (
            "not reproduced" if sig.any() else ("reproduced" if (within & ~sig).all() else "inconclusive")
        )
    table = sub[["pair", "n", "rho", "ci_low", "ci_high", "p", "p_adjusted"]].round(4)
    return _section(claim, verdict, [Block("table", table), Block("img", "properties/properties.png")])


def finding_depth(params: Params, paths: Paths) -> list[Block]:
    claim = "F7 (RQ5): a two-layer structure head aligns best (better than one or three layers)."
    depths = list(params.analysis.depths)
    if 2 not in depths or len(depths) < 2:
        return _untestable(claim, f"analysis.depths {depths} must include 2 and another depth")
    rows, ivs = [], []
    m = len(pairs(params)) * (len(depths) - 1)
    for llm, gdm in pairs(params):
        per = {d: pd.read_csv(paths.cv_per_protein(llm, gdm, f"L{d}"), dtype={"id": str}).set_index("id")["score"]
               for d in depths}  # fmt: skip
        wide = pd.concat(per, axis=1, join="inner")
        for d in depths:
            if d != 2:
                iv = _compare(wide, 2, d, params, m)
                ivs.append(iv)
                rows.append(
                    {
                        "pair": pair_id(llm, gdm),
                        "2 layers minus": f"{d} layer(s)",
                        "difference [CI]": iv.fmt(4),
                    }
                )
    return _section(
        claim, _diff_verdict(ivs), [Block("table", pd.DataFrame(rows)), Block("img", "depth.png")]
    )


def finding_finetune(params: Params, paths: Paths) -> list[Block]:
    claim = (
        "F8 (RQ6): fine-tuning the LLM on protein text improves alignment (judged on the primary test split)."
    )
    named = [(m, FINETUNED.match(m).group("base")) for m in params.pair_llms() if FINETUNED.match(m)]
    lora = [
        (f"{b}+lora", b) for b in getattr(getattr(params, "finetune", None), "llms", ())
    ]  # finetune stage
    tuned = [
        (t, b)
        for t, b in dict.fromkeys(named + lora)
        if b in params.pair_llms()
        and all(
            (paths.root / "reports" / "per_protein" / f"{pair_id(t, g)}.csv").exists()
            for g in params.structure.gdms
        )
    ]
    if not tuned:
        return _untestable(
            claim,
            "no fine-tuned LLM with evaluated pairs beside its base: add '<base>+lora' (finetune stage) or "
            "'<base>-ft' to embed_text.llms so align/evaluate score it on the primary test split",
        )
    todo = [(pair_id(t, g), pair_id(b, g)) for t, b in tuned for g in params.structure.gdms]
    per = {p: pd.read_csv(paths.root / "reports" / "per_protein" / f"{p}.csv", dtype={"id": str}).set_index("id")
           ["matched_cosine"] for p in {x for pr in todo for x in pr}}  # fmt: skip
    ivs, rows = _comparisons(params, pd.concat(per, axis=1, join="inner"), todo)
    return _section(claim, _diff_verdict(ivs), [Block("p", "Per-protein matched cosine, primary test split."),
                                                Block("table", pd.DataFrame(rows))])  # fmt: skip


def finding_gdm_dim(params: Params, paths: Paths) -> list[Block]:
    """Judged PER LLM: each LLM's scores are on their own scale, so pooling would mix widths with text models.

    A series is one LLM under otherwise identical params (`context` of gdm_dim.csv); each series with >= 3 widths
    gets a Spearman test, corrected across series (analysis.correction).
    """
    claim = "F6 (RQ4): a wider GDM embedding (retrained GearNet) aligns better."
    sweep = paths.reports / "sweeps" / "gdm_dim.csv"
    if not sweep.exists():
        return _untestable(
            claim,
            f"{sweep.relative_to(paths.root)} is absent: the GDM-dimension sweep retrains "
            "GearNet, so it runs as queued experiments summarised by `protalign sweeps` "
            "(README, 'Experiments and findings')",
        )
    table = pd.read_csv(sweep)
    keys = ["llm", "context"] if "context" in table else ["llm"]
    rows = []
    for key, grp in table.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        n_dims = grp["dim"].nunique()
        rho, p = (
            stats.correlation(grp["dim"], grp["alignment_score"], "spearman")
            if n_dims >= 3
            else (np.nan,) * 2
        )
        rows.append({**dict(zip(keys, key, strict=True)), "points": len(grp), "widths": n_dims,
                     "rho": rho, "p": p})  # fmt: skip
    res = pd.DataFrame(rows)
    res["p_adjusted"] = stats.adjust_pvalues(res["p"], params.analysis.correction)
    tested = res[res["widths"] >= 3]
    if tested.empty:
        return _untestable(claim, f"no LLM has >= 3 GearNet widths in {sweep.name} ({len(table)} point(s))")
    alpha = 1 - params.analysis.ci
    sig = tested["p_adjusted"] < alpha
    verdict = (
        "reproduced"
        if ((tested["rho"] > 0) & sig).all()
        else ("not reproduced" if ((tested["rho"] < 0) & sig).any() else "inconclusive")
    )
    note = (f"Judged per LLM (series: one LLM, all other params equal), Spearman rho(width, test-split alignment "
            f"score), {params.analysis.correction}-corrected across {len(tested)} series; sweep points from "
            "`protalign sweeps` (reports/sweeps/README.md names the experiments).")  # fmt: skip
    body = [Block("p", note), Block("table", res.round(4)), Block("table", table)]
    if (paths.reports / "sweeps" / "gdm_dim.png").exists():
        body.append(Block("img", "sweeps/gdm_dim.png"))
    return _section(claim, verdict, body)


def _section(claim: str, verdict: str, body: list[Block]) -> list[Block]:
    return [Block("h2", claim), Block("p", f"**Verdict: {verdict}.**"), *body]


def _untestable(claim: str, why: str) -> list[Block]:
    return _section(claim, "not testable here", [Block("p", why)])


def alignment_matrix(params: Params, paths: Paths, cv: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for llm, gdm in pairs(params):
        test = read_json(paths.metrics(llm, gdm)) if paths.metrics(llm, gdm).exists() else {}
        for method, m in cv[pair_id(llm, gdm)]["methods"].items():
            s, b = m["alignment_score"], m["baseline_alignment_score"]
            rows.append({"gdm": gdm, "llm": llm, "method": method, "score": s["estimate"], "ci_low": s["ci_low"],
                         "ci_high": s["ci_high"], "seed_sd": m["score_seed_sd"], "baseline": b["estimate"],
                         "test_split_score": test.get("alignment_score", np.nan), "n": s["n"]})  # fmt: skip
    return pd.DataFrame(rows)


def table1(matrix: pd.DataFrame, method: str) -> pd.DataFrame:
    rows = []
    for _, r in matrix[matrix["method"] == method].iterrows():
        fam = GDM_FAMILY.get(r["gdm"])
        study = STUDY_TABLE1[fam][STUDY_LLMS.index(r["llm"])] if fam and r["llm"] in STUDY_LLMS else np.nan
        rows.append({"gdm": r["gdm"], "llm": r["llm"], "study": study, "ours_test_split": r["test_split_score"],
                     "ours_cv": r["score"], "ours_cv_ci": f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]"})  # fmt: skip
    return pd.DataFrame(rows)


def run(params: Params, paths: Paths) -> list[Block]:
    out = paths.reports
    cv = {pair_id(llm, gdm): read_json(paths.cv_metrics(llm, gdm)) for llm, gdm in pairs(params)}
    primary = params.split.method
    matrix = alignment_matrix(params, paths, cv)
    write_text(
        out / "alignment_matrix.csv", matrix.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    )
    prim = matrix[matrix["method"] == primary]
    for col, name in (("score", "alignment_matrix.png"), ("baseline", "alignment_matrix_baseline.png")):
        grid = prim.pivot(index="gdm", columns="llm", values=col).reindex(
            index=list(params.structure.gdms), columns=list(params.pair_llms())
        )
        plots.heatmap(grid, out / name, f"{'trained' if col == 'score' else 'untrained'} heads, CV ({primary})",
                      "alignment score")  # fmt: skip
    t1 = table1(matrix, primary)
    write_text(out / "table1.csv", t1.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    depth = []
    for llm, gdm in pairs(params):
        for d in params.analysis.depths:
            s = read_json(paths.cv_metrics(llm, gdm, f"L{d}"))["methods"][primary]["alignment_score"]
            depth.append({"pair": pair_id(llm, gdm), "layers": d, "score": s["estimate"], "ci_low": s["ci_low"],
                          "ci_high": s["ci_high"]})  # fmt: skip
    depth_table = pd.DataFrame(depth)
    write_text(out / "depth.csv", depth_table.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    plots.depth_lines(depth_table, out / "depth.png")

    wide = pd.concat(read_cv_scores(params, paths, primary, column="score"), axis=1, join="inner")
    corr = pd.read_csv(out / "properties" / "correlations.csv")
    n = len(wide)
    blocks = [
        Block("h1", "Findings: LLM x GDM alignment"),
        Block(
            "p",
            f"{len(pairs(params))} pair(s) ({', '.join(params.pair_llms())} x "
            f"{', '.join(params.structure.gdms)}); pairs are compared on the {n} proteins every pair scored (each "
            f"pair's own count and losses: `n_proteins`, `n_lost` in metrics/cv); {params.analysis.folds}"
            f"-fold cross-validation of the heads (folds by `{primary}`; also {list(params.analysis.methods)}), "
            f"seeds {list(params.analysis.seeds)}, {params.analysis.ci:.0%} bootstrap intervals over "
            f"proteins (over MMseqs2 clusters under the cluster method), {params.analysis.correction} "
            "correction across tests. Few proteins give wide intervals: then the verdict is 'inconclusive'.",
        ),
        Block("h2", "Alignment matrix (CV) and the study's Table 1"),
        Block("table", matrix.round(4)),
        Block("img", "alignment_matrix.png"),
        Block("img", "alignment_matrix_baseline.png"),
        Block("table", t1.round(4)),
        Block(
            "p",
            "The study's numbers come from Gemma2-2B / LLaMA-3.1-8B / LLaMA-3.1-70B on 20,000 entries; a "
            "blank 'study' cell means the study had no such pair. Scaled down here: see params.yaml "
            "(model sizes, GDM widths, epochs, corpus size).",
        ),
        *finding_gdm_kind(params, wide),
        *finding_llm_size(params, wide),
        Block("h2", "RQ2: per-protein agreement between pairs"),
        *_rq2(paths),
        *_property_finding(
            "F3 (RQ3): sequence length does not affect alignment.", corr, "length", False, params
        ),
        *_property_finding(
            "F4 (RQ3): rare proteins align worse (rarity = entries sharing the cleaned molecule "
            "name; MMseqs2 cluster sizes in the properties table).",
            corr,
            "name_count",
            True,
            params,
        ),
        *_property_finding(
            "F5 (RQ3): the number of chains does not affect alignment.", corr, "n_chains", False, params
        ),  # fmt: skip
        *finding_gdm_dim(params, paths),
        *finding_depth(params, paths),
        *finding_finetune(params, paths),
    ]
    write_text(out / "findings.md", render_md(blocks))
    write_text(out / "findings.html", render_html(blocks, out))
    return blocks


def _rq2(paths: Paths) -> list[Block]:
    long = paths.reports / "correlations" / "pairs.csv"
    table = pd.read_csv(long)
    if table.empty:
        return [Block("p", "One pair only: no correlation between pairs to report.")]
    cols = [
        "pair_a",
        "pair_b",
        "n",
        "pearson",
        "pearson_ci_low",
        "pearson_ci_high",
        "pearson_p_adjusted",
        "spearman",
    ]
    return [Block("table", table[cols].round(4)), Block("img", "correlations/pearson.png")]
