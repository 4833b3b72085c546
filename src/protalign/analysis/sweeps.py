"""`protalign sweeps`: summarise finished DVC experiments (queued sweeps) into reports/sweeps/.

A command, not a DAG stage: its input is `dvc exp show --json` (experiment commits in git refs), which no stage can
declare as a dependency. What it writes is a git-tracked folder that the `findings` stage depends on, so
`dvc repro` after `protalign sweeps` regenerates the findings. The GDM-dimension sweep (finding 6) lives here
because each point retrains GearNet-Edge; `gdm_dim.csv` holds its points.

`dvc exp show --json` (DVC 3.x, `ExpState.dumpd()`) is a list of states: the workspace first, then one state per
baseline commit. A state is `{rev, name, data, error, experiments}`; `data` is `{rev, timestamp, params, metrics,
deps, outs, meta}` with `params`/`metrics` mapping a file to `{"data": {...}}` or `{"error": {...}}`;
`experiments` is a list of `{revs: [state], executor: {state: success|queued|running|failed, ...} | null, name}`.

The only declared DVC metrics file is reports/summary.json (a few numbers per pair); the per-pair detail files
(metrics/<pair>.json, metrics/cv/<pair>.json) are plain outputs, so they are read from each experiment's git commit
(the workspace: from disk). A dump from before that change, which lists them as metrics, is read as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from protalign.analysis import plots
from protalign.analysis.sweeps_readme import cell_text, readme
from protalign.errors import InputError, ToolError
from protalign.paths import Paths, split_pair
from protalign.storage import write_text

log = logging.getLogger(__name__)

GEARNET = "gearnet_edge"
PARAMS_FILE = "params.yaml"
# keys the GDM-dimension sweep varies: points that differ only in these are one series of gdm_dim.csv
DIM_KEYS = ("structure.gearnet_edge.hidden_dims", "structure.gdms")
PAIR_METRICS = re.compile(
    r"^metrics/(?P<pair>[^/]+)\.json$"
)  # metrics/<llm>__<gdm>.json (primary test split)
CV_METRICS = re.compile(r"^metrics/cv/(?P<pair>[^/]+)\.json$")
SUMMARY_METRICS = "reports/summary.json"
SUMMARY_COLUMNS = ("gain", "gain_lo", "gain_hi")  # the headline per pair, from the declared summary
METRIC_COLUMNS = ("alignment_score", "baseline_alignment_score", "matched_cosine_mean")
TAIL_METRICS = ("mrr_s2t", "mrr_t2s", "n_test")
# the ranking: metrics/cv/<pair>.json headline (collapse cannot win it), then the study's score beside it
HEADLINE_COLUMNS = (
    "headline_gain",
    "headline_ci_low",
    "headline_ci_high",
    "headline_method",
    "score_gain_control",
)
RECALL = re.compile(r"^recall@\d+_(s2t|t2s)$")


@dataclass
class Experiment:
    """One finished experiment (or baseline / workspace) with flattened params and its metrics files."""

    name: str
    rev: str
    kind: str  # workspace | baseline | experiment
    baseline: str  # name of the baseline the experiment was run from (itself for a baseline)
    state: str
    timestamp: str | None
    params: dict[str, Any]
    metrics: dict[str, dict]
    changed: dict[str, Any] = field(default_factory=dict)  # params that differ from the baseline


@dataclass(frozen=True)
class Skipped:
    name: str
    rev: str
    reason: str


def exp_show_json(root: Path, source: Path | None = None) -> list[dict]:
    """The states of `dvc exp show --json` run in `root`, or read from a saved dump (`source`)."""
    if source is not None:
        text = Path(source).read_text()
    else:
        try:
            res = subprocess.run(["dvc", "exp", "show", "--json"], cwd=root, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise ToolError("`dvc` is not on PATH (activate the project's environment)") from exc
        if res.returncode != 0:
            raise ToolError(f"`dvc exp show --json` failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
        text = res.stdout
    try:
        states = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not JSON from `dvc exp show --json`{f' ({source})' if source else ''}: {exc}"
        ) from exc
    if not isinstance(states, list) or not all(isinstance(s, dict) and "rev" in s for s in states):
        raise InputError(
            "unexpected `dvc exp show --json` structure: expected a list of {rev, name, data, ...}"
        )
    return states


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys (lists stay values), as `dvc exp show` names params."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _files(section: dict | None, what: str, label: str, skipped: list[Skipped], rev: str) -> dict[str, dict]:
    out = {}
    for path, result in (section or {}).items():
        if isinstance(result, dict) and isinstance(result.get("data"), dict):
            out[path] = result["data"]
        else:
            err = (result or {}).get("error", {}) if isinstance(result, dict) else {}
            skipped.append(Skipped(label, rev, f"{what} file {path} unreadable: {err.get('msg', result)}"))
    return out


def _experiment(state: dict, kind: str, baseline: str, exec_state: str, skipped: list[Skipped]) -> Experiment:
    data = state.get("data") or {}
    rev = state["rev"]
    name = state.get("name") or ("workspace" if rev == "workspace" else rev[:7])
    params: dict[str, Any] = {}
    for path, values in _files(data.get("params"), "params", name, skipped, rev).items():
        params.update(flatten(values, "" if path == PARAMS_FILE else f"{path}:"))
    metrics = _files(data.get("metrics"), "metrics", name, skipped, rev)
    return Experiment(name, rev, kind, baseline, exec_state, data.get("timestamp"), params, metrics)


def collect(states: list[dict]) -> tuple[list[Experiment], list[Skipped]]:
    """Finished experiments, their baselines and the workspace; everything left out is returned with the reason.

    The workspace is compared with the first baseline (DVC lists HEAD first) and left out when identical to it.
    """
    exps: list[Experiment] = []
    skipped: list[Skipped] = []
    workspace = None
    for state in states:
        if state.get("rev") == "workspace":
            if state.get("error") or not state.get("data"):
                skipped.append(Skipped("workspace", "workspace", f"unreadable: {state.get('error')}"))
            else:
                workspace = _experiment(state, "workspace", "", "workspace", skipped)
            continue
        if state.get("error") or not state.get("data"):
            skipped.append(Skipped(state.get("name") or state["rev"][:7], state["rev"],
                                   f"baseline unreadable: {state.get('error')}"))  # fmt: skip
            continue
        base = _experiment(state, "baseline", "", "baseline", skipped)
        base.baseline = base.name
        exps.append(base)
        for rng in state.get("experiments") or []:
            revs = rng.get("revs") or []
            executor = rng.get("executor") or {}
            exec_state = executor.get("state") or "success"  # no executor: run outside the queue, finished
            label = rng.get("name") or (revs[0].get("name") if revs else None) or "?"
            if not revs:
                skipped.append(Skipped(label, "", "experiment without revisions"))
            elif exec_state != "success" or revs[0].get("error") or not revs[0].get("data"):
                why = revs[0].get("error") or {}
                skipped.append(Skipped(label, revs[0]["rev"], f"state {exec_state}"
                                       + (f": {why.get('msg')}" if why else "")))  # fmt: skip
            else:
                exp = _experiment(revs[0], "experiment", base.name, exec_state, skipped)
                exp.name = label
                exps.append(exp)
    if workspace is not None:
        ref = next((e for e in exps if e.kind == "baseline"), None)
        if ref is not None and ref.params == workspace.params and ref.metrics == workspace.metrics:
            skipped.append(
                Skipped("workspace", "workspace", f"identical to baseline {ref.name} (not counted twice)")
            )
        else:
            workspace.baseline = ref.name if ref else "workspace"
            exps.insert(0, workspace)
    by_name = {e.name: e for e in exps if e.kind == "baseline"}
    for e in exps:
        ref = by_name.get(e.baseline)
        if ref is not None and ref is not e:
            keys = sorted(set(e.params) | set(ref.params))
            e.changed = {k: e.params.get(k) for k in keys if e.params.get(k) != ref.params.get(k)}
    return exps, skipped


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise ToolError("`git` is not on PATH") from exc


def _detail_files(root: Path, rev: str) -> dict[str, dict]:
    """metrics/<pair>.json and metrics/cv/<pair>.json as committed in `rev` (the workspace: on disk)."""
    if rev == "workspace":
        found = sorted(p.relative_to(root).as_posix() for p in (root / "metrics").rglob("*.json"))
        names = [n for n in found if PAIR_METRICS.match(n) or CV_METRICS.match(n)]
        return {n: json.loads((root / n).read_text()) for n in names}
    res = _git(root, "ls-tree", "-r", "--name-only", rev, "--", "metrics")
    if res.returncode != 0:
        raise InputError(f"git ls-tree {rev[:7]} failed: {res.stderr.strip()[-300:]}")
    out = {}
    for name in res.stdout.split():
        if PAIR_METRICS.match(name) or CV_METRICS.match(name):
            show = _git(root, "show", f"{rev}:{name}")
            if show.returncode != 0:
                raise InputError(f"git show {rev[:7]}:{name} failed: {show.stderr.strip()[-300:]}")
            out[name] = json.loads(show.stdout)
    return out


def attach_detail_files(exps: list[Experiment], root: Path, skipped: list[Skipped]) -> None:
    """Give every experiment its per-pair detail files when `dvc exp show` did not list them (not DVC metrics)."""
    for e in exps:
        if any(PAIR_METRICS.match(p) for p in e.metrics):
            continue  # an older dump that declared them as metrics
        try:
            e.metrics.update(_detail_files(root, e.rev))
        except (InputError, json.JSONDecodeError) as exc:
            skipped.append(Skipped(e.name, e.rev, f"per-pair metrics files unreadable: {exc}"))


def _built(e: Experiment, llm: str, gdm: str) -> bool:
    """Whether the experiment's own params make the pair (align.llms × structure.gdms; unknown params: yes)."""
    llms, gdms = e.params.get("align.llms"), e.params.get("structure.gdms")
    return (llms is None or llm in llms) and (gdms is None or gdm in gdms)


