"""Study-scale text-shortcut and sequence-blind ablations: one LLM, every GDM, the baseline and four ablations.

How much of the alignment is structure, and how much is a look-up of the name, the size or the sequence? In a
scratch copy of this repository on the corpus folder DATA (the 815-entry ../shared/data), restricted to one LLM
(`--llm`, default minilm-l6, the fastest) and every GDM of params.yaml:

1. the baseline: `dvc repro evaluate crossval` (only the stages those need; no fine-tuning), committed;
2. one DVC experiment per ablation, `dvc exp run --temp -n <name> -S <setting> evaluate crossval`, one after
   the other (each timed, with the peak RSS of its process tree; unchanged upstream stages come from the cache):
   `no_ids`, `name_only`, `length_only` (summarize.writer) and `sequence_blind` (structure.residue_types=false);
3. `dvc exp show --json` → reports/study/ablations/ablations.csv (ablation × gdm: test-split alignment score and
   its untrained baseline, recall@1/@10 text→structure with chance, CV score per method) and RUN.md.

Resumable: the scratch folder is kept (`--scratch`); a rerun reuses its baseline and skips every experiment that
already finished under the current baseline commit (the timings of earlier runs are kept in ablation_timings.json).
`--dry-run` prints the plan and what is already done, and changes nothing.

    python benchmarks/study_ablations.py ../shared/data [--llm minilm-l6] [--scratch DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import yaml
from study_run import REPO, _copy_tree, absolute_weights, study_env

from protalign.analysis.sweeps import PAIR_METRICS, attach_detail_files, collect, exp_show_json
from protalign.docs_tables import ablation_grid

TARGETS = ("evaluate", "crossval")  # the per-pair metrics the table reads (metrics/<pair>.json, metrics/cv/)
ABLATIONS: dict[str, tuple[str, ...]] = {
    "no_ids": ("summarize.writer=no_ids",),
    "name_only": ("summarize.writer=name_only",),
    "length_only": ("summarize.writer=length_only",),
    "sequence_blind": ("structure.residue_types=false",),
}
BASELINE = "baseline"
TIMINGS = "ablation_timings.json"
TEST_KEYS = ("alignment_score", "baseline_alignment_score", "recall@1_t2s", "chance_recall@1", "recall@10_t2s",
             "chance_recall@10", "n_test")  # fmt: skip
# issue 15's headline, from the test or the CV metrics file, where the pipeline writes it
OPTIONAL_KEYS = ("headline_gain", "headline_ci_low", "headline_ci_high")


def run_timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Run `cmd` (output streamed); (wall seconds, peak RSS MiB of its process tree). Raises on failure."""
    print("+", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env)
    peak, done = 0.0, threading.Event()

    def poll() -> None:
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    proc.wait()
    done.set()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, peak


def study_params(source: Path, llm: str, gdms: list[str] | None, sets: list[str] = ()) -> dict:
    """params.yaml of the scratch copy: `source` with one LLM (no fine-tuned variant), optionally fewer GDMs, and
    `--set key.path=value` overrides (YAML values, e.g. `analysis.methods=[cluster]`; listed in RUN.md)."""
    params = yaml.safe_load(absolute_weights(source.read_text(), REPO))  # the scratch copy lives elsewhere
    params["embed_text"]["llms"] = [llm]
    params["align"]["llms"] = [llm]
    if gdms:
        params["structure"]["gdms"] = list(gdms)
    for item in sets:
        key, sep, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        if not sep or leaf not in node:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with an existing params key")
        node[leaf] = yaml.safe_load(value)
    return params


def _pairs_metrics(metrics: dict[str, dict], llm: str, gdm: str) -> tuple[dict, dict]:
    pair = f"{llm}__{gdm}"
    test = next(
        (m for p, m in metrics.items() if (x := PAIR_METRICS.match(p)) and x.group("pair") == pair), {}
    )
    return test, metrics.get(f"metrics/cv/{pair}.json", {})


