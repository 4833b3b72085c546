"""README blocks for study-scale tables (registered with the README renderer's other kinds): the encoder ranking of one LLM
(a findings stage's reports/ranking.csv) and the ablation grid (benchmarks/study_ablations.py's ablations.csv).

Both read CSVs the code wrote; a missing file, column or LLM is a DocsError naming it, never an empty table.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path


class TableError(ValueError):
    """A source the table cannot be rendered from (the README renderer reports it as its own error)."""


def _rows(root: Path, src: str, need: Sequence[str]) -> list[dict[str, str]]:
    path = root / src
    if not path.is_file():
        raise TableError(f"{src}: no such file (run the pipeline / benchmark, or fix the marker)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in need if rows and c not in rows[0]]
    if not rows or missing:
        raise TableError(f"{src}: no rows or missing columns {missing}")
    return rows


def _num(v) -> float | None:
    if v is None or v == "":
        return None
    x = float(v)
    return None if math.isnan(x) else x


def interval(row: Mapping, key: str, digits: int = 3, ci: str | None = None) -> str:
    """'est [lo, hi]' from `key`, `<ci>_ci_low`, `<ci>_ci_high` (ci defaults to key; csv strings or numbers);
    '—' when absent."""
    ci = ci or key
    est, lo, hi = (_num(row.get(k)) for k in (key, f"{ci}_ci_low", f"{ci}_ci_high"))
    if est is None:
        return "—"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def render_ranking(root: Path, src: str) -> list[str]:
    """`PATH#LLM`: that LLM's rows of a ranking.csv, ranked by the headline, references labelled."""
    path, _, llm = src.partition("#")
    if not llm:
        raise TableError(f"{src}: name the LLM as PATH#LLM")
    need = ["llm", "rank", "encoder", "kind", "headline", "strict", "random_leaky", "score", "score_gain_control"]
    rows = [r for r in _rows(root, path, need) if r["llm"] == llm]
    if not rows:
        raise TableError(f"{path}: no rows for LLM {llm!r}")
    body = [[r["rank"], r["encoder"], r["kind"], interval(r, "headline"), interval(r, "strict"),
             interval(r, "random_leaky"), f"{float(r['score']):.3f}", f"{float(r['score_gain_control']):.3f}"]
            for r in sorted(rows, key=lambda r: int(r["rank"]))]  # fmt: skip
    header = ["rank", "encoder", "kind", "headline (cluster folds)", "strict proteins", "random folds (leaky)",
              "study score", "score − control"]  # fmt: skip
    return _table(header, body) + ["", f"LLM {llm}. Source: `{path}` (the findings stage)."]


def ablation_grid(records: Sequence[Mapping]) -> list[str]:
    """GDM x ablation: the headline with its interval per cell ('—' where an ablation lacks the pair)."""
    gdms = list(dict.fromkeys(r["gdm"] for r in records))
    names = list(dict.fromkeys(r["ablation"] for r in records))
    cells = {(r["gdm"], r["ablation"]): interval(r, "headline_gain", 4, ci="headline") for r in records}
    body = [[g] + [cells.get((g, a), "—") for a in names] for g in gdms]
    return _table(["GDM", *names], body)


def render_ablations(root: Path, src: str) -> list[str]:
    rows = _rows(root, src, ["ablation", "gdm", "headline_gain", "headline_ci_low", "headline_ci_high"])
    llms = sorted({r.get("llm", "") for r in rows})
    return ablation_grid(rows) + ["", f"Cells: headline gain vs control [interval], cluster folds; LLM "
                                      f"{', '.join(llms)}. Source: `{src}`."]  # fmt: skip
