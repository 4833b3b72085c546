"""`summarize_run` stage and `protalign show`: the run's answer in one small file and one short table.

The stage writes reports/summary.json, the ONLY file the DAG declares as DVC metrics, so `dvc exp show` /
`dvc exp diff` / `dvc metrics show` stay a few columns per pair. Per pair (names short enough for a column header):

- `gain`, `gain_lo`, `gain_hi`: the headline, i.e. the cluster-fold CV gain in per-protein reciprocal rank of the
  real pairing over the shuffled-pairing control, with its interval (metrics/cv/<pair>.json `headline_gain`,
  `headline_ci_low`, `headline_ci_high`). A CV file written without them gives null, and the stage says so.
- `score`: the study's alignment score and `r10`: R@10 text->structure, on the pair's test split
  (metrics/<pair>.json `alignment_score`, `recall@10_t2s`).

Run level, `chance`: R@10 of a random ranking (`r10`, at the smallest test set, the highest chance level of all
pairs) and the test-set sizes `n_min`/`n_max`. The per-pair detail files stay where they are (reports, `use/`,
sweeps read them) but are plain outputs, not DVC metrics.

The file is outside metrics/ on purpose: the `report` stage depends on the whole metrics/ folder and `use/`
reads every metrics/*.json as a pair.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from protalign.errors import InputError, MissingArtifactError
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import read_json, write_json

log = logging.getLogger(__name__)

SUMMARY = "summary.json"  # under reports/
HEADLINE = {"gain": "headline_gain", "gain_lo": "headline_ci_low", "gain_hi": "headline_ci_high"}
TEST = {"score": "alignment_score", "r10": "recall@10_t2s"}
PAIR_KEYS = (*HEADLINE, *TEST)
CHANCE = "chance"
CHANCE_KEYS = ("r10", "n_min", "n_max")
# `dvc exp show` also lists every stage dependency's hash as a column: paths, plus the top-level folders `data` and
# `metrics`. This `--drop` leaves the params and the summary (what `protalign show` and the README recommend).
DROP_DEPS = ".*/|data$|metrics$"
# what `protalign show` points to after the table (those that exist)
OUTPUTS = (
    "reports/findings.html",
    "reports/alignment_matrix.png",
    "reports/alignment.png",
    "reports/depth.png",
    "reports/correlations/pearson.png",
    "reports/properties/properties.png",
)


def summary_path(paths: Paths) -> Path:
    return paths.reports / SUMMARY


def _read(path: Path, stage: str) -> dict[str, Any]:
    if not path.is_file():
        raise MissingArtifactError(f"no {path} (has the `{stage}` stage run?)")
    return read_json(path)


def pair_summary(llm: str, gdm: str, paths: Paths) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the pair's summary entry, its test-split metrics). A CV file without the headline gives nulls."""
    test = _read(paths.metrics(llm, gdm), f"evaluate@{llm}-{gdm}")
    cv_path = paths.cv_metrics(llm, gdm)
    cv = _read(cv_path, f"crossval@{llm}-{gdm}")
    absent = [k for k in (*TEST.values(), "chance_recall@10", "n_test") if k not in test]
    if absent:
        raise InputError(f"{paths.metrics(llm, gdm)} lacks {absent}; rerun evaluate (evaluate.ks needs 10)")
    entry: dict[str, Any] = {short: cv.get(key) for short, key in HEADLINE.items()}
    lacking = [key for key in HEADLINE.values() if key not in cv]
    if lacking:
        log.warning("summarize_run: %s has no %s (this crossval writes no headline): null in the summary",
                    cv_path, ", ".join(lacking))  # fmt: skip
    entry.update({short: test[key] for short, key in TEST.items()})
    return entry, test


def build(params: Params, paths: Paths) -> dict[str, Any]:
    """{pair: {gain, gain_lo, gain_hi, score, r10}, "chance": {r10, n_min, n_max}} for every pair in params."""
    out: dict[str, Any] = {}
    chance: dict[int, float] = {}
    for llm in params.pair_llms():
        for gdm in params.structure.gdms:
            entry, test = pair_summary(llm, gdm, paths)
            out[pair_id(llm, gdm)] = entry
            chance[int(test["n_test"])] = float(test["chance_recall@10"])
    if not out:
        raise InputError("no (LLM, GDM) pair in params (align.llms x structure.gdms): nothing to summarise")
    n_min = min(chance)
    out[CHANCE] = {"r10": chance[n_min], "n_min": n_min, "n_max": max(chance)}
    return out


def run(params: Params, paths: Paths) -> dict[str, Any]:
    summary = build(params, paths)
    write_json(summary_path(paths), summary)
    missing = [p for p, e in pairs(summary).items() if e["gain"] is None]
    log.info("summarize_run: %d pair(s) -> %s%s", len(summary) - 1, summary_path(paths),
             f"; headline null for {len(missing)} (no headline in their CV file)" if missing else "")  # fmt: skip
    return summary


# ---------------------------------------------------------------------------------------------------------------
# Reading it back: `protalign show` and the README block


