"""Chat writer against a local OpenAI-compatible HTTP server (real client, real HTTP): success, retries on 429/5xx
and timeouts, fallbacks recorded, cache hits without requests, and the API key never written anywhere."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from params_helpers import default_params
from protalign.params import Params
from protalign.paths import Paths
from protalign.text import chat as C
from protalign.text import summarize as S
from servers.chat_server import ChatServer

SECRET = "sk-test-0123456789-do-not-write-me"
KEY_ENV = "PROTALIGN_TEST_CHAT_KEY"
FASTA = {
    "2XYZ": ">2XYZ_1|Chain A|KINASE|Homo sapiens (9606)\nMKVLAT\n>2XYZ_2|Chain B|INHIBITOR|Homo sapiens (9606)\nGGSW\n",
    "3NOP": ">3NOP_1|Chains A, B|LYSOZYME|Gallus gallus (9031)\nKVFGRC\n>3NOP_2|Chain C|DNA (5'-D(*CP*G)-3')|\nCG\n",
    "11AS": ">11AS_1|Chains A, B|ASPARAGINE SYNTHETASE A|Escherichia coli (562)\nMKTAYIAK\n",
}


def proteins() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["2XYZ", "3NOP", "11AS", "4MIS"],
        "length": [10, 8, 8, 50],
        "n_chains": [2, 3, 2, 1],
        "molecule_names": [["KINASE", "INHIBITOR"], ["LYSOZYME"], ["ASPARAGINE SYNTHETASE A"], ["X"]],
        "organisms": [["Homo sapiens", "Homo sapiens"], ["Gallus gallus"], ["Escherichia coli"], ["Y"]],
        "taxids": [["9606", "9606"], ["9031"], ["562"], [""]],
        "entity_chains": [["A", "B"], ["A, B"], ["A, B"], ["A"]],
        "entity_lengths": [[6, 4], [6], [8], [50]],
    })  # fmt: skip


@pytest.fixture
def server():
    with ChatServer() as s:
        yield s


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory) -> Path:
    """One MLflow store for the module (creating a SQLite store takes seconds)."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture
