"""OpenAI-compatible backend: vLLM (or any server with `/v1/chat/completions`) over HTTP.

Each request becomes one chat completion (`openai_wire.py`): the images inline as base64 PNG
data URLs, then the prompt; the JSON Schema as `response_format` of type `json_schema` (the form
vLLM documents since it removed `guided_json` in 0.12); greedy (`temperature` 0), capped by
`max_tokens`, with `logprobs` asked for. A batch is sent concurrently over one pooled HTTP
client, at most `max_concurrency` requests in flight per model object (and, behind
`BatchingModel`, at most `batch_size`: it hands over one batch at a time). Answers are validated
downstream like any backend's: a server's claim to have constrained them is never trusted.
Tiles are cut for the llava-v1.6 grid (336 px tiles), as for the in-process 7B/13B/34B.

Image tokens are not reported by the API: `image_tokens` is estimated with the AnyRes formula of
the llava-v1.6 checkpoints (`pipeline.tiling.anyres_image_tokens`); input and output token counts
come from the server's `usage`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.backends.openai_wire import (
    chat_body,
    error_detail,
    normalize_base_url,
    parse_completion,
    retry_after_s,
)
from pipeline.errors import ConfigError, GenerationTimeout, ModelError
from pipeline.geometry import ImageGeometry, anyres_image_tokens
from pipeline.settings import MODEL_ALIASES, ModelSettings, Settings
from pipeline.types import VisionOutput, VisionRequest

log = logging.getLogger(__name__)

# Worth another try: the server is overloaded, restarting, or behind a proxy that hiccupped.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_CAP_S = 30.0
# The longest Retry-After honoured: a worker must not sleep for an hour on one request.
RETRY_AFTER_CAP_S = 60.0


@dataclass(frozen=True)
class _Retry:
    """An attempt that may succeed if made again: why, and the server's Retry-After if any."""

    problem: str
    pause_s: float | None = None


def _refusal_hint(status: int) -> str:
    if status == 404:
        return "check --model against the server's served model names"
    if status in (401, 403):
        return "set DOCEXTRACT_MODEL__API_KEY to the server's --api-key"
    if status in (400, 413, 422):
        return (
            "the request does not fit the server: check its --max-model-len (prompt, image "
            "tokens and DOCEXTRACT_MODEL__MAX_NEW_TOKENS) and --limit-mm-per-prompt"
        )
    return "see the server's log"


