"""The rules that turn intervals into the findings' verdicts (params `analysis.verdicts`), written out once here
and printed verbatim in reports/findings.md (`rules_text`).

An effect finding ("X aligns better than Y") is judged on the corrected interval of a mean per-protein difference;
a "no effect" finding (a property does not matter) on the corrected interval of a Spearman rho; F6 on one stratified
permutation test; F7 on two intervals (diminishing returns). A finding made of several comparisons (pairs, LLMs)
holds when every comparison holds and fails when any one fails. Verdict strings are fixed: REPRODUCED,
NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from protalign.analysis.stats import Interval

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
VERDICT_METHOD = "cluster"  # every verdict is judged on the homology-aware (MMseqs2 cluster) folds
LEAKY_METHOD = "random"  # shown beside, labelled homology-leaky
MAX_EXACT = 200_000  # F6: enumerate every within-stratum permutation up to this many, else Monte Carlo
N_MONTE_CARLO = 100_000
MIN_WIDTHS = 6  # F6: distinct embedding widths a series needs at fixed depth


class NotTestable(Exception):
    """The data cannot decide a finding by design (the message says why)."""


@dataclass(frozen=True)
class Rules:
    min_effect: float
    band_rho: float
    alpha: float
    correction: str

    @classmethod
    def of(cls, params) -> Rules:
        v = params.analysis.verdicts
        return cls(v.min_effect, v.band_rho, v.alpha, v.correction)

    def level(self, m: int) -> float:
        """Interval level for one of the m comparisons of a finding: 1 - alpha/m (Bonferroni widening) under
        holm, bonferroni and bh alike (Holm's step-down has no interval form; for bh the FWER-controlling widening
        is the conservative choice), 1 - alpha under `none`."""
        if m < 1:
            raise ValueError(f"a finding needs >= 1 comparison, got {m}")
        return 1.0 - self.alpha / (1 if self.correction == "none" else m)


def rules_text(r: Rules) -> str:
    """The rules as printed in findings.md (the same numbers the functions below use)."""
    return (
        f"**Verdict rules** (params `analysis.verdicts`: min_effect {r.min_effect}, band_rho {r.band_rho}, "
        f"alpha {r.alpha}, correction {r.correction}). Each interval is a hierarchical bootstrap over MMseqs2 "
        "clusters (proteins under random folds) and head seeds together, at level 1 - alpha/m for the m "
        f"comparisons of one finding ({'no widening' if r.correction == 'none' else 'Bonferroni widening'}"
        f"{'; bh is given the same widening, which is conservative' if r.correction == 'bh' else ''}). "
        f"Effect findings (F1, F2, F8: per-protein reciprocal-rank gain over the shuffled-pairing control, "
        f"difference of two pairs): a comparison is *reproduced* when its CI low > 0 and its estimate >= "
        f"{r.min_effect}; *not reproduced* when its CI high < {r.min_effect}; otherwise inconclusive. "
        f"F4 (Spearman rho of cluster size with the gain; an effect must leave the no-effect band): reproduced "
        f"when CI low > 0 and rho >= {r.band_rho}; not reproduced when CI high < {r.band_rho}. "
        f"No-effect findings (F3, F5): reproduced when the CI lies inside (-{r.band_rho}, {r.band_rho}); "
        f"not reproduced when it lies wholly on one side outside the band (CI low >= {r.band_rho} or "
        f"CI high <= -{r.band_rho}); inconclusive when it straddles a band edge. A finding holds when all its "
        "comparisons are reproduced and fails when any one is not reproduced; otherwise it is inconclusive. "
        f"F6: one stratified one-sided permutation test (strata: LLM x sweep context x GearNet depth with >= "
        f"{MIN_WIDTHS} widths; statistic: sum over strata of Spearman rho(log width, score)); reproduced when "
        f"p(increase) < {r.alpha}, not reproduced when p(decrease) < {r.alpha}. F7: reproduced when CI(L2 - L1) "
        f"low > {r.min_effect} and CI(L3 - L2) high < {r.min_effect}; not reproduced when CI(L2 - L1) high < "
        f"{r.min_effect} (a second layer does not help) or CI(L3 - L2) low > {r.min_effect} (a third still "
        "helps). *Not testable here*: the run lacks what the finding needs (the reason is given)."
    )


def _combine(verdicts: Sequence[str]) -> str:
    if not verdicts:
        return NOT_TESTABLE
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def effect_one(iv: Interval, min_effect: float) -> str:
    """One difference interval (expected positive)."""
    if not (np.isfinite(iv.low) and np.isfinite(iv.high)):
        return INCONCLUSIVE
    if iv.low > 0 and iv.estimate >= min_effect:
        return REPRODUCED
    if iv.high < min_effect:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def null_one(iv: Interval, band: float) -> str:
    """One correlation interval of a "no effect" finding."""
    if not (np.isfinite(iv.low) and np.isfinite(iv.high)):
        return INCONCLUSIVE
    if -band < iv.low and iv.high < band:
        return REPRODUCED
    if iv.low >= band or iv.high <= -band:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def _deciding(intervals: Sequence[Interval], verdicts: Sequence[str], verdict: str) -> int:
    """Index of the comparison that decides: the weakest one that holds, the first that fails or straddles."""
    if verdict == REPRODUCED:
        return int(np.argmin([iv.low for iv in intervals]))
    target = NOT_REPRODUCED if verdict == NOT_REPRODUCED else INCONCLUSIVE
    return verdicts.index(target)


def judge_effect(intervals: Sequence[Interval], threshold: float) -> tuple[str, int | None]:
    """(verdict, index of the deciding interval) for an effect finding; threshold = min_effect (or band_rho
    for a correlation effect)."""
    if not intervals:
        return NOT_TESTABLE, None
    each = [effect_one(iv, threshold) for iv in intervals]
    verdict = _combine(each)
    return verdict, _deciding(intervals, each, verdict)


def judge_null(intervals: Sequence[Interval], band: float) -> tuple[str, int | None]:
    if not intervals:
        return NOT_TESTABLE, None
    each = [null_one(iv, band) for iv in intervals]
    verdict = _combine(each)
    return verdict, _deciding(intervals, each, verdict)


def diminishing_one(gain2: Interval, gain3: Interval | None, min_effect: float) -> str:
    """F7 for one pair: CI(L2 - L1) above min_effect and CI(L3 - L2) below it."""
    if gain2.high < min_effect or (gain3 is not None and gain3.low > min_effect):
        return NOT_REPRODUCED
    if gain3 is not None and gain2.low > min_effect and gain3.high < min_effect:
        return REPRODUCED
    return INCONCLUSIVE


def judge_diminishing(per_pair: Sequence[tuple[Interval, Interval | None]], min_effect: float) -> str:
    return _combine([diminishing_one(g2, g3, min_effect) for g2, g3 in per_pair])


@dataclass(frozen=True)
class PermutationResult:
    statistic: float
    p_increase: float  # one-sided: share of permutations with a statistic >= the observed one
    p_decrease: float
    n_permutations: int
    exact: bool


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(sps.rankdata(x), sps.rankdata(y))[0, 1])


def stratified_permutation_test(
    strata: Sequence[tuple[Sequence[float], Sequence[float]]],
    seed: int,
    max_exact: int = MAX_EXACT,
    n_monte_carlo: int = N_MONTE_CARLO,
) -> PermutationResult:
    """Statistic = sum over strata of Spearman rho(x, y); the scores are permuted within each stratum only.

    Exact when the product of the strata's n! is <= max_exact (every permutation, the identity included, so the
    smallest p is 1/N); otherwise seeded Monte Carlo, p = (1 + hits) / (1 + n_monte_carlo)."""
    data = [(np.asarray(x, float), np.asarray(y, float)) for x, y in strata]
    if not data or any(len(x) != len(y) or len(x) < 2 for x, y in data):
        raise ValueError("each stratum needs >= 2 (x, y) points of equal length")
    observed = sum(_spearman(x, y) for x, y in data)
    total = math.prod(math.factorial(len(x)) for x, _ in data)
    tol = 1e-9
    if total <= max_exact:
        dist = np.zeros(1)
        for x, y in data:
            per = np.array([_spearman(x, y[list(p)]) for p in itertools.permutations(range(len(y)))])
            dist = np.add.outer(dist, per).ravel()
        return PermutationResult(observed, float(np.mean(dist >= observed - tol)),
                                 float(np.mean(dist <= observed + tol)), int(total), True)  # fmt: skip
    rng = np.random.default_rng(seed)
    dist = np.zeros(n_monte_carlo)
    for x, y in data:
        rx = sps.rankdata(x)
        ry = sps.rankdata(y)
        perm = rng.permuted(np.tile(ry, (n_monte_carlo, 1)), axis=1)
        if np.ptp(rx) > 0 and np.ptp(ry) > 0:
            cx = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean())
            cy = perm - perm.mean(axis=1, keepdims=True)
            dist += (cy @ cx) / np.linalg.norm(cy, axis=1)
    up = (1 + np.sum(dist >= observed - tol)) / (1 + n_monte_carlo)
    down = (1 + np.sum(dist <= observed + tol)) / (1 + n_monte_carlo)
    return PermutationResult(observed, float(up), float(down), n_monte_carlo, False)


def judge_permutation(res: PermutationResult, alpha: float) -> str:
    if res.p_increase < alpha:
        return REPRODUCED
    if res.p_decrease < alpha:
        return NOT_REPRODUCED
    return INCONCLUSIVE
