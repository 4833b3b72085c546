"""Render the findings as Markdown and as one self-contained HTML page (PNG plots embedded as base64)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class Block:
    kind: str  # h1 | h2 | p | table | img (img: path relative to reports/)
    content: Any


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([head, rule, *body])


def render_md(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if b.kind == "h1":
            parts.append(f"# {b.content}")
        elif b.kind == "h2":
            parts.append(f"## {b.content}")
        elif b.kind == "p":
            parts.append(str(b.content))
        elif b.kind == "table":
            parts.append(_md_table(b.content) if len(b.content) else "_(empty)_")
        elif b.kind == "img":
            parts.append(f"![{b.content}]({b.content})")
        else:
            raise ValueError(f"unknown block kind {b.kind!r}")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", re.sub(r"`(.+?)`", r"<code>\1</code>", html.escape(text)))


def render_html(blocks: list[Block], reports: Path) -> str:
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>protalign findings</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style></head><body>"]  # fmt: skip
    for b in blocks:
        if b.kind in ("h1", "h2"):
            parts.append(f"<{b.kind}>{_inline(str(b.content))}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{_inline(str(b.content))}</p>")
        elif b.kind == "table":
            parts.append(
                b.content.to_html(index=False, na_rep="") if len(b.content) else "<p><i>(empty)</i></p>"
            )
        elif b.kind == "img":
            data = base64.b64encode((reports / b.content).read_bytes()).decode("ascii")
            parts.append(f"<p><img alt='{html.escape(b.content)}' src='data:image/png;base64,{data}'></p>")
        else:
            raise ValueError(f"unknown block kind {b.kind!r}")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
