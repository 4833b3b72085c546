"""The default pair is chosen by the CV headline (collapse cannot win it); alignment_score only as a said fallback."""

from __future__ import annotations

from use_world import make_run

from protalign.storage import write_json
from protalign.use.pairs import default_pair


def _run(tmp_path):
    return make_run(
        tmp_path / "repo", {("llm-a", "gdm-x"): 0.10, ("llm-b", "gdm-x"): 0.30, ("llm-a", "gdm-y"): None}
    )


def _headline(paths, pair, gain, low=-0.01, high=0.2):
    write_json(paths.root / "metrics" / "cv" / f"{pair}.json",
               {"headline_gain": gain, "headline_ci_low": low, "headline_ci_high": high, "headline_method": "cluster"})  # fmt: skip


def test_headline_beats_alignment_score(tmp_path):
    paths = _run(tmp_path)
    _headline(paths, "llm-a__gdm-x", 0.12)  # worse test alignment score, better headline
    _headline(paths, "llm-b__gdm-x", 0.05)
    _headline(paths, "llm-a__gdm-y", None)  # no control: no headline, not a candidate by headline
    pair, why = default_pair(paths)
    assert pair == "llm-a__gdm-x" and "headline_gain 0.1200" in why and "of 2 pair(s)" in why


def test_without_cv_metrics_falls_back_and_says_so(tmp_path):
    pair, why = default_pair(_run(tmp_path))
    assert pair == "llm-b__gdm-x" and "alignment_score 0.3000" in why and "no metrics/cv" in why
