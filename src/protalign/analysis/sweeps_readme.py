"""The README.md of reports/sweeps/: which experiments were used or left out, and the ranking by the headline.

Kept apart from sweeps.py (which reads `dvc exp show` and builds the tables) so each module does one job.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from protalign.analysis.sweeps import Experiment, Skipped


def cell_text(value: Any) -> Any:
    """A param value as a table cell (and a CSV value): lists and mappings as JSON."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def md_rows(rows: list[list[Any]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ranking_lines(table: pd.DataFrame | None) -> list[str]:
    """The README's ranking section: every row with a headline, best first."""
    if table is None or table.empty or table["headline_gain"].isna().all():
        return []
    rows = [
        [int(r.headline_rank), r.experiment, r.llm, r.gdm, f"{r.headline_gain:.4f}",
         f"[{r.headline_ci_low:.4f}, {r.headline_ci_high:.4f}]", _num(r.alignment_score)]
        for r in table.itertuples(index=False) if pd.notna(r.headline_gain)
    ]  # fmt: skip
    head = ["rank", "experiment", "llm", "gdm", "headline_gain", "interval", "alignment_score (test)"]
    return ["", "## Ranking by the headline", "", md_rows(rows, head)]


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, int | float) and pd.notna(x) else "n/a"


def readme(
    command: str,
    exps: list[Experiment],
    skipped: list[Skipped],
    n_dim: int,
    table: pd.DataFrame | None = None,
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    used = [[e.name, e.rev[:7] if e.rev != "workspace" else "workspace", e.kind, e.baseline,
             "; ".join(f"{k}={cell_text(v)}" for k, v in e.changed.items()) or "-"] for e in exps]  # fmt: skip
    parts = [
        "# Sweep summaries (queued DVC experiments)", "",
        f"Written by `{command}` on {now} from {len(exps)} experiment(s) (baselines and finished experiments of "
        "`dvc exp show --json`). Not a DAG stage; the `findings` stage depends on this folder, so run `dvc repro` "
        "afterwards to refresh `reports/findings.md`.", "",
        "- `experiments.csv`: one row per experiment x pair (`metrics/<llm>__<gdm>.json`: primary test split; "
        "`headline_*` and `cv_*` from `metrics/cv/`; `gain*`, the headline, also from `reports/summary.json`), plus "
        "every param that differs from an experiment's baseline; ranked by `headline_gain` (cluster-fold CV gain in "
        "per-protein reciprocal rank over the shuffled-pairing control, which a collapsed model cannot win), rows "
        "without CV metrics last.",
        (f"- `gdm_dim.csv` ({n_dim} GearNet-Edge point(s)) and `gdm_dim.png`: alignment score vs embedding width "
         "(`dim` = sum of `hidden_dims`, GearNet-Edge concatenates its hidden layers; x2 with the meanmax "
         "readout), one series per LLM and `context` (hash of all other params)." if n_dim else
         "- No GearNet-Edge point: `gdm_dim.csv` is not written (finding F6 stays 'not testable here')."),
        "", "## Experiments", "", md_rows(used, ["experiment", "rev", "kind", "baseline", "changed params"]),
        *ranking_lines(table),
    ]  # fmt: skip
    if skipped:
        rows = [
            [s.name, s.rev[:7] if s.rev not in ("", "workspace") else s.rev or "-", s.reason] for s in skipped
        ]
        parts += ["", "## Left out", "", md_rows(rows, ["experiment", "rev", "reason"])]
    return "\n".join(parts) + "\n"
