"""Fault handling of `dvc push` against the S3 remote: each failure is a clear error within bounded time, the local
cache is left intact, and a retried push completes once the fault is gone."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest
from remote_repo import RemoteRepo, new_bucket

from servers.s3_server import S3Server, free_port

pytestmark = pytest.mark.pipeline

FAIL_BOUND_S = 60  # a failing push must give up well within this (timeouts and retries are configured small)


def assert_clean_failure(repo: RemoteRepo, res, cache_before: dict, words: tuple[str, ...]) -> None:
    text = res.stdout + res.stderr
    assert res.returncode != 0, text
    assert "ERROR" in text and any(w in text for w in words), text
    assert "Traceback" not in text
    assert res.elapsed < FAIL_BOUND_S, f"took {res.elapsed:.0f}s"
    assert repo.cache_snapshot() == cache_before, "the local cache changed"


def assert_retry_completes(repo: RemoteRepo, server: S3Server) -> None:
    repo.ok("push")
    assert "in sync" in repo.ok("status", "-c")
    stored = {k.split("/files/md5/", 1)[1] for k in server.objects(repo.bucket)}
    assert repo.md5_keys(repo.cached_outs()) <= stored


def test_missing_bucket(make_repo, s3_server: S3Server):
    repo = make_repo()
    repo.configure(s3_server.endpoint, new_bucket("missing"))
    before = repo.cache_snapshot()
    res = repo.dvc("push")
    assert_clean_failure(repo, res, before, ("NoSuchBucket", "bucket does not exist"))
    s3_server.create_bucket(repo.bucket)
    assert_retry_completes(repo, s3_server)


class SilentEndpoint:
    """Accepts TCP connections and never answers: only read_timeout can end a request."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for conn in [*self.held, self.sock]:
            conn.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_endpoint(kind, make_repo, s3_server: S3Server):
    repo = make_repo()
    repo.env["AWS_MAX_ATTEMPTS"] = "1"  # s3fs still retries each call a few times on its own
    silent = SilentEndpoint() if kind == "silent" else None
    try:
        port = silent.port if silent else free_port()
        repo.configure(
            f"http://127.0.0.1:{port}", new_bucket("unreachable"), connect_timeout=1, read_timeout=1
        )
        before = repo.cache_snapshot()
        res = repo.dvc("push", timeout=180)
    finally:
        if silent:
            silent.close()
    assert_clean_failure(repo, res, before, ("Could not connect", "Read timeout", "Connect timeout"))
    s3_server.create_bucket(repo.bucket)
    repo.configure(s3_server.endpoint, repo.bucket)
    assert_retry_completes(repo, s3_server)


def test_wrong_credentials(make_repo, tmp_path):
    with S3Server(tmp_path / "auth-server") as server:
        key, secret = server.make_user()
        bucket = new_bucket("auth")
        server.create_bucket(bucket)
        server.enable_auth(key, secret)  # from here on moto checks every signature against its IAM users
        repo = make_repo()
        before = repo.cache_snapshot()
        for bad_key, bad_secret in ((key, secret + "x"), ("AKIANOSUCHKEY0000000", secret)):
            repo.configure(server.endpoint, bucket, key=bad_key, secret=bad_secret)
            res = repo.dvc("push")
            assert_clean_failure(
                repo, res, before, ("SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden", "403")
            )
        assert server.objects(bucket) == {}
        repo.configure(server.endpoint, bucket, key=key, secret=secret)
        assert_retry_completes(repo, server)


def test_server_stopped_mid_push(make_repo, tmp_path):
    """Kill the server process while uploads are in flight (one at a time, each PUT slowed down)."""
    server = S3Server(tmp_path / "slow-server", put_delay=0.5).start()
    try:
        repo = make_repo()
        repo.configure(server.endpoint, new_bucket("outage"))
        server.create_bucket(repo.bucket)
        before = repo.cache_snapshot()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            ["dvc", "push", "-j", "1"], cwd=repo.root, env=repo.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            while len(server.objects(repo.bucket)) < 2:
                assert proc.poll() is None, f"push ended before the outage: {proc.stdout.read()}"
                assert time.monotonic() - t0 < 120, "push never started uploading"
                time.sleep(0.2)
            server.stop(kill=True)
            t_kill = time.monotonic()
            out, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        res = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
        res.elapsed = time.monotonic() - t_kill
        repo.log.append(
            f"$ dvc push -j 1 (server killed mid-push) [rc={res.returncode}, {res.elapsed:.1f}s after]\n{out}"
        )
        assert_clean_failure(
            repo, res, before, ("failed to push", "Could not connect", "Connection was closed")
        )
        # nothing local depends on the remote: the workspace still matches the lock
        assert "up to date" in repo.ok("status")
        server.put_delay = 0.0
        server.start()  # same port, so the remote config stays; moto keeps no state across restarts
        server.create_bucket(repo.bucket)
        assert_retry_completes(repo, server)
    finally:
        server.stop()