def experiments_table(exps: list[Experiment], skipped: list[Skipped]) -> pd.DataFrame:
    """One row per experiment x pair (metrics/<llm>__<gdm>.json), with every param changed anywhere as a column."""
    changed_keys = sorted({k for e in exps for k in e.changed})
    rows = []
    for e in exps:
        pairs = sorted(m.group("pair") for p in e.metrics if (m := PAIR_METRICS.match(p)))
        stale = [pair for pair in pairs if not _built(e, *split_pair(pair))]
        if (
            stale
        ):  # git-tracked metrics the experiment inherited from its baseline commit but did not recompute
            skipped.append(Skipped(e.name, e.rev, f"{len(stale)} pair metrics not built by this experiment's "
                                   f"params (left from its baseline commit): {', '.join(stale)}"))  # fmt: skip
        pairs = [pair for pair in pairs if pair not in stale]
        if not pairs:
            skipped.append(Skipped(e.name, e.rev, "no metrics/<llm>__<gdm>.json in this experiment"))
        for pair in pairs:
            llm, gdm = split_pair(pair)
            m = e.metrics[f"metrics/{pair}.json"]
            cv = e.metrics.get(f"metrics/cv/{pair}.json", {})
            row = {"experiment": e.name, "rev": e.rev, "kind": e.kind, "baseline": e.baseline,
                   "created": e.timestamp, "llm": llm, "gdm": gdm}  # fmt: skip
            head = e.metrics.get(SUMMARY_METRICS, {}).get(pair, {})
            row.update({k: head.get(k) for k in SUMMARY_COLUMNS})  # DVC leaves out nulls: missing = no headline
            row.update({k: m.get(k) for k in METRIC_COLUMNS})
            row.update({k: m[k] for k in sorted(m, key=_recall_order) if RECALL.match(k)})
            row.update({k: m.get(k) for k in TAIL_METRICS})
            row.update({k: cv.get(k) for k in HEADLINE_COLUMNS})
            row["cv_alignment_score"] = cv.get("alignment_score")
            row["cv_alignment_score_sd"] = cv.get("alignment_score_sd")
            row.update({k: cell_text(e.params.get(k)) for k in changed_keys})
            rows.append(row)
    return rank_by_headline(pd.DataFrame(rows))


