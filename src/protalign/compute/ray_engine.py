"""The Ray engine: shards as Ray tasks, or as calls on a pool of actors when a model must be loaded once per worker.

Inputs travel through the object store (`ray.put` of each shard's payload; the setup arguments, e.g. a structure
encoder, once); results come back to the driver, which alone writes outputs and the shard ledger. Every worker sets
`compute.threads` torch threads. A worker that dies is replaced by Ray (task retries, actor restarts) and its shard
rerun, up to `compute.ray.max_retries`. The runtime_env carries thread settings only: never a secret.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import socket
from typing import Any

from protalign.compute.engine import Engine
from protalign.errors import ToolError

log = logging.getLogger(__name__)
SECRET = re.compile(r"(^|_)(TOKEN|KEY|SECRET|PASSWORD|CREDENTIALS?|AUTH)(_|$)", re.IGNORECASE)
PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "PROTALIGN_SHARED_DATA")
CONNECT_TIMEOUT_S = 10.0


class ComputeError(ToolError):
    """The Ray cluster cannot be reached or a shard failed on every retry."""


def runtime_env(threads: int, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Env vars for the workers: thread counts and offline switches, copied by name from an allowlist (so a token
    in the driver's environment never reaches the cluster's job config)."""
    environ = os.environ if environ is None else environ
    env = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env["TOKENIZERS_PARALLELISM"] = "false"
    env.update({k: environ[k] for k in PASSED_ENV if k in environ})
    secret_values = {v for k, v in environ.items() if SECRET.search(k) and v}
    leaked = [k for k, v in env.items() if SECRET.search(k) or v in secret_values]
    if leaked:
        raise ComputeError(f"refusing to put secret-looking variable(s) {leaked} into a Ray runtime_env")
    return {"env_vars": env}


def _check_reachable(address: str) -> None:
    """Fail fast (seconds, not Ray's minutes of retries) when a host:port address does not answer."""
    if address in ("auto", "local") or address.startswith("ray://"):
        target = address.removeprefix("ray://")
        if not address.startswith("ray://"):
            return
    else:
        target = address
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ComputeError(f"compute.ray.address {address!r} is not host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ComputeError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_task(fn, payload, threads: int):
    _set_threads(threads)
    return fn(None, payload)


class _ShardActor:
    """Holds `setup(*args)` (a loaded model) across the shards sent to it."""

    def __init__(self, setup, args, threads: int):
        _set_threads(threads)
        self.state = setup(*args)

    def run(self, fn, payload):
        return fn(self.state, payload)


class RayEngine(Engine):
    name = "ray"

    def __init__(self, compute: Any):
        import ray

        self.c = compute
        self.threads = int(compute.threads)
        self.address = compute.ray.address or os.environ.get("RAY_ADDRESS") or None
        if self.address:
            _check_reachable(self.address)
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address, runtime_env=runtime_env(self.threads), include_dashboard=False,
                    log_to_driver=False, configure_logging=False,
                )  # fmt: skip
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                where = self.address or "a new local cluster"
                raise ComputeError(f"cannot connect to the Ray cluster at {where}: {exc}") from exc
        log.info("compute: Ray at %s, %s", self.address or "local", ray.cluster_resources())

    def _options(self) -> dict[str, Any]:
        r = self.c.ray
        opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": r.gpus}
        if r.memory_gb:
            opts["memory"] = int(r.memory_gb * 2**30)
        return opts

    def workers(self) -> int:
        """How many workers of the requested size the cluster holds now (at least 1)."""
        import ray

        res = ray.cluster_resources()
        r = self.c.ray
        n = int(res.get("GPU", 0) // r.gpus) if r.gpus else int(res.get("CPU", 1) // r.cpus)
        return max(1, n)

    def map_shards(self, fn, shards, *, setup=None, setup_args=(), ledger=None):
        import ray

        if not ray.is_initialized():  # never let a Ray call start a stray local cluster
            raise ComputeError(f"the Ray connection to {self.address or 'the local cluster'} was shut down")
        n = self.workers()
        retries = int(self.c.ray.max_retries)
        actors: list[Any] = []
        if setup is None:
            task = ray.remote(_run_task).options(max_retries=retries, **self._options())
        else:
            actor_cls = ray.remote(_ShardActor).options(
                max_restarts=retries, max_task_retries=retries, **self._options()
            )
        pending: collections.deque = collections.deque()
        submitted = 0
        args_ref = None  # held until every shard is done: a restarted actor needs its arguments again
        try:
            for name, ids, payload in shards:
                saved = ledger.get(name, ids) if ledger is not None else None
                if saved is not None:
                    pending.append((name, ids, saved, False))
                else:
                    ref = ray.put(payload)
                    if setup is None:
                        future = task.remote(fn, ref, self.threads)
                    else:
                        if len(actors) < n:  # started on demand: a fully resumed stage starts none
                            args_ref = args_ref or ray.put(setup_args)  # once: e.g. the encoder's weights
                            actors.append(actor_cls.remote(setup, args_ref, self.threads))
                        future = actors[submitted % len(actors)].run.remote(fn, ref)
                    submitted += 1
                    pending.append((name, ids, future, True))
                while sum(p[3] for p in pending) > 2 * n:
                    yield self._finish(pending.popleft(), ledger)
            while pending:
                yield self._finish(pending.popleft(), ledger)
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)

    @staticmethod
    def _finish(item, ledger):
        import ray

        name, ids, value, remote = item
        if not remote:
            return value
        try:
            result = ray.get(value)
        except ray.exceptions.RayError as exc:
            raise ComputeError(f"shard {name} failed on every retry: {type(exc).__name__}: {exc}") from exc
        if ledger is not None:
            ledger.put(name, ids, result)
        return result
