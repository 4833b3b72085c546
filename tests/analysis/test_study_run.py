"""benchmarks/study_run.py: the scratch copy lives elsewhere, so relative checkpoint paths in the study params are
resolved against the repository (the interrupted first study attempt failed on exactly that)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import study_run  # noqa: E402


def test_relative_weights_become_absolute_and_keywords_stay(tmp_path):
    text = (REPO / "benchmarks" / "study_params.yaml").read_text()
    out = yaml.safe_load(study_run.absolute_weights(text, tmp_path))["structure"]
    released = Path(out["scannet_released"]["weights"])
    assert released.is_absolute() and released == (tmp_path / "../shared/reference/scannet/ScanNet_PPI_noMSA.h5").resolve()
    assert out["scannet"]["weights"] == "trained" and out["gat"]["weights"] == "trained"
    assert study_run.absolute_weights("structure:\n  x:\n    weights: /abs/w.pt\n", tmp_path).endswith("/abs/w.pt\n")


def test_ablation_params_carry_the_absolute_checkpoint_path():
    import study_ablations

    params = study_ablations.study_params(REPO / "benchmarks" / "study_params.yaml", "gemma3-270m", None)
    assert Path(params["structure"]["scannet_released"]["weights"]).is_absolute()


def test_env_check_names_what_differs_from_the_lock(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\nnumpy==0.0.1\nno-such-package==1.0\n")
    line = study_run.env_vs_lock(lock)
    assert line.startswith("environment: differs") and "no-such-package==1.0" in line and "numpy==0.0.1" in line


def test_resume_refuses_a_folder_that_is_no_study_scratch(tmp_path, capsys):
    shared = tmp_path / "data"
    shared.mkdir()
    (shared / "manifest.tsv").write_text("id\n")
    assert study_run.main(["--data", str(shared), "--resume", str(tmp_path / "nope")]) == 2
    assert "not a kept study scratch copy" in capsys.readouterr().err
