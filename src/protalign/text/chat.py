"""Chat writer for `summarize`: an OpenAI-compatible chat model rewrites the study's template (its summarize.py).

The study sent GPT-4o its system prompt plus "Summarize the following protein knowledge, start with the sentence:
'<first template sentence>'" and the entry's FASTA text, for entries with more than one FASTA record; the others
kept the template. Here every answer is cached on disk keyed by the full request (model, messages, temperature,
max_tokens), so re-runs and interrupted runs never pay twice. Requests run `max_concurrency` at a time; 429, 5xx,
timeouts and connection errors are retried with exponential backoff (a Retry-After header wins). An empty,
refused or over-long answer falls back to the template, and the reason is recorded per row (`writer` column).
The API key is read from the environment variable that `api_key_env` names; it is never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protalign.errors import ToolError
from protalign.storage import write_json

log = logging.getLogger(__name__)

# verbatim from the study's summarize.py (typo included: the prompt is part of the method)
SYSTEM_PROMPT = (
    "You are a biologist with expertise in protein sequence analysis. Your task is to summarize complex protein "
    "sequence data into two or three sentences that highlight key features such as molecute type, chains, "
    "structural motifs, organism, etc."
)
REFUSAL = re.compile(
    r"^(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i can not|i'?m unable|i am unable|as an ai\b)", re.I
)
ENTRIES = ("multi", "all")
NO_KEY = "no-key-needed"  # the client insists on a string; servers that need none ignore it


def user_prompt(pid: str, fasta_text: str, first_sentence: str) -> str:
    return f"Summarize the following protein knowledge, start with the sentence: '{first_sentence}'\n\n{pid}:\n{fasta_text}"


def first_sentence(template: str) -> str:
    """The template's first sentence (ends at the first '. ' after 'amino acids' / 'sequence length')."""
    head, sep, _ = template.partition(". ")
    return head + "." if sep else template


def n_records(fasta_text: str) -> int:
    return fasta_text.count(">")


@dataclass
class Outcome:
    """One entry's result: `text` is None when the template is kept; `label` goes into the writer column."""

    text: str | None
    label: str
    cached: bool = False
    requests: int = 0
    prefixed: bool = False


