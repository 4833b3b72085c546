"""The shared writers give bytes that depend on the content only (docs/PORTABILITY.md)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import torch

from protalign.params import load_params
from protalign.storage import parquet_bytes, save_torch, torch_bytes, write_parquet
from protalign.structure import registry
from protalign.structure import train as train_stage

REPO = Path(__file__).resolve().parents[1]


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_parquet_bytes_ignore_index_and_pandas_metadata(tmp_path):
    frame = pd.DataFrame({"id": ["1ABC", "2DEF", "3GHI"], "n": [3, 1, 2], "text": ["a", "é", "c"]})
    shuffled = frame.set_index(pd.Index([7, 3, 9]))  # same rows, another index: not part of the content
    assert parquet_bytes(frame) == parquet_bytes(shuffled)
    write_parquet(tmp_path / "t.parquet", frame)
    assert b"pandas" not in (pq.read_schema(tmp_path / "t.parquet").metadata or {})
    back = pd.read_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert parquet_bytes(frame) != parquet_bytes(frame.assign(n=[3, 1, 5]))  # content still counts


def test_torch_bytes_do_not_depend_on_the_file_name(tmp_path):
    payload = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "info": {"epochs": 2}}
    save_torch(tmp_path / "a.pt", payload)
    save_torch(tmp_path / "sub" / "other_name.pt", payload)
    assert _md5(tmp_path / "a.pt") == _md5(tmp_path / "sub" / "other_name.pt")
    # plain torch.save names the zip's records after the file, so the same payload differs by name
    torch.save(payload, tmp_path / "x.pt")
    torch.save(payload, tmp_path / "y.pt")
    assert _md5(tmp_path / "x.pt") != _md5(tmp_path / "y.pt")
    back = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(back["w"], payload["w"]) and back["info"] == payload["info"]
    assert torch_bytes(payload) != torch_bytes({**payload, "info": {"epochs": 3}})


def test_structure_checkpoint_holds_no_wall_clock_time(tmp_path):
    """Two saves of the same weights after runs of different duration are byte-identical."""
    torch.manual_seed(0)
    encoder = registry.build("gvp", load_params(REPO / "params.yaml").structure)
    history = [
        {"epoch": 1, "train_loss": 1.5, "seconds": 12.3},
        {"epoch": 2, "train_loss": 1.2, "seconds": 9.9},
    ]
    slow = {"best_epoch": 2, "history": history, "seconds": 40.0}
    fast = {"best_epoch": 2, "history": [dict(r, seconds=r["seconds"] / 3) for r in history], "seconds": 8.0}
    train_stage.save_checkpoint(tmp_path / "a" / "gvp.pt", encoder, "gvp", slow)
    train_stage.save_checkpoint(tmp_path / "b" / "gvp.pt", encoder, "gvp", fast)
    assert _md5(tmp_path / "a" / "gvp.pt") == _md5(tmp_path / "b" / "gvp.pt")
    _, payload = train_stage.load_checkpoint(tmp_path / "a" / "gvp.pt")
    assert "seconds" not in payload["summary"] and payload["summary"]["history"][1] == {
        "epoch": 2,
        "train_loss": 1.2,
    }
    assert slow["seconds"] == 40.0 and "seconds" in history[0]  # the caller's summary is left alone


_PEFT_CONFIG = """
import shutil, sys
from peft import LoraConfig
from protalign.storage import canonical_json_file
LoraConfig(r=8, target_modules=["q_proj", "v_proj"]).save_pretrained(sys.argv[1])
shutil.copy(sys.argv[1] + "/adapter_config.json", sys.argv[1] + "/raw.json")
canonical_json_file(sys.argv[1] + "/adapter_config.json", ("target_modules", "exclude_modules"))
"""


def _peft_config(tmp_path, seed: str) -> tuple[bytes, bytes]:
    """(PEFT's own adapter_config.json, after the canonical rewrite) in a process with this hash seed."""
    out = tmp_path / f"seed-{seed}"
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO / "src"))
    subprocess.run([sys.executable, "-c", _PEFT_CONFIG, str(out)], env=env, check=True, capture_output=True)
    return (out / "raw.json").read_bytes(), (out / "adapter_config.json").read_bytes()


def test_adapter_config_bytes_do_not_follow_the_hash_seed(tmp_path):
    """PEFT dumps `target_modules` in set order (seeds 0 and 3 disagree); the canonical rewrite does not."""
    (raw0, canonical0), (raw3, canonical3) = _peft_config(tmp_path, "0"), _peft_config(tmp_path, "3")
    assert raw0 != raw3, "PEFT no longer depends on the hash seed: the canonical rewrite may be dropped"
    assert canonical0 == canonical3
    assert json.loads(canonical0)["target_modules"] == ["q_proj", "v_proj"]
