"""The one `resolve_device`: cpu | cuda | auto, and a clear error instead of a silent CPU run."""

from __future__ import annotations

import pytest
import torch

from protalign.devices import resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_auto_without_cuda_is_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", "structure.device") == torch.device("cpu")


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"structure\.device is 'cuda' but torch sees no CUDA device"):
        resolve_device("cuda", "structure.device")


def test_cuda_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("bad", ["tpu", "cuda:0", "CPU", ""])
def test_unknown_names_the_key(bad):
    with pytest.raises(ValueError, match=r"embed_text\.device must be cpu \| cuda \| auto"):
        resolve_device(bad, "embed_text.device")
