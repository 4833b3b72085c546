"""`findings` stage: the study's eight findings, each with our evidence, its deciding interval and a verdict.

Every verdict is judged on the homology-aware folds (method "cluster"); the random folds are judged the same way
and shown beside, labelled homology-leaky. F1, F2, F8 compare per-protein reciprocal-rank gains over the
shuffled-pairing control (per protein x head seed, from the crossval archives); F3-F5 read the property
correlations (properties stage); F6 the GDM-width sweep (`protalign sweeps`); F7 the head_depth archives. The
rules are analysis/verdicts.py (params `analysis.verdicts`), printed on the page. A finding the run cannot
decide is "not testable here" with the reason. The page itself (summary first, details below) is
findings_page.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from protalign.analysis import plots, ranking, stats
from protalign.analysis import verdicts as V
from protalign.analysis.evidence import GAIN, Archive
from protalign.analysis.findings_page import (  # noqa: F401  (STUDY_*: re-exported)
    GDM_FAMILY,
    LEAKY_LABEL,
    STUDY_LLMS,
    STUDY_TABLE1,
    Finding,
    alignment_matrix,
    page,
    table1,
    table1_beside,
)
from protalign.analysis.findings_render import Block, render_html, render_md
from protalign.analysis.report import compared_pairs, pairs
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import read_json, write_text
from protalign.structure.references import compared_gdms

GRAPH_AND_3D = {"GearNet", "ScanNet"}  # the study's "graph + 3D structure" GDMs
FINETUNED = re.compile(r"^(?P<base>.+?)[-_+](ft|lora|finetuned)$")
Judged = tuple[str, str, list[Block]]  # verdict, deciding interval (or the reason), evidence blocks


def llm_size(name: str) -> float | None:
    """Parameter count from a registry name ('llama31-8b' -> 8e9, 'smollm2-135m' -> 1.35e8); None if absent."""
    m = re.search(r"(\d+(?:\.\d+)?)([mb])(?![a-z])", name.lower().split("-", 1)[-1])
    return float(m.group(1)) * (1e6 if m.group(2) == "m" else 1e9) if m else None


def judge(fn: Callable[[str], Judged], method: str) -> Judged:
    try:
        return fn(method)
    except V.NotTestable as why:
        return V.NOT_TESTABLE, str(why), []


def finding(params: Params, key: str, rq: str, claim: str, fn: Callable[[str], Judged], leaky: str = ""):
    """Judge `fn` on the cluster folds and, unless `leaky` says why not, on the random folds beside it."""
    methods = params.analysis.methods
    if V.VERDICT_METHOD in methods:
        verdict, deciding, body = judge(fn, V.VERDICT_METHOD)
    else:
        verdict, deciding, body = V.NOT_TESTABLE, "analysis.methods lacks 'cluster' (verdicts need it)", []
    side = leaky or "— (analysis.methods lacks 'random')"
    if not leaky and V.LEAKY_METHOD in methods:
        v, d, _ = judge(fn, V.LEAKY_METHOD)
        side = v if v == verdict == V.NOT_TESTABLE else f"{v}: {d}"
    return Finding(key, rq, claim, verdict, deciding, body, side)


def compare_pairs(params: Params, arch: Archive, method: str, todo: list[tuple[tuple, tuple]]) -> Judged:
    """Effect finding over paired comparisons (better pair, worse pair) of per-protein rr gain over control."""
    if not todo:
        raise V.NotTestable("no comparison")
    rules, a = V.Rules.of(params), params.analysis
    level = rules.level(len(todo))
    ivs, rows = [], []
    for better, worse in todo:
        diff = arch.matrix(*better, method, GAIN).minus(arch.matrix(*worse, method, GAIN))
        iv = diff.interval(level, a.n_boot, a.seed)
        ivs.append(iv)
        rows.append({"expected better": pair_id(*better), "than": pair_id(*worse),
                     "rr-gain difference [CI]": iv.fmt(4), "level": round(level, 4), "proteins": iv.n,
                     "units": iv.n_units, "seeds": diff.values.shape[1],
                     "comparison": V.effect_one(iv, rules.min_effect)})  # fmt: skip
    verdict, k = V.judge_effect(ivs, rules.min_effect)
    deciding = f"{rows[k]['expected better']} - {rows[k]['than']}: {ivs[k].fmt(4)} ({level:.4g} CI)"
    return verdict, deciding, [Block("table", pd.DataFrame(rows))]


def gdm_kind_todo(params: Params) -> list[tuple[tuple, tuple]]:
    fam = {g: GDM_FAMILY.get(g) for g in compared_gdms(params.structure)}  # reference encoders stay out
    good = [g for g, f in fam.items() if f in GRAPH_AND_3D]
    rest = [g for g, f in fam.items() if f and f not in GRAPH_AND_3D]
    return [((llm, g), (llm, o)) for llm in params.pair_llms() for g in good for o in rest]


def llm_size_todo(params: Params) -> list[tuple[tuple, tuple]]:
    base = sorted((m for m in params.pair_llms() if not FINETUNED.match(m) and llm_size(m)), key=llm_size)
    return [((big, g), (small, g)) for g in compared_gdms(params.structure)
            for small, big in zip(base[:-1], base[1:], strict=True) if llm_size(big) > llm_size(small)]  # fmt: skip


def finetune_todo(params: Params) -> list[tuple[tuple, tuple]]:
    llms = params.pair_llms()
    tuned = [(m, FINETUNED.match(m).group("base")) for m in llms if FINETUNED.match(m)]
    return [((t, g), (b, g)) for t, b in tuned if b in llms for g in compared_gdms(params.structure)]


def finding_gdm_kind(params: Params, arch: Archive) -> Finding:
    todo = gdm_kind_todo(params)

    def fn(method: str) -> Judged:
        if not todo:
            raise V.NotTestable(f"needs a graph+3D GDM and another GDM; params have {list(params.structure.gdms)}")
        return compare_pairs(params, arch, method, todo)

    claim = "GDMs with both graph and 3D information (GearNet, ScanNet) align better than GAT and GVP"
    return finding(params, "F1", "RQ1", claim, fn)


def finding_llm_size(params: Params, arch: Archive) -> Finding:
    todo = llm_size_todo(params)

    def fn(method: str) -> Judged:
        if not todo:
            raise V.NotTestable(f"needs >= 2 base LLMs of different sizes; params have {list(params.pair_llms())}")
        return compare_pairs(params, arch, method, todo)

    return finding(params, "F2", "RQ1", "larger LLMs align better", fn)


def finding_finetune(params: Params, arch: Archive) -> Finding:
    todo = finetune_todo(params)

    def fn(method: str) -> Judged:
        if not todo:
            raise V.NotTestable(
                "no fine-tuned LLM paired beside its base: add '<base>+lora' (finetune stage) or '<base>-ft' to "
                "align.llms so crossval scores it on the same folds")
        return compare_pairs(params, arch, method, todo)

    return finding(params, "F8", "RQ6", "fine-tuning the LLM on protein text improves alignment", fn)


def property_judged(corr: pd.DataFrame, prop: str, effect: bool, rules: V.Rules) -> Judged:
    """F3/F4/F5 from the properties stage's correlations (rho of the property with the per-protein rr gain)."""
    sub = corr[corr["property"] == prop]
    if sub.empty:
        raise V.NotTestable(f"no '{prop}' rows in reports/properties/correlations.csv")
    ok = sub[sub["rho"].notna() & sub["ci_low"].notna() & sub["ci_high"].notna()]
    if ok.empty:
        notes = list(sub["note"].dropna().unique()) if "note" in sub else []
        if notes:
            more = f" (and {len(notes) - 1} more pair(s) alike)" if len(notes) > 1 else ""
            raise V.NotTestable(f"{notes[0]}{more}")
        raise V.NotTestable(f"'{prop}' does not vary over the scored proteins")
    ivs = [stats.Interval(r.rho, r.ci_low, r.ci_high, r.ci_level, int(r.n), int(r.n_units))
           for r in ok.itertuples(index=False)]  # fmt: skip
    verdict, k = (V.judge_effect(ivs, rules.band_rho) if effect else V.judge_null(ivs, rules.band_rho))
    row = ok.iloc[k]
    deciding = f"{row['pair']}: rho {ivs[k].fmt(3)} ({row['ci_level']:.4g} CI)"
    cols = [c for c in ("pair", "property", "measure", "n", "n_units", "n_seeds", "rho", "ci_low", "ci_high",
                        "ci_level", "p", "p_adjusted") if c in sub]  # fmt: skip
    return verdict, deciding, [Block("table", sub[cols].round(4))]