class AnswerCache:
    """One JSON file per request under `<cache>/chat/`, named by the request's hash; writes are atomic."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # unreadable: ask again
        return record if isinstance(record, dict) and "answer" in record else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        write_json(self.path(key), record)


def judge(
    answer: str | None, finish_reason: str | None, first: str, max_words: int
) -> tuple[str | None, str]:
    """(text, '') for a usable answer, with the template's first sentence put in front where the model left it
    out; (None, reason) for an empty, refused or over-long one."""
    text = " ".join((answer or "").split())
    if not text:
        return None, "empty"
    if finish_reason == "content_filter" or REFUSAL.match(text):
        return None, "refused"
    if finish_reason == "length" or len(text.split()) > max_words:
        return None, "too_long"
    if not text.startswith(first):
        return f"{first} {text}", "prefixed"
    return text, ""


@dataclass
class ChatWriter:
    """Writes summaries through an OpenAI-compatible endpoint (`params` is `summarize.chat`)."""

    params: Any
    cache_dir: Path
    fasta_dir: Path
    name: str = "chat"
    stats: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        p = self.params
        if p.entries not in ENTRIES:
            raise ValueError(f"summarize.chat.entries: unknown {p.entries!r}; choose one of {ENTRIES}")
        for key in ("max_concurrency", "max_tokens", "max_words"):
            if getattr(p, key) < 1:
                raise ValueError(f"summarize.chat.{key} must be >= 1, got {getattr(p, key)}")
        if p.max_retries < 0 or p.timeout <= 0 or p.backoff < 0:
            raise ValueError("summarize.chat: max_retries >= 0, timeout > 0 and backoff >= 0 are required")
        self.cache = AnswerCache(self.cache_dir)
        self._client: Any = None

    # -- the endpoint -------------------------------------------------------------------------------------------
    def client(self) -> Any:
        if self._client is None:
            import openai

            env = self.params.api_key_env
            key = os.environ.get(env) if env else NO_KEY
            if not key:
                raise ToolError(
                    f"summarize.writer is chat but the environment variable {env} is not set (put the API key "
                    "there; for a server that needs no key set summarize.chat.api_key_env: null)"
                )
            self._client = openai.OpenAI(
                api_key=key, base_url=self.params.base_url, timeout=self.params.timeout, max_retries=0
            )
        return self._client

    def request(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        p = self.params
        req: dict[str, Any] = {"model": p.model, "messages": messages, "max_tokens": p.max_tokens}
        if p.temperature is not None:
            req["temperature"] = p.temperature
        return req

    def _wait(self, attempt: int, err: Exception) -> float:
        response = getattr(err, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        try:
            if header is not None:
                return min(float(header), 60.0)
        except ValueError:
            pass
        return self.params.backoff * 2**attempt

    def _call(self, req: dict[str, Any]) -> tuple[dict[str, Any] | None, int, str]:
        """(record, requests made, '') on an answer; (None, n, reason) when the server rejects the request."""
        import openai

        transient = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)
        for attempt in range(self.params.max_retries + 1):
            try:
                completion = self.client().chat.completions.create(**req)
            except transient as err:
                if attempt == self.params.max_retries:
                    raise ToolError(
                        f"chat endpoint {self.params.base_url}: still failing after {attempt + 1} attempts "
                        f"({type(err).__name__}); answers so far are cached, re-run to resume"
                    ) from err
                wait = self._wait(attempt, err)
                log.info("chat: %s, retrying in %.1f s", type(err).__name__, wait)
                time.sleep(wait)
                continue
            except (openai.BadRequestError, openai.UnprocessableEntityError) as err:
                return None, attempt + 1, f"rejected_{err.status_code}"
            except openai.APIStatusError as err:  # 401/403/404: every request would fail the same way
                raise ToolError(
                    f"chat endpoint {self.params.base_url} answered {err.status_code} for model "
                    f"{self.params.model!r} (check the key in ${self.params.api_key_env} and the model name)"
                ) from None
            choice = completion.choices[0] if completion.choices else None
            record = {
                "model": req["model"],
                "answer": choice.message.content if choice is not None else None,
                "finish_reason": choice.finish_reason if choice is not None else None,
                "served_by": completion.model,
            }
            return record, attempt + 1, ""
        raise AssertionError("unreachable")

    def ask(self, pid: str, fasta_text: str, first: str) -> Outcome:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(pid, fasta_text, first)},
        ]
        req = self.request(messages)
        key = self.cache.key(req)
        record, requests, cached = self.cache.get(key), 0, True
        if record is None:
            cached = False
            record, requests, rejected = self._call(req)
            if record is None:
                return Outcome(None, f"template:fallback-{rejected}", requests=requests)
            self.cache.put(key, record)
        text, reason = judge(record["answer"], record.get("finish_reason"), first, self.params.max_words)
        if text is None:
            return Outcome(None, f"template:fallback-{reason}", cached, requests)
        return Outcome(text, f"chat:{self.params.model}", cached, requests, prefixed=reason == "prefixed")

    # -- the writer protocol ------------------------------------------------------------------------------------
    def write_rows(self, ids: Sequence[str], templates: Sequence[str]) -> tuple[list[str], list[str]]:
        """Texts and writer labels per row; rows the chat model does not write keep their template."""
        jobs: dict[int, tuple[str, str, str]] = {}
        labels = ["template"] * len(ids)
        for i, (pid, template) in enumerate(zip(ids, templates, strict=True)):
            fasta = self.fasta_dir / f"{pid}.fasta"
            if not fasta.is_file():
                labels[i] = "template:no-fasta"
                continue
            fasta_text = fasta.read_text()
            if self.params.entries == "multi" and n_records(fasta_text) <= 1:
                continue  # the study: single-record entries keep the template
            jobs[i] = (pid, fasta_text, first_sentence(template))
        texts = list(templates)
        if jobs:
            self.client()  # a missing key fails before any work
            with ThreadPoolExecutor(max_workers=self.params.max_concurrency) as pool:
                futures = {i: pool.submit(self.ask, *job) for i, job in jobs.items()}
                outcomes = {i: f.result() for i, f in futures.items()}
            for i, out in outcomes.items():
                labels[i] = out.label
                if out.text is not None:
                    texts[i] = out.text
                self.stats["requests"] += out.requests
                self.stats["cache_hits"] += out.cached
                self.stats["prefixed"] += out.prefixed
        self.stats.update(Counter(labels))
        return texts, labels
