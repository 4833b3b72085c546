"""Which (LLM, GDM) pair a command uses, and how far its test metrics say the ranking can be trusted.

The default is the pair with the best headline among those whose heads exist: `headline_gain` in
`metrics/cv/<pair>.json` (cluster-fold CV gain in per-protein reciprocal rank over the shuffled-pairing control,
which a collapsed model cannot win). Only when no pair has CV metrics does it fall back to the best test-split
`alignment_score` in `metrics/<pair>.json`, and says so. Any other pair with trained heads can be named. Every
command prints `Pair.trust_lines()` first.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protalign.errors import InputError
from protalign.paths import Paths, split_pair
from protalign.storage import file_sha256
from protalign.structure.references import is_reference


class UseError(InputError):
    """Bad input to embed/search/describe (unknown pair, pipeline not run, bad structure, empty query)."""


def trained_pairs(paths: Paths) -> list[str]:
    """Pair ids that have trained heads (models/heads/<llm>__<gdm>.pt)."""
    heads_dir = paths.root / "models" / "heads"
    return sorted(p.stem for p in heads_dir.glob("*.pt")) if heads_dir.is_dir() else []


def _read_metrics(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UseError(f"{path} is not valid JSON ({exc}); rerun the evaluate stage") from exc


@dataclass(frozen=True)
class Pair:
    """The pair a command runs with: its heads file (and hash), its test metrics, and why it was chosen."""

    llm: str
    gdm: str
    heads: Path
    heads_sha256: str
    metrics: dict[str, Any] | None
    chosen: str
    metrics_file: Path | None = None
    ks: tuple[int, ...] = field(default=())
    root: Path | None = None

    @property
    def id(self) -> str:
        return f"{self.llm}__{self.gdm}"

    @property
    def heads_label(self) -> str:
        """The heads path relative to the repository root (shorter, and the same on every machine)."""
        if self.root is not None and self.heads.is_relative_to(self.root):
            return str(self.heads.relative_to(self.root))
        return str(self.heads)

    def _recalls(self, direction: str) -> str:
        m = self.metrics or {}
        parts = [
            f"R@{k} {m[f'recall@{k}_{direction}']:.2f}" for k in self.ks if f"recall@{k}_{direction}" in m
        ]
        mrr = m.get(f"mrr_{direction}")
        if mrr is not None:
            parts.append(f"MRR {mrr:.2f}")
        return ", ".join(parts) or "n/a"

    def trust_lines(self) -> list[str]:
        """Human-readable provenance + test metrics, printed before every result."""
        lines = [
            f"pair:  {self.id}  ({self.chosen})",
            f"heads: {self.heads_label}  (sha256 {self.heads_sha256[:12]})",
        ]
        m = self.metrics
        if m is None:
            lines.append("test metrics: none (the evaluate stage has not run for this pair): trust unknown")
            return lines
        n = m.get("n_test", "?")
        chance = [f"R@{k} {m[f'chance_recall@{k}']:.2f}" for k in self.ks if f"chance_recall@{k}" in m]
        lines += [
            f"test metrics ({self.metrics_file}, n_test={n}; chance: {', '.join(chance) or 'n/a'}):",
            f"  text->structure (search):   {self._recalls('t2s')}",
            f"  structure->text (describe): {self._recalls('s2t')}",
            f"  alignment_score {_fmt(m.get('alignment_score'))} "
            f"(untrained heads: {_fmt(m.get('baseline_alignment_score'))})",
        ]
        if "rr_mean" in m:
            lines.append(
                f"  reciprocal rank {_fmt(m.get('rr_mean'))} (shuffled-pairing control "
                f"{_fmt(m.get('rr_control_mean'))}, chance {_fmt(m.get('chance_mrr'))})"
            )
        if isinstance(n, int) and n < 50:
            lines.append(f"  caution: only {n} test proteins: these numbers are rough")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "pair": self.id,
            "llm": self.llm,
            "gdm": self.gdm,
            "chosen": self.chosen,
            "heads": self.heads_label,
            "heads_sha256": self.heads_sha256,
            "metrics_file": str(self.metrics_file) if self.metrics_file else None,
            "test_metrics": self.metrics,
        }


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, int | float) and math.isfinite(x) else "n/a"


def _ks(metrics: dict[str, Any] | None) -> tuple[int, ...]:
    if not metrics:
        return ()
    ks = {
        int(k.split("@")[1].split("_")[0]) for k in metrics if k.startswith("recall@") and k.endswith("_t2s")
    }
    return tuple(sorted(ks))


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def default_pair(paths: Paths) -> tuple[str, str]:
    """(pair id, why): the best CV headline_gain among pairs with trained heads; the best test alignment_score only
    when no pair has a headline (said in `why`)."""
    available = trained_pairs(paths)
    if not available:
        raise UseError(
            f"no trained heads in {paths.root / 'models' / 'heads'}: the pipeline has not run here "
            "(run `dvc repro` first, or cd to a repository that has run it)"
        )
    available = [p for p in available if not is_reference(split_pair(p)[1])]  # never a reference (the floor)
    if not available:
        raise UseError("only reference encoders (e.g. composition) have trained heads: name a pair with --pair")
    headlines, scored = [], []
    for pair in available:
        cv = _read_metrics(paths.root / "metrics" / "cv" / f"{pair}.json") or {}
        if _finite(cv.get("headline_gain")):
            headlines.append((cv["headline_gain"], pair, cv))
        score = (_read_metrics(paths.root / "metrics" / f"{pair}.json") or {}).get("alignment_score")
        if _finite(score):
            scored.append((score, pair))
    if headlines:
        gain, pair, cv = max(headlines, key=lambda t: (t[0], t[1]))
        interval = f" [{cv['headline_ci_low']:.4f}, {cv['headline_ci_high']:.4f}]" if _finite(
            cv.get("headline_ci_low")) and _finite(cv.get("headline_ci_high")) else ""  # fmt: skip
        return pair, (
            f"default: best headline_gain {gain:.4f}{interval} (CV reciprocal-rank gain over the shuffled-pairing "
            f"control, {cv.get('headline_method', '?')} folds) of {len(headlines)} pair(s) with CV metrics"
        )
    if not scored:
        pair = available[0]
        return pair, f"default: no metrics/*.json scored yet, first trained pair of {len(available)}"
    score, pair = max(scored, key=lambda t: (t[0], t[1]))
    return pair, (
        f"default: best alignment_score {score:.4f} of {len(scored)} evaluated pair(s); no metrics/cv/*.json "
        "headline_gain yet (run crossval), so the pair is chosen by the test split's alignment score"
    )


def resolve_pair(paths: Paths, name: str | None = None, why: str = "named with --pair") -> Pair:
    """The named pair (`<llm>__<gdm>`, or `<llm>-<gdm>` when unambiguous), else the default; checks its heads."""
    if name is None:
        pair, chosen = default_pair(paths)
    else:
        pair, chosen = _normalise(paths, name.strip()), why
    try:
        llm, gdm = split_pair(pair)
    except ValueError as exc:
        raise UseError(str(exc)) from exc
    heads = paths.heads(llm, gdm)
    if not heads.exists():
        available = trained_pairs(paths)
        hint = (
            f"pairs with trained heads: {available}"
            if available
            else "no pair has trained heads: run `dvc repro`"
        )
        shown = heads.relative_to(paths.root) if heads.is_relative_to(paths.root) else heads
        raise UseError(f"unknown pair {pair!r}: no heads at {shown} ({hint})")
    metrics_file = paths.metrics(llm, gdm)
    metrics = _read_metrics(metrics_file)
    return Pair(
        llm=llm,
        gdm=gdm,
        heads=heads,
        heads_sha256=file_sha256(heads),
        metrics=metrics,
        chosen=chosen,
        metrics_file=(metrics_file.relative_to(paths.root) if metrics is not None else None),
        ks=_ks(metrics),
        root=paths.root,
    )


def _normalise(paths: Paths, name: str) -> str:
    """Accept `llm__gdm`, or the DVC matrix spelling `llm-gdm` when exactly one trained pair matches it."""
    if not name:
        raise UseError("empty --pair")
    if "__" in name:
        return name
    matches = [p for p in trained_pairs(paths) if p.replace("__", "-") == name]
    if len(matches) == 1:
        return matches[0]
    raise UseError(f"unknown pair {name!r}: expected '<llm>__<gdm>'; trained pairs: {trained_pairs(paths)}")