def finding_properties(params: Params, corr: pd.DataFrame) -> list[Finding]:
    rules = V.Rules.of(params)
    size = f"cluster_{round(params.split.cluster_identity * 100)}_size"
    out = []
    for key, claim, prop, effect in (
        ("F3", "sequence length does not affect alignment", "length", False),
        ("F4", "rare proteins align worse (rarity = MMseqs2 cluster size)", size, True),
        ("F5", "the number of chains does not affect alignment", "n_chains", False),
    ):
        f = finding(params, key, "RQ3", claim, lambda m, p=prop, e=effect: property_judged(corr, p, e, rules),
                    leaky="— (the properties stage correlates the cluster folds only)")  # fmt: skip
        if key == "F4":  # the study's own measure, shown as a second, labelled one (not judged: names leak)
            names = corr[corr["property"] == "name_count"]
            f.body.append(Block("p", "Second measure, not judged (the molecule name is itself a look-up "
                                     "shortcut): rarity = entries sharing the cleaned molecule name."))
            f.body.append(Block("table", names.drop(columns=["correction"], errors="ignore").round(4)))
        f.body.append(Block("img", "properties/properties.png"))
        out.append(f)
    return out


def gdm_dim_strata(table: pd.DataFrame, min_widths: int = V.MIN_WIDTHS):
    """(score column, kept strata [(label, widths, scores)], skipped labels): series = LLM x sweep context x
    GearNet depth (len(hidden_dims)), so width varies at fixed depth; a stratum needs >= min_widths widths."""
    score = "headline_gain" if "headline_gain" in table and table["headline_gain"].notna().all() else "alignment_score"
    depth = table["hidden_dims"].map(lambda s: len(json.loads(s))) if "hidden_dims" in table else 0
    ctx = table["context"] if "context" in table else ""
    frame = table.assign(_depth=depth, _ctx=ctx)
    kept, skipped = [], []
    for (llm, c, d), grp in frame.groupby(["llm", "_ctx", "_depth"], sort=True):
        label = f"{llm} [{c}] depth {d}"
        if grp["dim"].nunique() >= min_widths:
            kept.append((label, np.log(grp["dim"].to_numpy(float)), grp[score].to_numpy(float)))
        else:
            skipped.append(f"{label}: {grp['dim'].nunique()} width(s)")
    return score, kept, skipped


