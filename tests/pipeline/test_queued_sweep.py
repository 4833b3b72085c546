"""The GDM-dimension sweep as queued DVC experiments, end to end: `dvc exp run --queue` two tiny GearNet-Edge widths,
`dvc queue start`, `dvc exp show --only-changed`, `protalign sweeps`, then `dvc repro` reruns `findings` only.

Runs in a copy of the session's pipeline repository (with the run committed), so the other pipeline tests see
their repository unchanged."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from protalign.analysis import summary

pytestmark = pytest.mark.pipeline

QUEUE_TIMEOUT_S = 900  # both points take a few minutes on a loaded 2-core machine; fail loudly past this
LLM = "smollm2-135m"
PAIR = f"{LLM}__gearnet_edge"
# keep each point cheap: one pair, one GearNet training epoch, and only the stages up to `summarize_run` (the one
# declared metrics file; it needs evaluate, crossval and head_depth); a real sweep runs the whole DAG (README)
CHEAP = ["align.llms=[smollm2-135m]", "structure.train.epochs=1"]
TARGET = "summarize_run"
SET_KEYS = {"structure.gdms", "structure.gearnet_edge.hidden_dims", "align.llms", "structure.train.epochs"}
FIXED = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
SUMMARY_COL = re.compile(r"^(chance\.(r10|n_min|n_max)|[\w.+-]+__\w+\.(gain|gain_lo|gain_hi|score|r10))$")
POINTS = {"gdm8": [8], "gdm16": [8, 8]}  # widths 8 and 16 (GearNet-Edge concatenates its hidden layers)


@pytest.fixture(scope="module")
def sweep(pipeline_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep") / "repo"
    shutil.copytree(pipeline_run.root, root, symlinks=True)
    run = type(pipeline_run)(root=root, env=pipeline_run.env, repro_log="", ids=pipeline_run.ids)
    # a queued experiment starts from the last commit plus TRACKED changes (untracked dvc.lock / data.dvc would be
    # left out), so commit the default run first, as the README says
    run.run("git", "add", "-A")
    run.run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "default run")
    for name, dims in POINTS.items():
        sets = [
            "structure.gdms=[gearnet_edge]",
            f"structure.gearnet_edge.hidden_dims={json.dumps(dims)}",
            *CHEAP,
        ]
        cmd = ["dvc", "exp", "run", "--queue", "-n", name, *[a for s in sets for a in ("-S", s)], TARGET]
        res = run.run(*cmd, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
    t0 = time.monotonic()
    try:
        res = run.run("dvc", "queue", "start", check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        while True:
            status = run.run("dvc", "queue", "status", check=False).stdout
            if not any(w in status for w in ("Queued", "Running")) or time.monotonic() - t0 > QUEUE_TIMEOUT_S:
                break
            time.sleep(3)
        if "Failed" in status or any(w in status for w in ("Queued", "Running")):
            logs = "\n".join(run.run("dvc", "queue", "logs", n, check=False).stdout[-3000:] for n in POINTS)
            pytest.fail(f"queue did not finish cleanly after {time.monotonic() - t0:.0f}s:\n{status}\n{logs}")
    finally:
        run.run("dvc", "queue", "stop", "--kill", check=False)  # no worker or experiment left behind
    run.queue_seconds = time.monotonic() - t0
    return run


def test_queued_points_run_and_show_only_changed(sweep):
    # every column `--drop` hides is a dependency hash (a path, or the top-level folders data/ and metrics/)
    full = next(csv.reader(io.StringIO(sweep.run("dvc", "exp", "show", "--only-changed", "--csv").stdout)))
    hidden = [c for c in full if c not in FIXED and not SUMMARY_COL.match(c) and c not in SET_KEYS]
    assert all("/" in c or c in ("data", "metrics") for c in hidden), hidden
    # the README's recipe
    res = sweep.run("dvc", "exp", "show", "--only-changed", "--csv", "--drop", summary.DROP_DEPS)
    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(res.stdout)) if r["Experiment"]}
    assert set(POINTS) <= set(rows), res.stdout
    header = next(csv.reader(io.StringIO(res.stdout)))
    # readable: the changed params and the summary's columns side by side, nothing else
    params = [c for c in header if c not in FIXED and not SUMMARY_COL.match(c)]
    assert set(params) <= SET_KEYS and "structure.gearnet_edge.hidden_dims" in params, header
    metrics = [c for c in header if SUMMARY_COL.match(c)]
    # --only-changed drops a value equal in every row (R@10 is often 1.0 on so few test proteins): the headline
    # and the score of the swept pair differ between the points, so they are shown
    assert f"{PAIR}.gain" in metrics and f"{PAIR}.score" in metrics, header
    pairs = {c.split(".")[0] for c in metrics if "__" in c}  # the baseline's pairs and the sweep's
    assert len(metrics) <= 5 * len(pairs) + 3, metrics  # <= 5 per pair + chance
    for name, dims in POINTS.items():
        assert rows[name]["State"] == "Success"
        assert json.loads(rows[name]["structure.gearnet_edge.hidden_dims"]) == dims
        assert -2.0 <= float(rows[name][f"{PAIR}.score"]) <= 1.0
    print(f"queue of {len(POINTS)} points took {sweep.queue_seconds:.0f}s; --only-changed columns: {header}")


def test_exp_diff_lists_the_headline_differences(sweep):
    res = sweep.run("dvc", "exp", "diff", "gdm8", "gdm16", "--json", check=False)
    assert res.returncode == 0, res.stderr
    diff = json.loads(res.stdout)
    assert set(diff["metrics"]) == {"reports/summary.json"}, diff["metrics"]
    changed = diff["metrics"]["reports/summary.json"]
    assert all(SUMMARY_COL.match(k) for k in changed), changed
    revs = {r["name"]: r["revs"][0]["rev"]
            for st in json.loads(sweep.run("dvc", "exp", "show", "--json").stdout) for r in st.get("experiments") or []}  # fmt: skip
    committed = {
        n: json.loads(sweep.run("git", "show", f"{revs[n]}:reports/summary.json").stdout)[PAIR]
        for n in POINTS
    }
    score = changed[f"{PAIR}.score"]
    assert (score["old"], score["new"]) == (committed["gdm8"]["score"], committed["gdm16"]["score"])
    assert None not in (committed["gdm8"]["gain"], committed["gdm16"]["gain"])  # both points have a headline
    if committed["gdm8"]["gain"] != committed["gdm16"]["gain"]:
        assert f"{PAIR}.gain" in changed
    dims = diff["params"]["params.yaml"]["structure.gearnet_edge.hidden_dims"]  # DVC gives lists as text
    assert (json.loads(dims["old"]), json.loads(dims["new"])) == (POINTS["gdm8"], POINTS["gdm16"])
    md = sweep.run("dvc", "exp", "diff", "gdm8", "gdm16", "--md").stdout
    assert f"{PAIR}.score" in md and "hidden_dims" in md, md


def _embedding_width(root, rev: str) -> int:
    """Width of the experiment's embeddings/structure/gearnet_edge, read from its dvc.lock and the DVC cache."""
    show = subprocess.run(
        ["git", "show", f"{rev}:dvc.lock"], cwd=root, capture_output=True, text=True, check=True
    )
    lock = yaml.safe_load(show.stdout)
    md5 = lock["stages"]["embed_structure@gearnet_edge"]["outs"][0]["md5"]
    cache = root / ".dvc" / "cache" / "files" / "md5"
    listing = json.loads((cache / md5[:2] / md5[2:]).read_text())
    npy = next(e["md5"] for e in listing if e["relpath"] == "embeddings.npy")
    return int(np.load(cache / npy[:2] / npy[2:]).shape[1])


