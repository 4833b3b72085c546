"""The findings page: a one-screen summary first (each finding, its homology-aware verdict, the deciding interval,
the random-fold verdict beside it, and the study's Table 1 per GDM beside our headline), the details below.

Our LLMs are not the study's (the study: Gemma2-2B, LLaMA-3.1-8B, LLaMA-3.1-70B on 20,000 entries), so the paper's
values are shown per GDM family beside ours, labelled as different LLMs; a number is put in one row only when the
LLM is the study's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from protalign.analysis import verdicts as V
from protalign.analysis.findings_render import Block
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import read_json

STUDY_LLMS = ("gemma2-2b", "llama31-8b", "llama31-70b")
STUDY_LLM_NAMES = ("Gemma2-2B", "LLaMA-3.1-8B", "LLaMA-3.1-70B")
STUDY_TABLE1 = {  # Table 1 of the study (alignment score, test split): GDM family -> one value per study LLM
    "GearNet": (0.2958, 0.3211, 0.3515),
    "GAT": (-0.0533, -0.0700, -0.0610),
    "GVP": (0.0774, 0.0965, 0.1408),
    "ScanNet": (0.3223, 0.3375, 0.3856),
}
GDM_FAMILY = {"gearnet_edge": "GearNet", "gearnet": "GearNet", "gat": "GAT", "gvp": "GVP", "scannet": "ScanNet"}
LEAKY_LABEL = "random (homology-leaky)"


@dataclass
class Finding:
    key: str  # F1 .. F8
    rq: str
    claim: str
    verdict: str  # judged on the cluster folds
    deciding: str  # the deciding interval (or why the finding is not testable)
    body: list[Block]
    leaky: str  # the same finding on random folds (homology-leaky), or why it is not shown


def _cell(iv: dict | None, digits: int = 4) -> str:
    if not iv:
        return ""
    return f"{iv['estimate']:.{digits}f} [{iv['ci_low']:.{digits}f}, {iv['ci_high']:.{digits}f}]"


def headline(m: dict) -> str:
    """The pair's headline (cluster-fold rr gain over the control, with interval) or why it is absent."""
    if "headline_gain" not in m:
        return "— (no headline_gain: rerun crossval)"
    return _cell({"estimate": m["headline_gain"], "ci_low": m["headline_ci_low"], "ci_high": m["headline_ci_high"]})


def study_score(m: dict, method: str) -> float:
    meth = m.get("methods", {}).get(method)
    return meth["alignment_score"]["estimate"] if meth else np.nan


def table1_beside(params: Params, cv: dict[str, dict], method: str) -> pd.DataFrame:
    """One row per GDM: the paper's Table 1 for its family (the paper's LLMs) beside ours (our LLMs)."""
    rows = []
    for gdm in params.structure.gdms:
        fam = GDM_FAMILY.get(gdm)
        row = {"GDM (family)": f"{gdm} ({fam or 'not in the study'})"}
        for name, value in zip(STUDY_LLM_NAMES, STUDY_TABLE1.get(fam, (np.nan,) * 3), strict=True):
            row[f"paper, {name}: score"] = value
        for llm in params.pair_llms():
            m = cv.get(pair_id(llm, gdm), {})
            row[f"ours, {llm}: headline rr gain [CI]"] = headline(m)
            row[f"ours, {llm}: study score (CV {method})"] = round(study_score(m, method), 4)
        rows.append(row)
    return pd.DataFrame(rows)


