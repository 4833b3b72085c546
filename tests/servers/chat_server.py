"""A local OpenAI-compatible chat server (POST /v1/chat/completions) for the chat writer's tests.

Real HTTP on 127.0.0.1, so the real `openai` client, its timeouts and status handling are exercised. By default
it answers "<the sentence the prompt asks to start with> It is a test protein with several chains." Faults are
scripted per PDB id (found in the prompt after the FASTA marker): a queue of actions consumed one per request,
so concurrent requests for other ids are unaffected. Every request is recorded (body + headers, names lower-cased).
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

START = re.compile(r"start with the sentence: '(.*?)'\n\n(\S+):\n", re.S)


def default_answer(prompt: str) -> str:
    match = START.search(prompt)
    first = match.group(1) if match else "A protein."
    return f"{first} It is a test protein with several chains."


class ChatServer:
    """Start with `with ChatServer() as server:`; `server.base_url` is what the client's base_url should be.

    `server.faults[pid]` is a deque of actions: ("status", code[, retry_after]) answers that HTTP status;
    ("sleep", seconds) waits before answering normally (a client timeout); ("answer", text[, finish_reason])
    answers `text` verbatim.
    """

    def __init__(self) -> None:
        self.faults: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def requests_for(self, pid: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["pid"] == pid]

    def __enter__(self) -> ChatServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                prompt = body["messages"][-1]["content"]
                match = START.search(prompt)
                pid = match.group(2) if match else ""
                with server._lock:
                    server.requests.append(
                        {"pid": pid, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
                    )
                    action = server.faults[pid].popleft() if server.faults[pid] else ("answer", None)
                if action[0] == "status":
                    headers = {"Retry-After": str(action[2])} if len(action) > 2 else {}
                    return self._send(action[1], {"error": {"message": f"scripted {action[1]}"}}, headers)
                if action[0] == "sleep":
                    time.sleep(action[1])
                    action = ("answer", None)
                text = default_answer(prompt) if action[1] is None else action[1]
                finish = action[2] if len(action) > 2 else "stop"
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })  # fmt: skip

            def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