def test_protalign_sweeps_writes_the_points(sweep):
    res = sweep.run("protalign", "sweeps", check=False)
    assert res.returncode == 0, res.stderr
    out = sweep.root / "reports" / "sweeps"
    everything = pd.read_csv(out / "gdm_dim.csv", dtype={"rev": str})
    table = everything[everything["kind"] == "experiment"]
    assert set(table["experiment"]) == set(POINTS) and set(table["llm"]) == {LLM}, everything
    # the committed default run trains GearNet-Edge too (every GDM): its pairs are the baseline's points
    params = yaml.safe_load((sweep.root / "params.yaml").read_text())
    base = everything[everything["kind"] == "baseline"]
    assert set(base["llm"]) == set(params["align"]["llms"]) and len(everything) == len(table) + len(base)
    assert set(base["dim"]) == {sum(params["structure"]["gearnet_edge"]["hidden_dims"])}, base
    for name, dims in POINTS.items():
        row = table[table["experiment"] == name].iloc[0]
        assert row["dim"] == sum(dims) == _embedding_width(sweep.root, row["rev"])
        assert json.loads(row["hidden_dims"]) == dims
        committed = json.loads(sweep.run("git", "show", f"{row['rev']}:metrics/{PAIR}.json").stdout)
        assert row["alignment_score"] == pytest.approx(committed["alignment_score"], abs=1e-6)
        assert row["n_test"] == committed["n_test"]
    assert table["context"].nunique() == 1  # same other params: one series (the baseline is another one)
    assert not set(base["context"]) & set(table["context"])
    exps = pd.read_csv(out / "experiments.csv")
    assert {"gdm8", "gdm16"} <= set(exps["experiment"]) and "structure.gearnet_edge.hidden_dims" in exps
    assert (out / "gdm_dim.png").stat().st_size > 1000
    readme = (out / "README.md").read_text()
    assert "protalign sweeps" in readme and "gdm8" in readme and "gdm16" in readme


def test_repro_after_sweeps_refreshes_findings_only(sweep):
    if not (sweep.root / "reports" / "sweeps" / "gdm_dim.csv").exists():
        pytest.skip("needs test_protalign_sweeps_writes_the_points first")
    res = sweep.run("dvc", "repro", check=False)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "Running stage 'findings'" in log, log[-3000:]
    assert "Running stage 'train_structure" not in log and "Running stage 'align" not in log, log[-3000:]
    findings = (sweep.root / "reports" / "findings.md").read_text()
    f6 = findings.split("F6 (RQ4)", 1)[1].split("\n## ", 1)[0]
    # gdm8 = [8] and gdm16 = [8, 8] (+ the baseline's [16, 16]) differ in depth: no stratum reaches 6 widths
    assert "no series varies the width over >= 6 widths at fixed depth" in f6, f6
    assert "depth 1: 1 width(s)" in f6, f6