def ablation_table(
    states: list[dict], llm: str, gdms: list[str], names: list[str], root: Path | None = None
) -> pd.DataFrame:
    """One row per (ablation, gdm) from `dvc exp show --json` states: the HEAD baseline is `baseline`, experiments
    are matched by name (the last baseline listed first wins). The per-pair files are not DVC metrics: with `root`
    (the scratch repository) they are read from each experiment's commit. Missing experiments or pairs give a row
    with `status` saying why, never a silent gap."""
    exps, skipped = collect(states)
    if root is not None:
        attach_detail_files(exps, root, skipped)
    head = next((e for e in exps if e.kind == "baseline"), None)
    found = {BASELINE: head} if head is not None else {}
    for e in exps:
        if e.kind == "experiment" and head is not None and e.baseline == head.name:
            found.setdefault(e.name, e)
    why = {s.name: s.reason for s in skipped}
    rows = []
    for name in [BASELINE, *names]:
        exp = found.get(name)
        for gdm in gdms:
            row: dict = {"ablation": name, "gdm": gdm, "llm": llm}
            if exp is None:
                row["status"] = f"missing: {why.get(name, 'no such finished experiment')}"
                rows.append(row)
                continue
            test, cv = _pairs_metrics(exp.metrics, llm, gdm)
            row["status"] = "ok" if test and cv else "missing metrics" + ("" if test else " (test)") + (
                "" if cv else " (cv)")  # fmt: skip
            row["changed"] = json.dumps(exp.changed, sort_keys=True) if name != BASELINE else ""
            row.update({k: test.get(k) for k in TEST_KEYS})
            row.update({k: src[k] for src in (test, cv) for k in OPTIONAL_KEYS if k in src})
            for method, m in sorted((cv.get("methods") or {}).items()):
                for key in ("alignment_score", "baseline_alignment_score", "gain_over_baseline"):
                    block = m.get(key) or {}
                    row[f"cv_{method}_{key}"] = block.get("estimate")
                    if key == "alignment_score":
                        row[f"cv_{method}_ci_low"], row[f"cv_{method}_ci_high"] = block.get("ci_low"), block.get(
                            "ci_high")  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def experiment_names(states: list[dict]) -> set[str]:
    """Names of the finished experiments of the HEAD baseline."""
    exps, _ = collect(states)
    head = next((e for e in exps if e.kind == "baseline"), None)
    return {e.name for e in exps if e.kind == "experiment" and head is not None and e.baseline == head.name}


def _git(scratch: Path, env: dict, *args: str, capture: bool = False) -> str:
    res = subprocess.run(["git", *args], cwd=scratch, env=env, check=True, text=True, capture_output=capture)
    return res.stdout if capture else ""


def _commit(scratch: Path, env: dict, message: str) -> None:
    _git(scratch, env, "add", "-A")
    if _git(scratch, env, "status", "--porcelain", capture=True).strip():
        _git(scratch, env, "-c", "user.email=study@local", "-c", "user.name=study", "commit", "-qm", message)


def setup(scratch: Path, data: Path, params: dict, env: dict, cache_dir: Path | None = None) -> None:
    """A fresh scratch copy with the corpus fetched (kept; a rerun reuses it)."""
    scratch.mkdir(parents=True)
    _copy_tree(scratch)
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _git(scratch, env, "init", "-q")
    # before any stage runs: DVC's run cache then restores the stages the shared cache already ran
    if cache_dir is not None:
        subprocess.run(["dvc", "cache", "dir", "--local", str(cache_dir)], cwd=scratch, env=env, check=True)
    _commit(scratch, env, "ablation study: code + params")
    subprocess.run(["protalign", "fetch", "--source", str(data)], cwd=scratch, env=env, check=True)
    _commit(scratch, env, "ablation study: corpus")


def _plan(args, scratch: Path, done: set[str], baseline_done: bool) -> list[str]:
    lines = [f"scratch copy: {scratch} ({'exists' if scratch.exists() else 'to be created'})",
             f"corpus: {args.data}; LLM: {args.llm}; GDMs: {args.gdms or 'all of ' + str(args.params)}",
             f"baseline: dvc repro {' '.join(TARGETS)}  [{'done' if baseline_done else 'to run'}]"]  # fmt: skip
    for name in args.ablations:
        sets = " ".join(f"-S {s}" for s in ABLATIONS[name])
        state = "done" if name in done else "to run"
        lines.append(f"{name}: dvc exp run --temp -n {name} {sets} {' '.join(TARGETS)}  [{state}]")
    lines.append(f"then: {args.out}/ablations.csv and RUN.md")
    return lines


def headline_md(table: pd.DataFrame) -> str:
    """GDM x ablation: the headline (cluster-fold rr gain over the shuffled-pairing control) with its interval."""
    if "headline_gain" not in table:
        return "(no headline_gain in the metrics)\n"
    return "\n".join(ablation_grid(table.to_dict("records"))) + "\n"


