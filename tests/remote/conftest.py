"""Fixtures for the DVC S3 remote tests: a moto S3 server process and scratch copies of the session pipeline run.

The session `pipeline_run` repository is never changed here: every test works on its own copy, with the remote
"s3" from the committed `.dvc/config` pointed at the local server through `.dvc/config.local` (as users do).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from remote_repo import RemoteRepo, copy_repo, new_bucket

from servers.s3_server import S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """One moto S3 server process for the session (tests use their own buckets); stopped at the end."""
    with S3Server(tmp_path_factory.mktemp("s3-server")) as server:
        yield server


@pytest.fixture
def make_repo(pipeline_run, tmp_path: Path):
    """Factory: a private copy of the session pipeline run (`with_data=False`: as a fresh git clone would be)."""
    made = []

    def make(name: str = "repo", with_data: bool = True) -> RemoteRepo:
        dst = tmp_path / name
        repo = copy_repo(pipeline_run, dst)
        if not with_data:
            repo.drop_data()
        made.append(repo)
        return repo

    yield make
    for repo in made:  # failures show what dvc said
        print("\n".join(repo.log))


@pytest.fixture(scope="session")
def pushed(pipeline_run, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> RemoteRepo:
    """A copy of the pipeline run pushed once to a bucket on the session server (read-only for tests)."""
    dst = tmp_path_factory.mktemp("pushed") / "repo"
    repo = copy_repo(pipeline_run, dst)
    bucket = new_bucket("pushed")
    s3_server.create_bucket(bucket)
    repo.configure(s3_server.endpoint, bucket)
    repo.ok("push")
    return repo