def rank_by_headline(table: pd.DataFrame) -> pd.DataFrame:
    """Rows best headline first (CV reciprocal-rank gain over the shuffled-pairing control; rows without CV
    metrics last, in their previous order), with `headline_rank` (1 = best; empty without a headline)."""
    if table.empty:
        return table
    gain = pd.to_numeric(table["headline_gain"], errors="coerce")
    order = gain.rank(method="min", ascending=False)
    table = table.assign(headline_rank=order.astype("Int64"))
    table = table.iloc[np.lexsort((np.arange(len(table)), -gain.fillna(-np.inf).to_numpy()))]
    return table.reset_index(drop=True)


def _recall_order(key: str) -> tuple:
    m = re.match(r"^recall@(\d+)_(\w+)$", key)
    return (int(m.group(1)), m.group(2)) if m else (0, key)


def gearnet_width(hidden_dims: list[int], readout: str = "sum", concat_hidden: bool = True) -> int:
    """GearNet-Edge embedding width: hidden layers concatenated (TorchDrug's concat_hidden), x2 for meanmax."""
    dims = [int(h) for h in hidden_dims]
    if not dims:
        raise ValueError("hidden_dims must not be empty")
    return (sum(dims) if concat_hidden else dims[-1]) * (2 if readout == "meanmax" else 1)


