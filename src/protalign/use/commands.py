"""CLI wiring of `protalign embed|search|describe` (kept here so cli.py only adds two lines) and their output."""

from __future__ import annotations

import argparse
from typing import Any

from protalign.use.pairs import Pair

COMMANDS = ("embed", "search", "describe")
PAIR_HELP = "pair <llm>__<gdm> (default: best alignment_score in metrics/)"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("embed", help="embed your own structures into a pair's aligned space (no DVC run)")
    e.add_argument("inputs", nargs="+", help="structure files or folders (PDB/mmCIF, gzipped or not)")
    e.add_argument("--out", required=True, help="output folder (structure/, aligned/, proteins.parquet)")
    e.add_argument("--pair", default=None, help=PAIR_HELP)
    e.add_argument(
        "--skip-bad", action="store_true", help="embed the usable files, list the others in meta.json"
    )

    s = sub.add_parser("search", help="rank structures by a text description (cosine in the aligned space)")
    s.add_argument("query", help="a description, e.g. 'The protein is named lysozyme.'")
    s.add_argument("--index", default=None, help="an `embed --out` folder (default: the run's corpus)")
    for p in (s, d := sub.add_parser("describe", help="nearest corpus descriptions of a structure file")):
        p.add_argument("--pair", default=None, help=PAIR_HELP)
        p.add_argument("--top", type=int, default=10, help="how many results (default 10)")
        p.add_argument(
            "--split",
            choices=("train", "val", "test"),
            default=None,
            help="only rank this split's proteins of the run",
        )
        p.add_argument(
            "--json", default=None, dest="json_out", help="also write the result as JSON to this file"
        )
        p.add_argument(
            "--approx-above",
            type=int,
            default=None,
            metavar="N",
            help="rank approximately (FAISS, exact re-rank) from N candidates (default 500000; 0: always exact)",
        )
    d.add_argument("structure", help="a PDB/mmCIF file (gzipped or not)")


def _table(rows: list[dict[str, Any]], columns: list[str], width: int = 60) -> list[str]:
    cells = [[str(r[c]) if not isinstance(r[c], float) else f"{r[c]:.4f}" for c in columns] for r in rows]
    cells = [[v if len(v) <= width else v[: width - 1] + "…" for v in row] for row in cells]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*columns), fmt.format(*("-" * w for w in widths))]
    return [line.rstrip() for line in lines + [fmt.format(*row) for row in cells]]


def render(pair: Pair, result: dict[str, Any]) -> str:
    lines = pair.trust_lines()
    if result["command"] == "search":
        lines += [
            f"query: {result['query']!r}"
            + ("  (truncated to the run's max_length)" if result["query_truncated"] else "")
        ]
    else:
        lines += [
            f"structure: {result['structure']} (id {result['structure_id']}, {result['structure_residues']} residues; "
            f"header names: {result['structure_header_names'] or 'none'})"
        ]
    cols = ["rank", "id", "score", "molecule_name", "organism"]
    lines += [f"candidates: {result['candidates']}", ""] + _table(result["results"], cols)
    if result["command"] == "describe" and result["results"]:
        lines += [
            "",
            f"best description ({result['results'][0]['id']}): {result['results'][0]['description']}",
        ]
    return "\n".join(lines)


def dispatch(args: argparse.Namespace, params: Any, paths: Any) -> int:
    if args.command == "embed":
        from protalign.use import embed

        summary = embed.run(params, paths, args.inputs, args.out, args.pair, args.skip_bad)
        pair = summary.pop("pair")
        print("\n".join(pair.trust_lines()))
        print(
            f"embedded {summary['n_embedded']} of {summary['n_files']} file(s) -> {summary['out']}/ "
            f"(structure/: {summary['structure_dim']}-d {pair.gdm} vectors, aligned/: {summary['aligned_dim']}-d "
            f"unit vectors, proteins.parquet)"
        )
        for s in summary["skipped"]:
            print(f"  skipped {s.get('file', s['id'])}: {s['reason']}")
        return 0
    if args.command == "search":
        from protalign.use import search

        a = args
        pair, result = search.run(
            params, paths, a.query, a.pair, a.top, a.index, a.split, a.json_out, approx_above=a.approx_above
        )
    else:
        from protalign.use import describe

        a = args
        pair, result = describe.run(
            params, paths, a.structure, a.pair, a.top, a.split, a.json_out, approx_above=a.approx_above
        )
    print(render(pair, result))
    return 0
