"""A real S3-compatible server process (moto) on 127.0.0.1 for the DVC remote tests.

Run as a script it serves moto's S3 (and IAM, for credential checks) on a free port, writes the port to a ready
file, and can slow every PUT down (`--put-delay`) so a test can stop it in the middle of a `dvc push`.
`S3Server` starts and stops that process from a test: a separate process, so stopping it is a real outage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ACCESS_KEY = "testing-access-key"  # moto accepts any key until auth is switched on (`S3Server.enable_auth`)
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


def _serve(port: int, put_delay: float, ready_file: Path) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)

    def slow_puts(environ, start_response):
        if put_delay and environ.get("REQUEST_METHOD") == "PUT":
            time.sleep(put_delay)
        return app(environ, start_response)

    server = make_server("127.0.0.1", port, slow_puts, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_port))
    tmp.replace(ready_file)  # atomic: the parent never reads a half-written port
    server.serve_forever()


def free_port() -> int:
    """A port nothing listens on right now (for 'unreachable endpoint' cases)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """Start/stop the server process; `port` stays the same across `restart()` so remote configs stay valid."""

    def __init__(self, workdir: Path, put_delay: float = 0.0):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.put_delay = put_delay
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.credentials = (ACCESS_KEY, SECRET_KEY)  # what client() signs with (see enable_auth)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> S3Server:
        ready = self.workdir / "ready"
        ready.unlink(missing_ok=True)
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - owned by the child process
        cmd = [sys.executable, __file__, "--port", str(self.port), "--ready-file", str(ready)]
        cmd += ["--put-delay", str(self.put_delay)]
        env = dict(os.environ, MOTO_ALLOW_NONEXISTENT_REGION="true")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"S3 server exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"S3 server not ready after {timeout}s: {self.log_tail()}")
            time.sleep(0.05)
        self.port = int(ready.read_text())
        self._wait_http(deadline)
        return self

    def _wait_http(self, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=5) as r:
                    r.read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        """SIGKILL (`kill=True`, an abrupt outage) or SIGTERM; always reaps the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> S3Server:
        self.stop()
        return self.start()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, n: int = 2000) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def client(self, service: str = "s3", key: str | None = None, secret: str | None = None):
        import boto3
        from botocore.config import Config

        cfg = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=key or self.credentials[0],
            aws_secret_access_key=secret or self.credentials[1], config=cfg,
        )  # fmt: skip

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str) -> dict[str, int]:
        """{key: size} of every object in `bucket`."""
        out: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        return out

    def make_user(self, name: str = "dvc") -> tuple[str, str]:
        """An IAM user allowed s3:* (created while auth is still off); returns (key id, secret)."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def enable_auth(self, key: str, secret: str) -> None:
        """From now on every request must be signed with a known IAM key (moto's switch); client() uses `key`."""
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
        self.credentials = (key, secret)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--put-delay", type=float, default=0.0)
    ap.add_argument("--ready-file", type=Path, required=True)
    a = ap.parse_args()
    _serve(a.port, a.put_delay, a.ready_file)
