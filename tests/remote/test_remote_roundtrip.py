"""Round trip through a real S3 server process: push, status -c, pull into a data-less clone, repro is a no-op;
and the pull-then-align workflow (cached embeddings, no upstream stage reruns)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from remote_repo import new_bucket

from servers.s3_server import ACCESS_KEY, REGION, SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = ("prepare", "cluster", "split", "folds", "summarize", "embed_text", "finetune", "train_structure",
            "embed_structure")  # fmt: skip


README_EMBEDDING_PULL = "dvc pull embed_text embed_text_finetuned embed_structure"


def embedding_stage_groups(repo) -> list[str]:
    """Stage names (without @item) of every output under embeddings/, in DAG order."""
    from dvc.repo import Repo

    with Repo(str(repo.root)) as dvc_repo:
        names = [
            o.stage.name.split("@")[0] for o in dvc_repo.index.outs if o.def_path.startswith("embeddings/")
        ]
    return list(dict.fromkeys(names))


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
    assert stored <= cache_files and pushed.md5_keys(pushed.cached_outs()) <= stored

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
def test_pull_embeddings_then_align_reruns_nothing_upstream(pushed, make_repo, s3_server, tmp_path):
    """README workflow: pull cached embeddings, run alignment experiments, share them with `dvc exp push`."""
    params = yaml.safe_load((pushed.root / "params.yaml").read_text())
    llm, gdm = params["embed_text"]["llms"][0], params["structure"]["gdms"][0]
    clone = make_repo("clone", with_data=False)
    clone.configure(s3_server.endpoint, pushed.bucket)
    outs = clone.cached_outs()

    clone.ok("pull", f"embed_text@{llm}")  # one model's embeddings, nothing else
    got = clone.digest(outs)
    assert got and all(k.startswith(f"embeddings/text/{llm}/") for k in got), sorted(got)
    assert got == pushed.digest([f"embeddings/text/{llm}"])
    # every model's (evaluate scores on the proteins all models share): the README's command, checked against the DAG
    groups = README_EMBEDDING_PULL.split()[2:]
    assert groups == embedding_stage_groups(clone), "update the README's pull command"
    clone.ok("pull", *groups)
    assert clone.digest(outs) == pushed.digest(["embeddings"])

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
    new_head = clone.digest([head])
    assert new_head and new_head != pushed.digest([head])

    # share the experiment: git refs to a git remote, its outputs to the S3 remote; another clone gets both
    exp = re.search(r"Ran experiment\(s\): (\S+)", log).group(1)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    clone.ok("exp", "push", str(origin), exp)
    other = make_repo("other", with_data=False)
    other.configure(s3_server.endpoint, pushed.bucket)
    other.ok("exp", "pull", str(origin), exp)
    other.ok("exp", "apply", exp)
    assert other.digest([head]) == new_head


def readme_section() -> str:
    """The S3 guide users follow: docs/S3.md (the README links it and shows its first commands)."""
    return (REPO / "docs" / "S3.md").read_text()


def test_readme_shows_the_tested_workflow():
    """The commands the tests run are the ones the README gives (no drift between the two)."""
    section = " ".join(readme_section().split())
    for cmd in (
        "dvc pull embed_text@smollm2-135m",
        README_EMBEDDING_PULL,
        "dvc exp run --pull --allow-missing -S align.temperature=0.1 evaluate",
        "dvc exp push origin <exp-name>",
        "dvc exp pull origin <exp-name>",
        "dvc exp apply <exp-name>",
        "dvc push",
        "dvc status -c",
    ):
        assert cmd in section, cmd


@pytest.mark.pipeline
def test_readme_remote_setup_works_as_written(make_repo, s3_server):
    """Run the README's `dvc remote modify --local` lines (values swapped for the local server), then push."""
    block = readme_section().split("```bash", 1)[1].split("```", 1)[0]
    lines = [
        ln.split("#", 1)[0].split()
        for ln in block.splitlines()
        if ln.startswith("dvc remote modify --local s3")
    ]
    bucket = new_bucket("readme")
    values = {"url": f"s3://{bucket}/protalign", "region": REGION, "endpointurl": s3_server.endpoint,
              "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}  # fmt: skip
    assert sorted(ln[5] for ln in lines) == sorted(values), lines
    repo = make_repo()
    (repo.root / ".dvc" / "config.local").unlink(missing_ok=True)
    s3_server.create_bucket(bucket)
    for ln in lines:
        repo.ok(*ln[1:5], ln[5], values[ln[5]])
    assert "endpointurl" not in (repo.root / ".dvc" / "config").read_text()  # --local kept it out of git
    repo.ok("push")
    assert "in sync" in repo.ok("status", "-c")
    assert s3_server.objects(bucket)
