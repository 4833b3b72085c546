"""Round trip through a real S3 server process: push, status -c, pull into a data-less clone, repro is a no-op;
and the pull-then-align workflow (cached embeddings, no upstream stage reruns)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = ("prepare", "cluster", "split", "folds", "summarize", "embed_text", "finetune", "train_structure",
            "embed_structure")  # fmt: skip


def ran_stages(log: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", log)


def test_committed_remote_config_holds_no_endpoint_or_secret():
    """The committed config names the bucket/path only; where and who is per machine (config.local / env)."""
    from configobj import ConfigObj

    cfg = ConfigObj(str(REPO / ".dvc" / "config"))
    assert cfg["core"]["remote"] == "s3"
    remote = cfg['remote "s3"']
    assert re.fullmatch(r"s3://[a-z0-9.-]{3,63}/\S+", remote["url"]), remote["url"]
    secret_or_local = {
        "endpointurl",
        "region",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "profile",
    }
    assert not secret_or_local & set(remote), sorted(remote)
    assert int(remote["connect_timeout"]) > 0 and int(remote["read_timeout"]) > 0
    assert "/config.local" in (REPO / ".dvc" / ".gitignore").read_text().split()


@pytest.mark.pipeline
def test_push_status_pull_roundtrip_is_byte_identical(pushed, make_repo, s3_server):
    assert "in sync" in pushed.ok("status", "-c")
    cache_files = {p.split("/files/md5/", 1)[1] for p in pushed.cache_snapshot() if "/files/md5/" in p}
    stored = {k.split("/files/md5/", 1)[1] for k in s3_server.objects(pushed.bucket)}
    assert cache_files and stored == cache_files

    clone = make_repo("clone", with_data=False)  # cache and every cached output deleted
    clone.configure(s3_server.endpoint, pushed.bucket)
    outs = clone.cached_outs()
    assert clone.digest(outs) == {} and not (clone.root / ".dvc" / "cache").exists()
    assert "in sync" not in clone.ok("status", "-c")

    clone.ok("pull")
    want = pushed.digest(outs)
    assert want and clone.digest(outs) == want
    log = clone.ok("repro")
    assert ran_stages(log) == [] and "up to date" in log, log
    assert "in sync" in clone.ok("status", "-c")


@pytest.mark.pipeline
def test_pull_one_model_then_align_reruns_nothing_upstream(pushed, make_repo, s3_server):
    params = yaml.safe_load((pushed.root / "params.yaml").read_text())
    llm, gdm = params["embed_text"]["llms"][0], params["structure"]["gdms"][0]
    clone = make_repo("clone", with_data=False)
    clone.configure(s3_server.endpoint, pushed.bucket)
    outs = clone.cached_outs()

    clone.ok("pull", f"embed_text@{llm}")  # one model's embeddings, nothing else
    got = clone.digest(outs)
    assert got and all(k.startswith(f"embeddings/text/{llm}/") for k in got), sorted(got)
    assert got == pushed.digest([f"embeddings/text/{llm}"])

    temperature = params["align"]["temperature"] / 2
    log = clone.ok(
        "exp", "run", "--pull", "--allow-missing", "-S", f"align.temperature={temperature}", "evaluate"
    )
    ran = ran_stages(log)
    assert f"align@{llm}-{gdm}" in ran and f"evaluate@{llm}-{gdm}" in ran, log
    assert not [s for s in ran if s.split("@")[0] in UPSTREAM], ran
    # upstream artifacts were neither pulled nor rebuilt; the new head differs from the pushed one
    for rel in ("data", "prepared/structures", "prepared/summaries.parquet", f"models/structure/{gdm}.pt"):
        assert not (clone.root / rel).exists(), rel
    head = f"models/heads/{llm}__{gdm}.pt"
    assert (clone.root / head).exists()
    assert clone.digest([head]) != pushed.digest([head])