def write_run_md(out: Path, args, scratch: Path, commit: str, timings: dict, wall: float, table=None) -> None:
    md5 = yaml.safe_load((scratch / "data.dvc").read_text())["outs"][0]["md5"]
    cmd = shlex.join(["python", "benchmarks/study_ablations.py", *sys.argv[1:]])
    rows = "".join(
        f"| {name} | {' '.join(ABLATIONS.get(name, ('(none)',)))} | {t['wall_s']:.0f} | {t['peak_rss_mib']:.0f} |\n"
        for name, t in timings.items()
    )
    (out / "RUN.md").write_text(
        "# Ablation study (text shortcuts, sequence-blind structure)\n\n"
        f"- command: `{cmd}`\n"
        f"- corpus: {args.data} (data.dvc md5 `{md5}`)\n"
        f"- code: git commit `{commit}` of the repository plus its working tree at run time\n"
        f"- LLM: {args.llm}; GDMs: {', '.join(args.gdm_list)}; targets `{' '.join(TARGETS)}` and their upstream\n"
        f"- overrides of {args.params.name} (cuts): {', '.join(f'`{x}`' for x in args.sets) or 'none'}\n"
        + (f"- DVC cache shared with `{args.cache_dir}`: stages its run cache held were restored, not rerun "
           "(same code, params and inputs)\n" if args.cache_dir else "")
        + f"- wall time of this invocation: {wall:.0f} s; machine: {os.cpu_count()} CPUs, load average before the "
        f"run {args.load0}\n"
        "- experiments run one after the other (`dvc exp run --temp`); unchanged upstream stages come from the\n"
        "  DVC cache (a text ablation retrains no GDM; the sequence-blind one re-embeds no text)\n\n"
        "## Experiments\n\n| experiment | setting | wall (s) | peak RSS of the process tree (MiB) |\n"
        "|---|---|---:|---:|\n" + rows
        + "\n## Headline per GDM and ablation\n\nPer-protein reciprocal-rank gain of the trained heads over the "
        "shuffled-pairing control, cluster folds, paired by seed, interval over clusters x seeds (from "
        "`ablations.csv`):\n\n" + (headline_md(table) if table is not None else "(not computed)\n")
        + "\nTable: `ablations.csv` (one row per ablation × GDM; `status` says when a value is missing).\n\n"
        "## params.yaml (baseline)\n\n```yaml\n" + (scratch / "params.yaml").read_text() + "```\n"
    )  # fmt: skip


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="corpus folder (manifest.tsv, structures/, fasta/)")
    ap.add_argument("--llm", default="minilm-l6")
    ap.add_argument("--gdms", nargs="+", help="default: every GDM of --params")
    ap.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a params key of the baseline (YAML value), e.g. analysis.methods=[cluster]")
    ap.add_argument("--cache-dir", type=Path,
                    help="DVC cache to share (e.g. a study run's): its run cache restores unchanged stages")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "protalign-ablations")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "study" / "ablations")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and what is done; change nothing")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    args.data, scratch = args.data.resolve(), args.scratch.resolve()
    if not (args.data / "manifest.tsv").exists():
        print(f"no corpus at {args.data} (manifest.tsv missing)", file=sys.stderr)
        return 2
    params = study_params(args.params, args.llm, args.gdms, args.sets)
    args.gdm_list = list(params["structure"]["gdms"])
    env = study_env(scratch)
    if scratch.exists() and yaml.safe_load((scratch / "params.yaml").read_text()) != params:
        print(
            f"{scratch} holds a run with other params; pick another --scratch or remove it", file=sys.stderr
        )
        return 2
    lock = scratch / "dvc.lock"
    baseline_done = lock.exists() and not _git(scratch, env, "status", "--porcelain", capture=True).strip()
    done = experiment_names(exp_show_json(scratch)) if baseline_done else set()
    print("\n".join(_plan(args, scratch, done, baseline_done)), flush=True)
    if args.dry_run:
        return 0
    start = time.time()
    args.load0 = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    if not scratch.exists():
        setup(scratch, args.data, params, env, args.cache_dir.resolve() if args.cache_dir else None)
        with open(scratch / ".git" / "info" / "exclude", "a") as fh:
            fh.write(f"/{TIMINGS}\n")  # bookkeeping, not part of the experiments
    timings_file = scratch / TIMINGS
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    if not baseline_done:
        wall, peak = run_timed(["dvc", "repro", *TARGETS], scratch, env)
        # a rerun here only completes an interrupted baseline (same scratch, same params): keep the first record
        timings.setdefault(BASELINE, {"wall_s": wall, "peak_rss_mib": peak})
        _commit(scratch, env, "ablation study: baseline run")
        timings_file.write_text(json.dumps(timings, indent=1))
    for name in args.ablations:
        if name in done:
            print(f"{name}: already finished, skipped", flush=True)
            continue
        sets = [a for s in ABLATIONS[name] for a in ("-S", s)]
        wall, peak = run_timed(["dvc", "exp", "run", "--temp", "-n", name, *sets, *TARGETS], scratch, env)
        timings[name] = {"wall_s": wall, "peak_rss_mib": peak}
        timings_file.write_text(json.dumps(timings, indent=1))
    table = ablation_table(exp_show_json(scratch), args.llm, args.gdm_list, args.ablations, scratch)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "ablations.csv", index=False)
    write_run_md(args.out, args, scratch, commit, timings, time.time() - start, table)
    print(table.to_string(index=False))
    print(f"ablation reports in {args.out}")
    return 0 if (table["status"] == "ok").all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