def finding_gdm_dim(params: Params, paths: Paths) -> Finding:
    sweep = paths.reports / "sweeps" / "gdm_dim.csv"

    def fn(_method: str) -> Judged:
        if not sweep.exists():
            raise V.NotTestable(f"{sweep.relative_to(paths.root)} is absent: the GDM-width sweep retrains GearNet, "
                                "so it runs as queued experiments summarised by `protalign sweeps`")
        table = pd.read_csv(sweep)
        score, kept, skipped = gdm_dim_strata(table)
        if not kept:
            raise V.NotTestable(f"no series varies the width over >= {V.MIN_WIDTHS} widths at fixed depth "
                                f"({'; '.join(skipped) or 'no points'})")
        res = V.stratified_permutation_test([(x, y) for _, x, y in kept], seed=params.analysis.seed)
        verdict = V.judge_permutation(res, params.analysis.verdicts.alpha)
        how = (f"exact over all {res.n_permutations} within-stratum permutations" if res.exact
               else f"Monte Carlo, {res.n_permutations} seeded permutations")  # fmt: skip
        deciding = (f"sum of Spearman rho(log width, {score}) over {len(kept)} stratum/strata = "
                    f"{res.statistic:.3f}, one-sided p(increase) {res.p_increase:.4g}, "
                    f"p(decrease) {res.p_decrease:.4g} ({how})")
        note = f"Strata: {', '.join(k for k, _, _ in kept)}" + (f"; left out: {'; '.join(skipped)}" if skipped else "")
        body = [Block("p", note), Block("table", table)]
        if (paths.reports / "sweeps" / "gdm_dim.png").exists():
            body.append(Block("img", "sweeps/gdm_dim.png"))
        return verdict, deciding, body

    claim = "a wider GDM embedding (retrained GearNet) aligns better"
    return finding(params, "F6", "RQ4", claim, fn, leaky="— (a test-split sweep: no folds)")


def finding_depth(params: Params, arch: Archive, pairs: list[tuple[str, str]]) -> Finding:
    rules, a = V.Rules.of(params), params.analysis

    def fn(method: str) -> Judged:
        depths = set(a.depths)
        if not {1, 2, 3} <= depths:
            raise V.NotTestable(f"diminishing returns need head depths 1, 2 and 3; analysis.depths is {sorted(depths)}")
        level = rules.level(2 * len(pairs))
        rows, per_pair = [], []
        for llm, gdm in pairs:
            (m1, label), (m2, _), (m3, _) = (arch.depth_matrix(llm, gdm, method, d) for d in (1, 2, 3))
            g2 = m2.minus(m1).interval(level, a.n_boot, a.seed)
            g3 = m3.minus(m2).interval(level, a.n_boot, a.seed)
            per_pair.append((g2, g3))
            rows.append({"pair": pair_id(llm, gdm), "measure": label, "L2 - L1 [CI]": g2.fmt(4),
                         "L3 - L2 [CI]": g3.fmt(4), "level": round(level, 4),
                         "pair verdict": V.diminishing_one(g2, g3, rules.min_effect)})  # fmt: skip
        verdict = V.judge_diminishing(per_pair, rules.min_effect)
        pick = next((r for r in rows if r["pair verdict"] == verdict), rows[0])
        deciding = f"{pick['pair']}: L2 - L1 {pick['L2 - L1 [CI]']}, L3 - L2 {pick['L3 - L2 [CI]']}"
        return verdict, deciding, [Block("table", pd.DataFrame(rows)), Block("img", "depth.png")]

    claim = "a two-layer structure head aligns best (diminishing returns beyond two layers)"
    return finding(params, "F7", "RQ5", claim, fn)


