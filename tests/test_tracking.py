"""MLflow tracking: runs land in the main root's SQLite store with provenance tags; locked stores are retried."""

from __future__ import annotations

import sqlite3
import subprocess

import pytest

from protalign import tracking
from protalign.paths import Paths


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("PROTALIGN_MAIN_ROOT", raising=False)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=tmp_path, check=True)
    (tmp_path / "data.dvc").write_text("outs:\n- md5: abc123.dir\n  path: data\n")
    return tmp_path


def test_run_logged_with_provenance(repo, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "my-exp")
    with tracking.mlflow_run(Paths(repo), "align", "a__b", {"align": {"lr": 0.001}}) as run:
        run.log_metrics({"val_loss": 1.5, "recall@1": 0.25}, step=3)
    with sqlite3.connect(repo / "mlflow.db") as con:
        (name,) = con.execute("select name from runs").fetchone()
        tags = dict(con.execute("select key, value from tags"))
        params = dict(con.execute("select key, value from params"))
        metrics = {k: v for k, v in con.execute("select key, value from metrics")}
        exp = {r[0] for r in con.execute("select name from experiments")}
    assert name == "my-exp:align@a__b" and "my-exp" in exp
    assert tags["data_dvc_md5"] == "abc123.dir" and len(tags["git_commit"]) == 40
    assert params["align.lr"] == "0.001"
    assert metrics == {"val_loss": 1.5, "recall_at_1": 0.25}


def test_failed_stage_marks_run_failed(repo):
    with pytest.raises(RuntimeError):
        with tracking.mlflow_run(Paths(repo), "align", "a__b", {}):
            raise RuntimeError("boom")
    with sqlite3.connect(repo / "mlflow.db") as con:
        assert con.execute("select status from runs").fetchone()[0] == "FAILED"


def test_locked_store_is_retried(monkeypatch):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    monkeypatch.setattr(tracking, "_RETRY_SECONDS", 5.0)
    assert tracking._retry(flaky, "test") == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        tracking._retry(lambda: (_ for _ in ()).throw(ValueError("other")), "test")
