"""Where corpus-sized work runs: in this process (local) or on a Ray cluster (ray), with identical outputs.

`shards.py` cuts sorted ids into shards and keeps finished shards in a ledger (resume); `engine.py` holds the
engine interface and the local engine; `ray_engine.py` the Ray one (tasks, or an actor pool where a model is loaded
once per actor). Only the driver writes outputs; workers get their inputs through the object store.
"""

from protalign.compute.engine import Engine, LocalEngine, current, engine_for
from protalign.compute.shards import Shard, ShardLedger, cut

__all__ = ["Engine", "LocalEngine", "Shard", "ShardLedger", "current", "cut", "engine_for"]