def alignment_matrix(params: Params, paths: Paths, cv: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for llm in params.pair_llms():
        for gdm in params.structure.gdms:
            test = read_json(paths.metrics(llm, gdm)) if paths.metrics(llm, gdm).exists() else {}
            for method, m in cv[pair_id(llm, gdm)]["methods"].items():
                s, b = m["alignment_score"], m["baseline_alignment_score"]
                rows.append({"gdm": gdm, "llm": llm, "method": method, "score": s["estimate"], "ci_low": s["ci_low"],
                             "ci_high": s["ci_high"], "seed_sd": m.get("score_seed_sd", np.nan),
                             "baseline": b["estimate"], "test_split_score": test.get("alignment_score", np.nan),
                             "n": s["n"]})  # fmt: skip
    return pd.DataFrame(rows)


def table1(matrix: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per pair: our scores beside the paper's for the GDM family (paper LLMs named per column); `study_same_llm`
    only where our LLM is one of the study's."""
    rows = []
    for _, r in matrix[matrix["method"] == method].iterrows():
        fam = GDM_FAMILY.get(r["gdm"])
        paper = STUDY_TABLE1.get(fam, (np.nan,) * 3)
        same = paper[STUDY_LLMS.index(r["llm"])] if r["llm"] in STUDY_LLMS else np.nan
        rows.append({"gdm": r["gdm"], "llm": r["llm"], "gdm_family": fam or "",
                     **{f"paper_{k}": v for k, v in zip(STUDY_LLMS, paper, strict=True)}, "study_same_llm": same,
                     "ours_test_split": r["test_split_score"], "ours_cv": r["score"],
                     "ours_cv_ci": f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]"})  # fmt: skip
    return pd.DataFrame(rows)


def summary_table(findings: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([{"finding": f"{f.key} ({f.rq})", "the study's claim": f.claim,
                          "verdict (cluster folds)": f"**{f.verdict}**", "deciding interval": f.deciding,
                          LEAKY_LABEL: f.leaky} for f in findings])  # fmt: skip


def finding_blocks(f: Finding) -> list[Block]:
    """One finding's details; the h2 and the '**Verdict: ...**' line are what the README's verdicts block reads."""
    return [Block("h2", f"{f.key} ({f.rq}): {f.claim}."), Block("p", f"**Verdict: {f.verdict}.**"),
            Block("p", f"Deciding: {f.deciding}."), Block("p", f"Under {LEAKY_LABEL} folds: {f.leaky}."),
            *f.body]  # fmt: skip


def page(
    params: Params, findings: list[Finding], t1: pd.DataFrame, details: list[Block], n: int, ranked: pd.DataFrame
) -> list[Block]:
    """Summary first (one screen), then the rules and every finding's details, then the rest."""
    rules = V.Rules.of(params)
    a = params.analysis
    head = [
        Block("h1", "Findings: LLM x GDM alignment"),
        Block("p", f"Verdicts judged on MMseqs2-cluster folds ({a.folds}-fold CV at "
                   f"{params.split.cluster_identity:.0%} identity, head seeds {list(a.seeds)}); the random-fold "
                   "verdict is beside it and is homology-leaky (test proteins have close homologues in training)."),
        Block("table", summary_table(findings)),
        Block("p", "Encoders ranked per LLM by the headline (reports/ranking.csv), beside two references the "
                   "findings never judge: the composition floor (amino-acid composition, length, chains: no 3D) and "
                   "the homology look-up (each test protein gets the text of its most identical train protein by "
                   "MMseqs2, else the train mean: no structure at all). Compare each encoder with the look-up under "
                   "the same folds: what a homologue's description alone earns there."),
        Block("table", ranked),
        Block("p", "The study's Table 1 (its LLMs) per GDM family beside ours (different, smaller LLMs; our "
                   "headline = mean per-protein reciprocal-rank gain of the trained heads over the shuffled-pairing "
                   "control, cluster folds, paired by seed; study score = the paper's alignment score under CV)."),
        Block("table", t1),
        Block("p", V.rules_text(rules)),
        Block("p", f"Pairs are compared on the proteins and seeds both scored (each pair scored >= {n} proteins "
                   "under the cluster folds; losses: `n_lost` in metrics/cv)."),
    ]
    body = [b for f in findings for b in finding_blocks(f)]
    return head + body + details