def pairs(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pair entries of a summary, checked: each has every per-pair key (values may be null)."""
    out = {k: v for k, v in summary.items() if k != CHANCE}
    bad = [k for k, v in out.items() if not isinstance(v, dict) or set(PAIR_KEYS) - set(v)]
    if bad or not out or not isinstance(summary.get(CHANCE), dict):
        raise InputError(
            f"not a run summary (pairs with keys {list(PAIR_KEYS)} and {CHANCE!r}): bad {bad[:3]}"
        )
    return out


def ranked(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Pairs by headline gain, best first; pairs without a headline last, by test score."""

    def key(item: tuple[str, dict[str, Any]]) -> tuple:
        e = item[1]
        gain, score = e["gain"], e["score"]
        return (gain is None, -(gain or 0.0), -(score if score is not None else -math.inf), item[0])

    return sorted(pairs(summary).items(), key=key)


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s  # no "-0.000"


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "pair", "gain vs control", "interval", "score", "R@10 t→s"]
    rows = []
    for i, (pair, e) in enumerate(ranked(summary), 1):
        ci = "n/a" if e["gain_lo"] is None else f"[{_num(e['gain_lo'])}, {_num(e['gain_hi'])}]"
        rows.append(
            [str(i), pair.replace("__", " × "), _num(e["gain"]), ci, _num(e["score"]), _num(e["r10"], 2)]
        )
    return header, rows


def notes(summary: dict[str, Any]) -> list[str]:
    """The lines under the table: chance level, and which pairs have no headline (never a made-up number)."""
    c = summary[CHANCE]
    n = f"{c['n_min']}" if c["n_min"] == c["n_max"] else f"{c['n_min']} to {c['n_max']}"
    out = [f"Chance: gain 0 (the shuffled-pairing control); R@10 t→s {_num(c['r10'], 2)} "
           f"(random ranking of {c['n_min']} test proteins; test sets: {n})."]  # fmt: skip
    missing = [p for p, e in pairs(summary).items() if e["gain"] is None]
    if missing:
        out.append(f"No headline for {len(missing)} of {len(pairs(summary))} pair(s): their metrics/cv/<pair>.json "
                   "has no `headline_gain` (n/a above, ranked by score).")  # fmt: skip
    return out


def render_text(summary: dict[str, Any]) -> str:
    """A plain-text table for the terminal (columns padded), best pair first."""
    header, rows = table_rows(summary)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    left = {1}  # the pair column reads left-aligned; numbers right-aligned

    def line(cells: list[str]) -> str:
        pad = zip(cells, widths, strict=True)
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(pad))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows), "", *notes(summary)])


def render_markdown(summary: dict[str, Any]) -> list[str]:
    header, rows = table_rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|---:|---|" + "---:|" * (len(header) - 2)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + ["", *notes(summary)]


def render_matrix(summary: dict[str, Any]) -> list[str]:
    """The README's compact view: one row per GDM, one column per LLM, cell = headline gain [interval] (or the
    study's score, marked, where no headline exists); GDMs ordered by their best gain."""
    entries = pairs(summary)
    split = {p: p.split("__", 1) for p in entries}
    llms = list(dict.fromkeys(llm for llm, _ in split.values()))
    best: dict[str, float] = {}
    for pair, (_, gdm) in split.items():
        g = entries[pair]["gain"]
        best[gdm] = max(best.get(gdm, -math.inf), g if g is not None else -math.inf)
    gdms = sorted(best, key=lambda g: (-best[g], g))

    def cell(e: dict[str, Any] | None) -> str:
        if e is None:
            return ""
        if e["gain"] is None:
            return f"n/a (score {_num(e['score'])})"
        return f"{_num(e['gain'])} [{_num(e['gain_lo'])}, {_num(e['gain_hi'])}]"

    by = {(llm, gdm): entries[p] for p, (llm, gdm) in split.items()}
    lines = ["| GDM \\ LLM | " + " | ".join(llms) + " |", "|---|" + "---:|" * len(llms)]
    lines += ["| " + gdm + " | " + " | ".join(cell(by.get((llm, gdm))) for llm in llms) + " |" for gdm in gdms]
    return lines + ["", "Cells: headline gain vs control [interval]; `protalign show` ranks the pairs.", *notes(summary)]


def show(paths: Paths, source: str | Path | None = None) -> str:
    """`protalign show`: the ranked summary, then where the findings and plots are."""
    path = Path(source) if source else summary_path(paths)
    if not path.is_file():
        raise MissingArtifactError(f"no {path}: run `dvc repro` (stage summarize_run) first")
    text = render_text(read_json(path))
    present = [p for p in OUTPUTS if (paths.root / p).is_file()]
    if present:
        text += "\n\nFindings and plots (`dvc plots show` renders every plot):\n" + "\n".join(
            f"  {p}" for p in present
        )
    text += f"\n\nCompare experiments: dvc exp show --only-changed --drop '{DROP_DEPS}'"
    return text + "\n"
