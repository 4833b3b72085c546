"""`protalign <command>`: one thin command per stage. It reads params.yaml and calls the stage's `run()`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path

from protalign.errors import ParamsError, UserError
from protalign.params import load_params
from protalign.paths import Paths
from protalign.use import commands as use_commands

# command -> (module, whether it takes --llm, whether it takes --gdm)
STAGES: dict[str, tuple[str, bool, bool]] = {
    "prepare": ("protalign.corpus.prepare", False, False),
    "split": ("protalign.corpus.split", False, False),
    "summarize": ("protalign.text.summarize", False, False),
    "embed-text": ("protalign.text.embed", True, False),
    "finetune": ("protalign.text.finetune", True, False),
    "embed-text-finetuned": ("protalign.text.embed_finetuned", True, False),
    "train-structure": ("protalign.structure.train", False, True),
    "embed-structure": ("protalign.structure.embed", False, True),
    "align": ("protalign.align.train", True, True),
    "evaluate": ("protalign.align.evaluate", True, True),
    "report": ("protalign.analysis.report", False, False),
    "cluster": ("protalign.corpus.clusters", False, False),
    "folds": ("protalign.corpus.folds", False, False),
    "search-homologs": ("protalign.corpus.homologs", False, False),
    "crossval": ("protalign.analysis.cv", True, True),
    "head-depth": ("protalign.analysis.head_depth", True, True),
    "look-up": ("protalign.analysis.lookup", True, False),
    "correlate": ("protalign.analysis.correlations", False, False),
    "properties": ("protalign.analysis.properties", False, False),
    "findings": ("protalign.analysis.findings", False, False),
    "summarize-run": ("protalign.analysis.summary", False, False),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="protalign", description=__doc__)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, and a traceback even for user errors"
    )
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fetch", help="build data/ from a source and version it with `dvc add data`")
    f.add_argument("--source", default=None, help="bundled | PATH (folder of PDB/mmCIF files) | rcsb")
    f.add_argument("--n", type=int, default=None, help="with --source rcsb: entries to sample (default: fetch.n)")
    f.add_argument("--no-dvc-add", action="store_true", help="write data/ but do not run `dvc add data`")
    use_commands.add_parsers(sub)  # embed | search | describe: use the aligned space after a run
    w = sub.add_parser("sweeps", help="summarise finished DVC experiments into reports/sweeps/")
    w.add_argument("--from", dest="exp_json", default=None, help="a saved `dvc exp show --json` dump")
    v = sub.add_parser("show", help="the run's answer: pairs ranked by headline gain, chance, findings and plots")
    v.add_argument("--summary", default=None, help="a summary file (default: reports/summary.json)")

    for name, (module, llm, gdm) in STAGES.items():
        s = sub.add_parser(name, help=f"run the `{name.replace('-', '_')}` stage ({module})")
        if llm:
            s.add_argument("--llm", required=True)
        if gdm:
            s.add_argument("--gdm", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Only `UserError` becomes a one-line message (exit 2); any other exception is a bug and
    propagates with its traceback. `-v` prints the traceback of a UserError too."""
    if os.environ.get("PROTALIGN_AUDIT_OPENS"):  # tests: log every project file this command opens
        from protalign import audit

        audit.install(os.environ["PROTALIGN_AUDIT_OPENS"], shlex.join(["protalign", *(argv or sys.argv[1:])]))
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    try:
        return _dispatch(args)
    except UserError as exc:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"protalign {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _load_params(path: str):
    try:
        return load_params(path)
    except ParamsError:
        raise
    except ValueError as exc:  # params validation reports bad keys/values as ValueError: a user error
        raise ParamsError(str(exc)) from exc


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "sweeps":  # reads experiments, not params.yaml (an experiment may have any params)
        from protalign.analysis import sweeps

        sweeps.run(Paths(Path.cwd()), source=args.exp_json)
        return 0
    if args.command == "show":  # reads the summary the last run wrote, not params.yaml
        from protalign.analysis import summary

        sys.stdout.write(summary.show(Paths(Path.cwd()), args.summary))
        return 0
    params = _load_params(args.params)
    paths = Paths(Path.cwd())
    if params.compute.engine != "local":  # connect once; stages (and cv._map) dispatch through it
        from protalign import compute

        compute.engine_for(params)
    if args.command == "fetch":
        from protalign.corpus import fetch

        summary = fetch.run(
            args.source or params.fetch.source, paths, dvc_add=not args.no_dvc_add,
            n=args.n or params.fetch.n, seed=params.seed, workers=params.fetch.workers,
        )  # fmt: skip
        logging.getLogger("protalign").info("fetch: %s", summary)
        return 0
    if args.command in use_commands.COMMANDS:
        return use_commands.dispatch(args, params, paths)
    module, takes_llm, takes_gdm = STAGES[args.command]
    kwargs = {}
    if takes_llm:
        kwargs["llm"] = args.llm
    if takes_gdm:
        kwargs["gdm"] = args.gdm
    importlib.import_module(module).run(params, paths, **kwargs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