class OpenAIVisionModel:
    """A `VisionModel` served over HTTP by an OpenAI-compatible server. Thread-safe.

    The constructor only checks settings; `load()` checks that the server answers and serves
    the model. `model_id` is `openai:<model>` (the alias resolved), without the server's
    address: the unit of work is the model, so workers behind different replicas of the same
    server share their results instead of redoing them.
    """

    # The server batches (continuous batching): callers' requests go out as they come, up to
    # max_concurrency, instead of waiting for docextract's own batches.
    batches_itself = True

    def __init__(
        self,
        settings: ModelSettings,
        *,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not settings.base_url:
            raise ConfigError(
                "The openai backend needs a server: pass --base-url http://HOST:8000/v1 "
                "(DOCEXTRACT_MODEL__BASE_URL)."
            )
        self.settings = settings
        self.base_url = normalize_base_url(settings.base_url)
        self.name = MODEL_ALIASES.get(settings.name, settings.name)
        self.model_id = f"openai:{self.name}"
        self.geometry = ImageGeometry()  # the llava-v1.6 grid: tiles sized as for in-process
        self.served_name: str | None = None
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def image_tokens(self, width: int, height: int) -> int:
        """Estimated with the AnyRes formula: the API reports only the prompt's total."""
        return anyres_image_tokens(width, height, self.geometry)

    def load(self) -> None:
        """Check the server once: it answers `GET /models` and serves this model (or its alias).

        Raises ConfigError, listing the served names, before any document is sent.
        """
        with self._lock:
            if self.served_name is not None:
                return
            client = self._new_client()
            try:
                served = self._served_models(client)
            except ConfigError:
                client.close()
                raise
            wanted = [self.settings.name, self.name]
            match = next((name for name in wanted if name in served), None)
            if match is None:
                client.close()
                raise ConfigError(
                    f"Model {self.settings.name!r} is not served at {self.base_url!r}; it serves "
                    f"{', '.join(map(repr, served)) or 'nothing'}. Pass one of these as --model "
                    "(DOCEXTRACT_MODEL__NAME)."
                )
            self._client, self.served_name = client, match
            self._pool = ThreadPoolExecutor(
                self.settings.max_concurrency, thread_name_prefix="docextract-openai"
            )
            log.info("using %r at %s", match, self.base_url)

    def _new_client(self) -> httpx.Client:
        key = self.settings.api_key
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        timeout = self.settings.request_timeout_s
        return httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=self.settings.max_concurrency),
        )

    def _served_models(self, client: httpx.Client) -> list[str]:
        hint = "start it (e.g. `vllm serve ...`) or fix --base-url (DOCEXTRACT_MODEL__BASE_URL)"
        try:
            response = client.get("/models")
        except httpx.TransportError as error:
            raise ConfigError(
                f"No OpenAI-compatible server answers at {self.base_url!r} "
                f"({type(error).__name__}: {error}); {hint}."
            ) from error
        if response.status_code in (401, 403):
            raise ConfigError(
                f"The server at {self.base_url!r} refused the API key (HTTP "
                f"{response.status_code}); set DOCEXTRACT_MODEL__API_KEY to its --api-key."
            )
        try:
            response.raise_for_status()
            return [str(entry["id"]) for entry in response.json()["data"]]
        except (httpx.HTTPStatusError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"{self.base_url!r} is not an OpenAI-compatible API (GET /models answered "
                f"{response.status_code}: {response.text[:200]!r}); {hint}."
            ) from error

    def close(self) -> None:
        """Close the HTTP connections and threads; a later `generate()` loads again."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if self._client is not None:
                self._client.close()
            self._pool, self._client, self.served_name = None, None, None

    def generate(
        self, requests: Sequence[VisionRequest], *, timeout_s: float | None = None
    ) -> list[VisionOutput]:
        """One output per request, in order, sent concurrently (`max_concurrency` at most).

        Raises ConfigError from `load()`, GenerationTimeout when `timeout_s` passes, and
        ModelError when a request fails for good (retryable for overload, lost connections and
        timeouts; not for answers such as 400 or 404 that a retry would repeat).
        """
        if not requests:
            return []
        self.load()
        assert self._pool is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        futures = [self._pool.submit(self._complete, r, deadline) for r in requests]
        wait(futures)  # let every request finish: none keeps running after we return
        return [self._result(f, i, len(futures)) for i, f in enumerate(futures)]

    def _result(self, future: Future[VisionOutput], index: int, count: int) -> VisionOutput:
        error = future.exception()
        if error is None:
            return future.result()
        if isinstance(error, ModelError) and count > 1:
            raise type(error)(
                f"request {index + 1} of {count}: {error}", retryable=error.retryable
            ) from error
        raise error

    def _complete(self, request: VisionRequest, deadline: float | None) -> VisionOutput:
        started = time.perf_counter()
        body = chat_body(self.served_name or self.name, request, self.settings.max_new_tokens)
        data = self._post(body, deadline)
        return parse_completion(
            data,
            image_tokens=sum(self.image_tokens(i.width, i.height) for i in request.images),
            prompt_chars=len(request.prompt),
            seconds=time.perf_counter() - started,
        )

    def _post(self, body: dict[str, Any], deadline: float | None) -> Any:
        """POST with retries: backoff with jitter on 408/429/5xx and lost connections."""
        for attempt in range(self.settings.max_retries + 1):
            outcome = self._send_once(body, deadline)
            if not isinstance(outcome, _Retry):
                return outcome
            if attempt < self.settings.max_retries:
                self._pause(attempt, outcome.pause_s, deadline, outcome.problem)
        raise ModelError(
            f"{self.base_url!r} failed {attempt + 1} attempts; last: {outcome.problem}",
            retryable=True,
        )

    def _send_once(self, body: dict[str, Any], deadline: float | None) -> Any:
        """The answer's JSON, or a `_Retry` saying why another attempt may succeed."""
        assert self._client is not None
        timeout = self._time_left(deadline)
        try:
            response = self._client.post("/chat/completions", json=body, timeout=timeout)
        except httpx.TimeoutException as error:
            if deadline is not None and time.monotonic() >= deadline - 0.01:
                raise GenerationTimeout("no answer before the document's deadline") from error
            if not isinstance(error, httpx.ConnectTimeout):
                # Not retried: the server has the request and is only slower than the limit;
                # sending it again would add to its load.
                raise ModelError(
                    f"no answer from {self.base_url!r} within {timeout:g} s; raise "
                    "DOCEXTRACT_MODEL__REQUEST_TIMEOUT_S, or lower MAX_CONCURRENCY",
                    retryable=True,
                ) from error
            return _Retry(f"{type(error).__name__}: {error}")
        except httpx.TransportError as error:  # refused, reset, closed mid-answer
            return _Retry(f"{type(error).__name__}: {error}")
        if response.status_code == 200:
            return self._json(response)
        problem = f"HTTP {response.status_code}: {error_detail(response)}"
        if response.status_code not in RETRY_STATUS:
            raise ModelError(
                f"{self.base_url!r} refused the request ({problem}); "
                f"{_refusal_hint(response.status_code)}"
            )
        return _Retry(problem, retry_after_s(response.headers.get("retry-after")))

    def _time_left(self, deadline: float | None) -> float:
        limit = self.settings.request_timeout_s
        if deadline is None:
            return limit
        left = deadline - time.monotonic()
        if left <= 0:
            raise GenerationTimeout("the document's deadline passed before an answer came")
        return min(limit, left)

    def _pause(
        self, attempt: int, retry_after: float | None, deadline: float | None, why: str
    ) -> None:
        """Sleep before the next attempt: Retry-After when the server gave one (plus jitter, never
        less), else exponential backoff with jitter so that many workers do not retry in step."""
        if retry_after is not None:
            delay = min(retry_after, RETRY_AFTER_CAP_S) + random.uniform(0, self.backoff_s)
        else:
            delay = min(BACKOFF_CAP_S, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
        if deadline is not None and time.monotonic() + delay >= deadline:
            raise GenerationTimeout(f"the document's deadline comes before the retry ({why})")
        log.warning("retrying in %.1f s after %s", delay, why)
        self._sleep(delay)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as error:
            raise ModelError(
                f"{self.base_url!r} answered 200 with no JSON: {response.text[:200]!r}"
            ) from error


def create(settings: Settings) -> OpenAIVisionModel:
    """The `openai` backend: `settings.model.name` served at `settings.model.base_url`."""
    return OpenAIVisionModel(settings.model)
