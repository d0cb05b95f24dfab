"""Loopback test servers for the openai backend: a stub that records request bodies and
injects faults, and a mirror of vLLM's documented request schema to check the bodies against."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.backends.scripted import empty_record_json

STUB_MODEL = "stub/llava"


# -- vLLM's request schema (vllm/entrypoints/openai/protocol.py), the parts we send ------------
# extra="forbid" so that a stray field (the removed `guided_json`, say) fails the test.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class VllmJsonSchemaFormat(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for the name
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class VllmResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: VllmJsonSchemaFormat | None = None


class ImageUrl(_Strict):
    url: str


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class UserMessage(_Strict):
    role: Literal["user"]
    content: list[ImagePart | TextPart]


class VllmChatRequest(_Strict):
    model: str
    messages: list[UserMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    logprobs: bool | None = None
    response_format: VllmResponseFormat | None = None


# -- the stub server --------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] | None = None  # None: a completion with a valid empty record
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": STUB_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": {"content": [{"token": "{", "logprob": -0.25, "bytes": [123]}]},
            }
        ],
        "usage": {"prompt_tokens": 1234, "completion_tokens": 7, "total_tokens": 1241},
    }


class StubServer:
    """OpenAI-compatible on loopback: records bodies, answers chat requests from `replies`
    (then with valid empty records), serves `served`; `kill_after` N answers it shuts down."""

    def __init__(self, served: tuple[str, ...] = (STUB_MODEL,)) -> None:
        self.served = list(served)
        self.replies: deque[Reply] = deque()
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.kill_after: int | None = None
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()  # new connections are refused from here on

    def _answer(self, body: dict[str, Any], auth: str | None) -> Reply | None:
        with self._lock:
            self.bodies.append(body)
            self.auth.append(auth)
            if self.kill_after is not None and len(self.bodies) > self.kill_after:
                threading.Thread(target=self.stop).start()
                return None  # dies with the request unanswered
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            return self.replies.popleft() if self.replies else Reply()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one request per connection
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                data = [{"id": name, "object": "model"} for name in stub.served]
                self._send(Reply(body={"object": "list", "data": data}))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = stub._answer(body, self.headers.get("Authorization"))
                if reply is None:
                    return
                time.sleep(reply.delay_s)
                with stub._lock:
                    stub.in_flight -= 1
                if reply.body is None and reply.status == 200:
                    schema = body.get("response_format", {}).get("json_schema", {}).get("schema")
                    reply.body = completion(empty_record_json(schema))
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                data = json.dumps(reply.body or {"detail": "stub"}).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests): nobody left to answer

        return Handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