def context_key(params: dict[str, Any]) -> str:
    """Short hash of every param except the swept dimension keys: equal key = comparable sweep points."""
    rest = {k: v for k, v in params.items() if k not in DIM_KEYS}
    return hashlib.sha1(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:8]


def gdm_dim_table(exps: list[Experiment], table: pd.DataFrame, skipped: list[Skipped]) -> pd.DataFrame:
    """GearNet-Edge points: embedding width, hidden_dims, LLM, scores, and the series (context) they belong to."""
    if table.empty:
        return pd.DataFrame()
    rows = []
    by_key = {(e.name, e.rev): e for e in exps}
    for r in table[table["gdm"] == GEARNET].itertuples(index=False):
        e = by_key[(r.experiment, r.rev)]
        dims = e.params.get("structure.gearnet_edge.hidden_dims")
        if not isinstance(dims, list) or not dims:
            skipped.append(
                Skipped(
                    e.name, e.rev, f"gearnet_edge pair without structure.gearnet_edge.hidden_dims ({dims!r})"
                )
            )
            continue
        readout = e.params.get("structure.gearnet_edge.readout", "sum")
        others = {k: v for k, v in e.changed.items() if k not in DIM_KEYS}
        rows.append({
            "dim": gearnet_width(dims, readout), "hidden_dims": json.dumps(dims), "llm": r.llm,
            "alignment_score": r.alignment_score, "baseline_alignment_score": r.baseline_alignment_score,
            "cv_alignment_score": r.cv_alignment_score, "n_test": r.n_test, "experiment": e.name, "rev": e.rev,
            "kind": e.kind, "context": context_key(e.params),
            "other_changes": "; ".join(f"{k}={cell_text(v)}" for k, v in others.items()),
        })  # fmt: skip
    return (
        pd.DataFrame(rows).sort_values(["llm", "context", "dim", "experiment"], kind="stable")
        if rows
        else pd.DataFrame()
    )


def run(paths: Paths, source: str | Path | None = None, out: str | Path | None = None) -> dict[str, int]:
    """Write experiments.csv, gdm_dim.csv (+ PNG) and README.md under reports/sweeps/ (or `out`)."""
    out = Path(out) if out is not None else paths.reports / "sweeps"
    exps, skipped = collect(exp_show_json(paths.root, Path(source) if source else None))
    attach_detail_files(exps, paths.root, skipped)
    table = experiments_table(exps, skipped)
    dims = gdm_dim_table(exps, table, skipped)
    fmt = {"index": False, "float_format": "%.6f", "lineterminator": "\n"}
    write_text(out / "experiments.csv", table.to_csv(**fmt))
    for name in ("gdm_dim.csv", "gdm_dim.png"):
        (out / name).unlink(missing_ok=True)  # never leave a stale sweep behind
    if not dims.empty:
        write_text(out / "gdm_dim.csv", dims.to_csv(**fmt))
        plots.score_vs_dim(dims, out / "gdm_dim.png")
    command = "protalign sweeps" + (f" --from {source}" if source else "")
    write_text(out / "README.md", readme(command, exps, skipped, len(dims), table))
    for s in skipped:
        log.warning("sweeps: left out %s (%s): %s", s.name, s.rev[:7], s.reason)
    summary = {
        "experiments": len(exps),
        "rows": len(table),
        "gdm_dim_points": len(dims),
        "left_out": len(skipped),
    }
    log.info("sweeps: %s -> %s", summary, out)
    return summary
