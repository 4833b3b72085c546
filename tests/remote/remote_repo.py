"""Scratch DVC repositories wired to an S3 endpoint, for the remote tests (real `dvc` CLI, bounded time)."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from servers.s3_server import ACCESS_KEY, REGION, SECRET_KEY

REMOTE = "s3"  # the remote name in the committed .dvc/config
DVC_TIMEOUT = 240  # hard limit for one dvc command: a hang fails the test instead of the whole suite
_BUCKETS = itertools.count()


def new_bucket(prefix: str = "t") -> str:
    return f"{prefix}-{os.getpid()}-{next(_BUCKETS)}"


@dataclass
class RemoteRepo:
    """A scratch DVC repository wired to an S3 endpoint; `dvc()` runs the real CLI with bounded time."""

    root: Path
    env: dict
    bucket: str = ""
    log: list[str] = field(default_factory=list)

    def dvc(self, *args: str, timeout: float = DVC_TIMEOUT) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        res = subprocess.run(
            ["dvc", *args], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        res.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
        self.log.append(
            f"$ dvc {' '.join(args)}  [rc={res.returncode}, {res.elapsed:.1f}s]\n{res.stdout}{res.stderr}"
        )
        return res

    def ok(self, *args: str, timeout: float = DVC_TIMEOUT) -> str:
        res = self.dvc(*args, timeout=timeout)
        assert res.returncode == 0, (
            f"dvc {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
        return res.stdout + res.stderr

    def configure(self, endpoint: str, bucket: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY,
                  connect_timeout: int = 2, read_timeout: int = 10) -> None:  # fmt: skip
        """Write .dvc/config.local the way `dvc remote modify --local` would (endpoint, region, credentials)."""
        self.bucket = bucket
        (self.root / ".dvc" / "config.local").write_text(
            f"['remote \"{REMOTE}\"']\n"
            f"    url = s3://{bucket}/protalign\n"
            f"    endpointurl = {endpoint}\n"
            f"    region = {REGION}\n"
            f"    access_key_id = {key}\n"
            f"    secret_access_key = {secret}\n"
            f"    connect_timeout = {connect_timeout}\n"
            f"    read_timeout = {read_timeout}\n"
        )

    def cached_outs(self) -> list[str]:
        """Every DVC-cached output (data.dvc + stage outs with cache: true), from DVC's own index."""
        from dvc.repo import Repo

        with Repo(str(self.root)) as repo:
            return sorted(o.def_path for o in repo.index.outs if o.use_cache)

    def digest(self, rels: list[str]) -> dict[str, str]:
        """{relative file: sha256} for every file under the given outputs (absent ones contribute nothing)."""
        out: dict[str, str] = {}
        for rel in rels:
            p = self.root / rel
            files = (
                [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.exists() else []
            )
            for f in files:
                out[str(f.relative_to(self.root))] = hashlib.sha256(f.read_bytes()).hexdigest()
        return out

    def md5_keys(self, rels: list[str]) -> set[str]:
        """DVC 3 object keys ("ab/cdef...", the md5 of the content) of every file under the given outputs."""
        keys = set()
        for rel in self.digest(rels):
            h = hashlib.md5((self.root / rel).read_bytes()).hexdigest()
            keys.add(f"{h[:2]}/{h[2:]}")
        return keys

    def cache_snapshot(self) -> dict[str, str]:
        return self.digest([".dvc/cache"])

    def drop_data(self) -> None:
        """What a fresh `git clone` lacks: the DVC cache and every cached output."""
        for rel in self.cached_outs():
            p = self.root / rel
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        shutil.rmtree(self.root / ".dvc" / "cache", ignore_errors=True)
        shutil.rmtree(self.root / ".dvc" / "tmp", ignore_errors=True)


def aws_isolated_env(base: dict, home: Path) -> dict:
    """No host AWS profile, credentials, or instance metadata; botocore tries each request at most twice."""
    for name in ("aws-config", "aws-credentials"):  # empty files: botocore refuses a missing explicit path
        (home / name).touch()
    env = {k: v for k, v in base.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(home / "aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="2", AWS_RETRY_MODE="standard",
    )  # fmt: skip
    return env


def copy_repo(pipeline_run, dst: Path) -> RemoteRepo:
    """Copy the run's repository (git, DVC cache, outputs, MLflow store); DVC's own tmp state stays behind."""
    src = pipeline_run.root

    def skip(folder: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(folder) == src / ".dvc" and "tmp" in names else []

    shutil.copytree(src, dst, symlinks=True, ignore=skip)
    return RemoteRepo(dst, aws_isolated_env(pipeline_run.env, dst.parent))
