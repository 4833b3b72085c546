"""The project's own user-error types: the CLI prints these as one line; anything else is a bug and keeps its traceback.

Each subclass also derives from the builtin it replaces, so callers (and tests) catching ValueError or
FileNotFoundError keep working.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, bad params or a missing upstream artifact: something the user fixes, not the code."""


class InputError(UserError, ValueError):
    """Input data or a setting the stage cannot use (the message says which and what is allowed)."""


class ParamsError(InputError):
    """params.yaml does not validate."""


class MissingArtifactError(UserError, FileNotFoundError):
    """An upstream artifact is absent (the message names the stage or command that makes it)."""


class ToolError(UserError, RuntimeError):
    """An external tool the project drives (dvc, mmseqs) is absent or failed; its message is passed on."""


def check_losses(stage: str, reasons: list[str], total: int, limit: float, where: str = "") -> None:
    """Fail when the share of `total` entries a stage skipped (one reason each) exceeds `limit`
    (`prepare.max_skipped_fraction`): a silent drop of many proteins would change every result downstream."""
    if not total or len(reasons) / total <= limit:
        return
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    raise InputError(
        f"{stage}: skipped {len(reasons)} of {total} entries ({len(reasons) / total:.1%}), more than "
        f"prepare.max_skipped_fraction {limit:.0%}{f' (reasons in {where})' if where else ''}; most common: "
        + "; ".join(f"{n}x {r}" for r, n in top)
    )
