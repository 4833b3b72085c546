"""benchmarks/gpu_check.py without a GPU: the cpu-vs-cpu self-check on 2 real entries (smallest LLM + GAT), the
clear no-CUDA exit, and the cosine verdict (which must be able to fail)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verdict_fails_below_the_threshold():
    gc = _module()
    a = np.random.default_rng(0).normal(size=(3, 16))
    b = a.copy()
    assert gc.verdict(["x", "y", "z"], a, b, 0.999)["ok"]
    b[1] = np.random.default_rng(1).normal(size=16)
    bad = gc.verdict(["x", "y", "z"], a, b, 0.999)
    assert not bad["ok"] and bad["worst_id"] == "y"
    assert gc.row_cosines(np.zeros((1, 4)), np.ones((1, 4)))[0] == 0.0  # a zero vector never passes


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the real check runs instead")
def test_without_cuda_nothing_is_compared(capsys, tmp_path):
    assert _module().main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "no CUDA device: nothing compared"


def test_cpu_only_self_check_on_two_real_entries(shared_data, tmp_path):
    out = tmp_path / "report.json"
    cmd = [sys.executable, str(SCRIPT), str(shared_data / "structures"), "--n", "2", "--cpu-only"]
    cmd += ["--llms", "minilm-l6", "--gdms", "gat", "--threads", "1", "--cache", str(tmp_path / "cache")]
    proc = subprocess.run(cmd + ["--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["devices"] == ["cpu", "cpu"] and len(report["entries"]) == 2
    assert [m["model"] for m in report["models"]] == ["minilm-l6", "gat"]
    for m in report["models"]:
        assert m["ok"] and m["min_cosine"] >= 0.999 and sorted(m["cosines"]) == sorted(report["entries"])
        assert all(rate > 0 for rate in m["proteins_per_s"].values()) and len(m["proteins_per_s"]) == 2
    assert report["imported"] == {"dvc": False, "mlflow": False}
