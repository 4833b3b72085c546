"""MLflow tracking for every training stage.

The store (SQLite) and its artifacts live in the MAIN repository root, even when DVC runs a queued experiment in a
temporary copy under .dvc/tmp/exps/ (those copies are deleted afterwards, and their runs would vanish with them).
`MLFLOW_TRACKING_URI` overrides everything. Each run is tagged with the git commit, the data.dvc hash and the DVC
experiment name, so a number in MLflow can always be traced back to code + data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from protalign.paths import Paths, main_root

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_EXPERIMENT = "protalign"
_RETRY_SECONDS = float(os.environ.get("PROTALIGN_MLFLOW_RETRY_SECONDS", "120"))


def tracking_uri(root: Path) -> str:
    """`MLFLOW_TRACKING_URI` if set, else SQLite in the main root (absolute, so queued copies share it)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{main_root(root) / 'mlflow.db'}"


def artifact_location(root: Path) -> str:
    return (main_root(root) / "mlartifacts").resolve().as_uri()


def _retry(fn: Callable[[], T], what: str) -> T:
    """SQLite allows one writer: parallel `dvc exp run -j N` workers retry on 'database is locked'."""
    deadline = time.monotonic() + _RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            return fn()
        except Exception as exc:  # mlflow wraps sqlite errors in several exception types
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            log.warning("MLflow store busy during %s; retrying in %.1fs", what, delay)
            time.sleep(delay + random.random() * delay)
            delay = min(delay * 2, 5.0)


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_hash(root: Path) -> str:
    """The md5 DVC recorded for data/ in data.dvc (what the corpus was), or 'unknown'."""
    f = root / "data.dvc"
    try:
        outs = yaml.safe_load(f.read_text()).get("outs", [])
        return str(outs[0].get("md5", "unknown"))
    except (OSError, AttributeError, IndexError, TypeError, yaml.YAMLError):
        return "unknown"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class RunLogger:
    """Thin wrapper so stages log without knowing MLflow; every call retries on a locked store."""

    def __init__(self, mlflow_module: Any, run_id: str):
        self._mlflow = mlflow_module
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {k.replace("@", "_at_"): float(v) for k, v in metrics.items() if v is not None}
        _retry(lambda: self._mlflow.log_metrics(clean, step=step), "log_metrics")

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {k: str(v)[:6000] for k, v in _flatten(params).items()}
        items = list(flat.items())
        for i in range(0, len(items), 90):  # MLflow caps a batch at 100 params
            chunk = dict(items[i : i + 90])
            _retry(lambda chunk=chunk: self._mlflow.log_params(chunk), "log_params")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        _retry(lambda: self._mlflow.set_tags(dict(tags)), "set_tags")

    def log_artifact(self, path: str | Path) -> None:
        _retry(lambda: self._mlflow.log_artifact(str(path)), "log_artifact")


@contextlib.contextmanager
def mlflow_run(paths: Paths, stage: str, item: str, params: Mapping[str, Any]) -> Iterator[RunLogger]:
    """One MLflow run per training-stage invocation, named `<stage>@<item>` (prefixed by the DVC experiment)."""
    import mlflow  # heavy import: only stages that train pay for it

    root = paths.root.resolve()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(tracking_uri(root))
    exp_name = os.environ.get("DVC_EXP_NAME")
    experiment = os.environ.get("PROTALIGN_MLFLOW_EXPERIMENT") or exp_name or DEFAULT_EXPERIMENT

    def _experiment_id() -> str:
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        try:
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            location = None if uri and not uri.startswith("sqlite") else artifact_location(root)
            return mlflow.create_experiment(experiment, artifact_location=location)
        except Exception:  # created concurrently by another worker
            found = mlflow.get_experiment_by_name(experiment)
            if found is None:
                raise
            return found.experiment_id

    experiment_id = _retry(_experiment_id, "create experiment")
    run_name = f"{stage}@{item}" if not exp_name else f"{exp_name}:{stage}@{item}"
    tags = {
        "protalign.stage": stage,
        "protalign.item": item,
        "git_commit": git_commit(root),
        "data_dvc_md5": data_hash(root),
        "dvc_exp_name": exp_name or "",
    }
    run = _retry(
        lambda: mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags), "start_run"
    )
    status = "FAILED"
    try:
        logger = RunLogger(mlflow, run.info.run_id)
        logger.log_params(params)
        yield logger
        status = "FINISHED"
    finally:
        _retry(lambda: mlflow.end_run(status=status), "end_run")