def repo(tmp_path, monkeypatch, mlflow_db) -> Paths:
    """A scratch root with proteins.parquet and data/fasta (4MIS has none); cache and MLflow stay in tmp."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.setenv("PROTALIGN_MAIN_ROOT", str(tmp_path))
    monkeypatch.setenv("PROTALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_db}")
    monkeypatch.setenv("PROTALIGN_MLFLOW_EXPERIMENT", f"chat-{tmp_path.name}")
    paths = Paths(tmp_path)
    paths.prepared.mkdir()
    proteins().to_parquet(paths.proteins, index=False)
    (paths.data / "fasta").mkdir(parents=True)
    for pid, text in FASTA.items():
        (paths.data / "fasta" / f"{pid}.fasta").write_text(text)
    return paths


def params(server: ChatServer, **chat) -> Params:
    base = {"base_url": server.base_url, "model": "test-model", "api_key_env": KEY_ENV, "timeout": 5.0,
            "max_retries": 3, "backoff": 0.01, "max_concurrency": 3}  # fmt: skip
    return default_params(summarize={"writer": "chat", "chat": {**base, **chat}})


def written(paths: Paths) -> dict[str, tuple[str, str]]:
    frame = pd.read_parquet(paths.summaries)
    return {r.id: (r.text, r.writer) for r in frame.itertuples()}


def test_success_follows_the_study_prompt(server, repo):
    S.run(params(server), repo)
    out = written(repo)
    first = "The protein structure 2XYZ has a sequence length of: 10 amino acids."
    assert out["2XYZ"] == (f"{first} It is a test protein with several chains.", "chat:test-model")
    assert out["3NOP"][1] == "chat:test-model"
    assert out["11AS"][1] == "template" and out["11AS"][0].startswith(
        "The protein structure 11AS"
    )  # 1 record
    assert out["4MIS"][1] == "template:no-fasta"
    assert sorted(r["pid"] for r in server.requests) == ["2XYZ", "3NOP"]
    body = server.requests_for("2XYZ")[0]["body"]
    assert body["model"] == "test-model" and body["messages"][0]["content"] == C.SYSTEM_PROMPT
    assert body["messages"][1]["content"] == (
        f"Summarize the following protein knowledge, start with the sentence: '{first}'\n\n2XYZ:\n{FASTA['2XYZ']}"
    )
    assert "temperature" not in body  # null = the server's default, as in the study
    assert server.requests_for("2XYZ")[0]["headers"]["authorization"] == f"Bearer {SECRET}"


def test_entries_all_sends_single_record_entries_too(server, repo):
    S.run(params(server, entries="all"), repo)
    assert written(repo)["11AS"][1] == "chat:test-model"


@pytest.mark.parametrize("status", [429, 503])
def test_transient_status_is_retried(server, repo, status):
    server.faults["2XYZ"].extend([("status", status, 0), ("status", status)])
    S.run(params(server), repo)
    assert written(repo)["2XYZ"][1] == "chat:test-model"
    assert len(server.requests_for("2XYZ")) == 3 and len(server.requests_for("3NOP")) == 1


def test_timeout_is_retried(server, repo):
    server.faults["3NOP"].append(("sleep", 1.5))
    S.run(params(server, timeout=0.5), repo)
    assert written(repo)["3NOP"][1] == "chat:test-model"
    assert len(server.requests_for("3NOP")) == 2


def test_exhausted_retries_fail_but_keep_finished_answers(server, repo):
    server.faults["2XYZ"].extend([("status", 500)] * 2)
    with pytest.raises(RuntimeError, match="still failing after 2 attempts"):
        S.run(params(server, max_retries=1), repo)
    assert not repo.summaries.exists()
    S.run(params(server, max_retries=1), repo)  # resume: 3NOP comes from the cache
    assert len(server.requests_for("3NOP")) == 1 and len(server.requests_for("2XYZ")) == 3
    assert written(repo)["2XYZ"][1] == "chat:test-model"


@pytest.mark.parametrize(
    ("action", "label"),
    [
        (("answer", ""), "template:fallback-empty"),
        (("answer", "   \n "), "template:fallback-empty"),
        (("answer", "I'm sorry, but I can't help with that."), "template:fallback-refused"),
        (("answer", "Fine.", "content_filter"), "template:fallback-refused"),
        (("answer", "word " * 200), "template:fallback-too_long"),
        (("answer", "The protein structure 2XYZ has", "length"), "template:fallback-too_long"),
        (("status", 400), "template:fallback-rejected_400"),
    ],
)
def test_bad_answers_fall_back_to_the_template_and_are_recorded(server, repo, action, label):
    server.faults["2XYZ"].append(action)
    S.run(params(server), repo)
    text, writer = written(repo)["2XYZ"]
    assert writer == label
    assert text == S.template_text(proteins().iloc[0])
    assert written(repo)["3NOP"][1] == "chat:test-model"


def test_answer_without_the_first_sentence_gets_it_in_front(server, repo):
    server.faults["2XYZ"].append(("answer", "A kinase bound to its inhibitor."))
    S.run(params(server), repo)
    text, writer = written(repo)["2XYZ"]
    assert (
        text
        == "The protein structure 2XYZ has a sequence length of: 10 amino acids. A kinase bound to its inhibitor."
    )
    assert writer == "chat:test-model"


def test_cache_hit_makes_no_request(server, repo):
    S.run(params(server), repo)
    first = written(repo)
    n = len(server.requests)
    repo.summaries.unlink()
    S.run(params(server, max_concurrency=1), repo)  # concurrency is not part of the request
    assert len(server.requests) == n and written(repo) == first
    S.run(params(server, temperature=0.0), repo)  # a different request is asked again
    assert len(server.requests) == n + 2


def test_api_key_is_written_nowhere(server, repo, mlflow_db, caplog):
    """The key goes out in the Authorization header only: not in outputs, cache files, logs or MLflow."""
    caplog.set_level("DEBUG")
    S.run(params(server), repo)
    S.run(params(server), repo)
    assert server.requests and all(
        r["headers"]["authorization"] == f"Bearer {SECRET}" for r in server.requests
    )
    files = [p for p in [*Path(repo.root).rglob("*"), *mlflow_db.parent.rglob("*")] if p.is_file()]
    assert mlflow_db in files and any("cache" in p.parts for p in files)
    leaks = [p for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == [] and SECRET not in caplog.text
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{mlflow_db}")
    experiment = mlflow.get_experiment_by_name(f"chat-{repo.root.name}")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert runs and runs[0].data.params["summarize.chat.api_key_env"] == KEY_ENV
    assert runs[0].data.metrics["n_chat_test-model"] == 2.0
    assert all(SECRET not in str(v) for r in runs for v in [*r.data.params.values(), *r.data.tags.values()])


def test_missing_key_and_auth_errors_fail_clearly(server, repo, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(RuntimeError, match=f"{KEY_ENV} is not set"):
        S.run(params(server), repo)
    assert server.requests == []
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.faults["2XYZ"].append(("status", 401))
    with pytest.raises(RuntimeError, match="answered 401"):
        S.run(params(server, max_concurrency=1), repo)
    with pytest.raises(ValueError, match="entries"):
        S.run(params(server, entries="some"), repo)


def test_no_key_needed_for_local_servers(server, repo, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    S.run(params(server, api_key_env=None), repo)
    assert written(repo)["2XYZ"][1] == "chat:test-model"


def test_judge_and_first_sentence():
    first = C.first_sentence(S.template_text(proteins().iloc[2]))
    assert first == "The protein structure 11AS has a sequence length of: 8 amino acids."
    assert C.judge(f"{first} More.", "stop", first, 50) == (f"{first} More.", "")
    assert C.judge("Sorry, no.", "stop", first, 50) == (None, "refused")
    assert C.judge(None, "stop", first, 50) == (None, "empty")
    assert C.judge("a b c", "stop", first, 2) == (None, "too_long")