def _depth_table(params: Params, paths: Paths, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    rows = []
    for llm, gdm in pairs:
        for d in params.analysis.depths:
            methods = read_json(paths.cv_metrics(llm, gdm, f"L{d}"))["methods"]
            method = V.VERDICT_METHOD if V.VERDICT_METHOD in methods else next(iter(methods))
            s = methods[method]["alignment_score"]
            rows.append({"pair": pair_id(llm, gdm), "layers": d, "method": method, "score": s["estimate"],
                         "ci_low": s["ci_low"], "ci_high": s["ci_high"]})  # fmt: skip
    return pd.DataFrame(rows)


def _rq2(paths: Paths) -> list[Block]:
    table = pd.read_csv(paths.reports / "correlations" / "pairs.csv")
    head = Block("h2", "RQ2: per-protein agreement between pairs")
    if table.empty:
        return [head, Block("p", "One pair only: no correlation between pairs to report.")]
    cols = [c for c in ("pair_a", "pair_b", "measure", "n", "pearson", "pearson_ci_low", "pearson_ci_high",
                        "pearson_p_adjusted", "spearman") if c in table]  # fmt: skip
    return [head, Block("table", table[cols].round(4)), Block("img", "correlations/pearson.png")]


def run(params: Params, paths: Paths) -> list[Block]:
    out = paths.reports
    prs = pairs(params)
    cv = {pair_id(llm, gdm): read_json(paths.cv_metrics(llm, gdm)) for llm, gdm in prs}
    method = V.VERDICT_METHOD if V.VERDICT_METHOD in params.analysis.methods else params.analysis.methods[0]
    matrix = alignment_matrix(params, paths, cv)
    write_text(out / "alignment_matrix.csv", matrix.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    prim = matrix[matrix["method"] == method]
    for col, name in (("score", "alignment_matrix.png"), ("baseline", "alignment_matrix_baseline.png")):
        grid = prim.pivot(index="gdm", columns="llm", values=col).reindex(
            index=list(params.structure.gdms), columns=list(params.pair_llms()))
        plots.heatmap(grid, out / name, f"{'trained' if col == 'score' else 'untrained'} heads, CV ({method})",
                      "alignment score")  # fmt: skip
    write_text(out / "table1.csv", table1(matrix, method).to_csv(index=False, float_format="%.4f",
                                                                  lineterminator="\n"))  # fmt: skip
    depth = _depth_table(params, paths, prs)
    write_text(out / "depth.csv", depth.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    plots.depth_lines(depth, out / "depth.png")
    arch = Archive(paths)
    corr = pd.read_csv(out / "properties" / "correlations.csv")
    f3, f4, f5 = finding_properties(params, corr)
    found = [finding_gdm_kind(params, arch), finding_llm_size(params, arch), f3, f4, f5,
             finding_gdm_dim(params, paths), finding_depth(params, arch, compared_pairs(params)), finding_finetune(params, arch)]
    shown = matrix.assign(method=matrix["method"].replace({V.LEAKY_METHOD: LEAKY_LABEL}))
    details = [*_rq2(paths), Block("h2", "Alignment matrix (CV, study score) and Table 1 per pair"),
               Block("table", shown.round(4)), Block("img", "alignment_matrix.png"),
               Block("img", "alignment_matrix_baseline.png"), Block("table", table1(matrix, method).round(4)),
               Block("p", "Scaled down here: see params.yaml (model sizes, GDM widths, epochs, corpus size).")]
    n = min((m["methods"][method]["n_proteins"] for m in cv.values() if method in m["methods"]), default=0)
    ranked = ranking.ranking_table(params, paths, cv)
    write_text(out / "ranking.csv", ranked.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    blocks = page(params, found, table1_beside(params, cv, method), details, n, ranking.shown(ranked))
    write_text(out / "findings.md", render_md(blocks))
    write_text(out / "findings.html", render_html(blocks, out))
    return blocks
