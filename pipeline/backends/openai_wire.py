"""What goes over the wire to an OpenAI-compatible server: the chat-completions request body in
the form vLLM documents (images as data URLs, `response_format` of type `json_schema`; vLLM
removed `guided_json` in 0.12), the parts of its answers that docextract reads, and its URL.

Pure functions, no transport: `pipeline/backends/openai.py` sends and retries.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from PIL import Image

from pipeline.errors import ConfigError, ModelError
from pipeline.types import StopReason, TokenLogprob, VisionOutput, VisionRequest


def chat_body(model: str, request: VisionRequest, max_tokens: int) -> dict[str, Any]:
    """The `/v1/chat/completions` body for one request (vLLM's documented OpenAI schema)."""
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": png_data_url(image)}} for image in request.images
    ]
    content.append({"type": "text", "text": request.prompt})
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": min(request.max_new_tokens, max_tokens),
        "logprobs": True,
    }
    if request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": _schema_name(request.json_schema),
                "schema": request.json_schema,
                "strict": True,
            },
        }
    return body


def _schema_name(schema: dict[str, Any]) -> str:
    """The schema's title as OpenAI allows names (letters, digits, _ and -; 64 at most)."""
    title = schema.get("title")
    raw = title if isinstance(title, str) and title else "record"
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in raw)[:64]


def png_data_url(image: Image.Image) -> str:
    """`data:image/png;base64,...` of an image (lossless: small print must survive)."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    # Level 1: within 10% of level 6's size on document tiles, and 1.5x faster to encode.
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_completion(
    data: Any, *, image_tokens: int, prompt_chars: int, seconds: float
) -> VisionOutput:
    """A `VisionOutput` from a chat completion's JSON. Raises ModelError if it is not one.

    finish_reason "length" -> stop reason "length", anything else -> "end" (validation decides
    whether the text is usable). Without `usage`, token counts are estimated (4 chars a token).
    """
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise ModelError(
            f"the server's answer is not a chat completion (missing {error!s}): {str(data)[:200]!r}"
        ) from error
    tokens = _logprobs(choice.get("logprobs"))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    stop: StopReason = "length" if finish == "length" else "end"
    return VisionOutput(
        text=text,
        stop_reason=stop,
        input_tokens=int(usage.get("prompt_tokens") or image_tokens + prompt_chars // 4),
        output_tokens=int(
            usage.get("completion_tokens") or (len(tokens) if tokens else len(text) // 4)
        ),
        image_tokens=image_tokens,
        seconds=seconds,
        tokens=tokens,
    )


def _logprobs(block: Any) -> tuple[TokenLogprob, ...] | None:
    if not isinstance(block, dict) or not isinstance(block.get("content"), list):
        return None
    return tuple(
        TokenLogprob(str(item.get("token", "")), float(item.get("logprob", 0.0)))
        for item in block["content"]
        if isinstance(item, dict)
    )


def retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_detail(response: httpx.Response) -> str:
    """The server's own error message (vLLM: `message`, FastAPI: `detail`), shortened."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict):
        inner: dict[str, Any] = data["error"] if isinstance(data.get("error"), dict) else data
        for key in ("message", "detail", "error"):
            if inner.get(key):
                return str(inner[key])[:300]
    return str(data)[:300]


def normalize_base_url(url: str) -> str:
    """`http://host:8000` -> `http://host:8000/v1`; a URL with a path is kept (minus a final /).

    Raises ConfigError for anything but an http(s) URL with a host.
    """
    parsed = httpx.URL(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"Base URL {url!r} is not an http(s) URL: give the server's OpenAI base URL, "
            "e.g. --base-url http://gpu1:8000/v1 (DOCEXTRACT_MODEL__BASE_URL)."
        )
    path = parsed.path.rstrip("/")
    return str(parsed.copy_with(path=path or "/v1", query=None, fragment=None))
