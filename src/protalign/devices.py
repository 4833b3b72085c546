"""`cpu | cuda | auto` -> torch.device: the one place that decides where a stage runs.

`auto` takes the GPU when torch sees one; asking for `cuda` without one is an error, never a silent CPU run (a
study timed on the wrong device is worse than no study). torch is imported lazily: the CLI imports this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protalign.errors import InputError, ToolError

if TYPE_CHECKING:
    import torch

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str, key: str = "device") -> torch.device:
    """The device `name` stands for; `key` is the params path named in errors (e.g. "structure.device")."""
    import torch

    if name not in DEVICES:
        raise InputError(f"{key} must be cpu | cuda | auto, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ToolError(f"{key} is 'cuda' but torch sees no CUDA device (use 'auto' or 'cpu')")
    return torch.device(name)
