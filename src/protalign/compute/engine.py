"""The engine interface: `map_shards` runs `fn(state, payload)` over shards and yields the results in shard order.

`state` is `setup(*setup_args)`, made once per worker (a model loaded once per actor) or None without `setup`. A
shard already in the `ledger` is yielded from it and not recomputed; a computed one is saved to it by the driver
(workers never write outputs). The local engine runs in this process; stages keep their own process pools for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from protalign.compute.shards import ShardLedger

ShardInput = tuple[str, Sequence[str], Any]  # (shard name, its ids, the payload the worker needs)


class Engine:
    name = "base"
    threads = 1

    def map_shards(
        self,
        fn: Callable[[Any, Any], Any],
        shards: Iterable[ShardInput],
        *,
        setup: Callable[..., Any] | None = None,
        setup_args: tuple = (),
        ledger: ShardLedger | None = None,
    ) -> Iterator[Any]:
        raise NotImplementedError

    def map_jobs(self, fn: Callable[[Any], Any], jobs: list) -> list:
        """fn over independent jobs (one shard each), results in job order."""
        shards = ((f"job-{i:06d}", [], (fn, job)) for i, job in enumerate(jobs))
        return list(self.map_shards(_call_job, shards))


def _call_job(_state: Any, payload: tuple[Callable[[Any], Any], Any]) -> Any:
    fn, job = payload
    return fn(job)


class LocalEngine(Engine):
    """In-process: shards one after the other (the stage's own worker pools do the parallel local work)."""

    name = "local"

    def map_shards(self, fn, shards, *, setup=None, setup_args=(), ledger=None):
        state: list[Any] = []
        for name, ids, payload in shards:
            saved = ledger.get(name, ids) if ledger is not None else None
            if saved is not None:
                yield saved
                continue
            if setup is not None and not state:
                state.append(setup(*setup_args))
            result = fn(state[0] if state else None, payload)
            if ledger is not None:
                ledger.put(name, ids, result)
            yield result


_ENGINES: dict[Any, Engine] = {}
_CURRENT: list[Engine] = []


def engine_for(params: Any) -> Engine:
    """The engine `params.compute` asks for (one per setting per process; a Ray connection is made once). It also
    becomes `current()`, which code without params at hand (analysis.cv._map) dispatches through."""
    c = params.compute
    key = (c.engine, c.threads, c.ray)
    if key not in _ENGINES:
        if c.engine == "ray":
            from protalign.compute.ray_engine import RayEngine

            _ENGINES[key] = RayEngine(c)
        else:
            _ENGINES[key] = LocalEngine()
    _CURRENT[:] = [_ENGINES[key]]
    return _ENGINES[key]


def current() -> Engine:
    """The engine of the last `engine_for` call in this process (local when none was made)."""
    return _CURRENT[0] if _CURRENT else LocalEngine()
