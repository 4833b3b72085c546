"""The session run's analysis outputs: findings (Markdown + HTML), every declared plot, head_depth per depth.

All read the one `pipeline_run` (every GDM x two LLMs), so they cost nothing beyond the run itself.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from protalign.params import load_params
from protalign.structure.references import is_reference

pytestmark = pytest.mark.pipeline

FINDINGS = ("F1 (RQ1)", "F2 (RQ1)", "F3 (RQ3)", "F4 (RQ3)", "F5 (RQ3)", "F6 (RQ4)", "F7 (RQ5)", "F8 (RQ6)")


def _params(run):
    return load_params(run.root / "params.yaml")


def _pairs(run) -> list[str]:
    p = _params(run)
    return [f"{llm}__{gdm}" for llm in p.align.llms for gdm in p.structure.gdms]


def _declared_outs(run, suffix: str) -> set[str]:
    """Output paths ending in `suffix` that dvc.yaml declares outside foreach/matrix templates."""
    stages = yaml.safe_load((run.root / "dvc.yaml").read_text())["stages"]
    found = set()
    for stage in stages.values():
        body = stage.get("do", stage)
        for out in body.get("outs", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            if path.endswith(suffix) and "${" not in path:
                found.add(path)
    return found


def test_findings_render_every_finding_and_every_pair(pipeline_run):
    reports = pipeline_run.root / "reports"
    md, page = (reports / "findings.md").read_text(), (reports / "findings.html").read_text()
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    for key in FINDINGS:
        assert sum(h.startswith(key) for h in headings) == 1, (key, headings)
        assert re.search(rf"<h2>{re.escape(key)}", page), key
    for (
        key
    ) in FINDINGS:  # each finding ends with a verdict (reproduced / not reproduced / inconclusive / ...)
        section = md.split(f"## {key}", 1)[1].split("\n## ", 1)[0]
        assert "Verdict" in section or "not testable here" in section, (key, section[:500])
    compared = [pair for pair in _pairs(pipeline_run) if not is_reference(pair.split("__")[1])]
    assert compared
    for pair in compared:  # RQ2 table and depth table name every pair (reference encoders are kept out)
        assert pair in md and pair in page, pair
    p = _params(pipeline_run)
    for name in (*p.align.llms, *(g for g in p.structure.gdms if not is_reference(g))):
        assert name in md and name in page, name
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert images and all((reports / i).is_file() for i in images), images
    assert page.count("data:image/png;base64,") == len(images)  # every plot embedded: the page stands alone
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_every_declared_plot_is_a_real_image(pipeline_run):
    pngs = _declared_outs(pipeline_run, ".png")
    assert {"reports/alignment.png", "reports/depth.png", "reports/properties/properties.png",
            "reports/correlations/pearson.png", "reports/alignment_matrix.png"} <= pngs, pngs  # fmt: skip
    for rel in sorted(pngs):
        path = pipeline_run.root / rel
        assert path.stat().st_size > 1000, rel
        with Image.open(path) as im:
            im.verify()  # PNG structure and checksums
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) >= 100, (rel, im.size)
            pixels = np.asarray(im.convert("L"), dtype=np.float32)
        assert pixels.std() > 1.0, f"{rel} is blank"  # something was drawn


def test_head_depth_writes_every_depth_for_every_pair(pipeline_run):
    root, p = pipeline_run.root, _params(pipeline_run)
    depths = sorted(p.analysis.depths)
    assert len(depths) >= 2, "the test params must sweep at least two depths"
    for pair in _pairs(pipeline_run):
        metric_files = sorted(f.name for f in (root / "metrics" / "depth" / pair).iterdir())
        assert metric_files == [f"L{d}.json" for d in depths], (pair, metric_files)
        table_files = sorted(f.name for f in (root / "reports" / "depth" / pair).iterdir())
        assert table_files == sorted(f"L{d}{ext}" for d in depths for ext in (".csv", ".seeds.csv.gz")), (pair, table_files)
        primary = p.split.method  # head_depth cross-validates under the primary split's method only
        for d in depths:
            m = json.loads((root / "metrics" / "depth" / pair / f"L{d}.json").read_text())
            assert m["structure_layers"] == d and set(m["methods"]) == {primary}, (pair, d, m["methods"])
            score = m["methods"][primary]["alignment_score"]
            assert score["ci_low"] <= score["estimate"] <= score["ci_high"], (pair, d, score)
            rows = pd.read_csv(root / "reports" / "depth" / pair / f"L{d}.csv")
            assert set(rows["method"]) == {primary} and rows["score"].notna().all(), (pair, d)
        cv = json.loads((root / "metrics" / "cv" / f"{pair}.json").read_text())
        layers = p.align.structure_layers  # the saved heads' depth is reused from crossval, not refitted
        if layers in depths:  # same fits: the depth archive's rows are crossval's rows of the depth seeds
            keys = ["id", "seed", "rr", "score"]
            reused = pd.read_csv(root / "reports" / "depth" / pair / f"L{layers}.seeds.csv.gz")
            full = pd.read_csv(root / "reports" / "cv" / f"{pair}.seeds.csv.gz")
            full = full[(full["method"] == primary) & full["seed"].isin(p.analysis.depth_seeds)]
            reused = reused[reused["method"] == primary]
            pd.testing.assert_frame_equal(
                reused[keys].sort_values(["seed", "id"]).reset_index(drop=True),
                full[keys].sort_values(["seed", "id"]).reset_index(drop=True),
            )
            assert cv["methods"][primary]["n_seeds"] == len(p.analysis.seeds), pair
    table = pd.read_csv(root / "reports" / "depth.csv")
    assert sorted(zip(table["pair"], table["layers"], strict=True)) == sorted(
        (pair, d) for pair in _pairs(pipeline_run) for d in depths
    )
