"""The openai backend over real HTTP on loopback.

A stub server (http.server in a thread) records each request body, checked against vLLM's
documented request schema, and injects faults: 429 with Retry-After, 5xx, slow answers, a server
down at start or killed mid-run, an unknown model. `transformers serve` running tiny-random (slow
tests) covers the real path: image transport, usage, and the re-ask loop. It ignores
`response_format`, so the random model's answers are invalid and documents end `invalid_output`.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _extract import extract_final
from _openai_stub import (
    STUB_MODEL,
    ImagePart,
    Reply,
    StubServer,
    TextPart,
    VllmChatRequest,
    completion,
    free_port,
)
from conftest import make_page
from PIL import Image, ImageChops, ImageDraw
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.backends import create_model, forget_loaded_models, get_model
from pipeline.backends.batching import BatchingModel
from pipeline.backends.openai import OpenAIVisionModel
from pipeline.backends.openai_wire import retry_after_s
from pipeline.backends.random_llava import TINY_GEOMETRY, build_tiny_random
from pipeline.cli import app
from pipeline.errors import ConfigError, GenerationTimeout, ModelError
from pipeline.geometry import anyres_image_tokens
from pipeline.runner import process, register
from pipeline.settings import ModelSettings, Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction
from pipeline.types import ErrorCategory, Status, VisionRequest
from schemas.invoice import Invoice


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    yield server
    server.stop()


def openai_model(url: str, **model: Any) -> tuple[OpenAIVisionModel, list[float]]:
    """The backend on `url`, with sleeps recorded instead of slept (fault tests stay fast)."""
    sleeps: list[float] = []
    settings = ModelSettings(**{"name": STUB_MODEL, "base_url": url, **model})
    return OpenAIVisionModel(settings, backoff_s=0.2, sleep=sleeps.append), sleeps


def page_image(size: tuple[int, int], label: str = "INVOICE 42") -> Image.Image:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((10, 10), label, fill="black")
    return image


def request(size: tuple[int, int] = (700, 500), **kwargs: Any) -> VisionRequest:
    return VisionRequest(images=(page_image(size),), prompt="Extract the invoice.", **kwargs)


# -- the request body and the answer ------------------------------------------------------------


def test_request_body_is_vllms_documented_schema_and_the_answer_is_read(
    stub: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included: the key must not show
    settings = Settings(
        model={
            "backend": "openai",
            "name": STUB_MODEL,
            "base_url": stub.url.removesuffix("/v1"),  # /v1 is added to a bare server URL
            "api_key": "sk-test-secret",
            "max_new_tokens": 300,
        }
    )
    model = create_model(settings)
    assert isinstance(model, OpenAIVisionModel) and model.model_id == f"openai:{STUB_MODEL}"
    assert "sk-test-secret" not in repr(settings) + model.model_id
    image = page_image((700, 500))
    schema = Invoice.grammar_schema()
    prompt = "Extract the invoice."
    req = VisionRequest(images=(image,), prompt=prompt, json_schema=schema, max_new_tokens=512)
    [output] = model.generate([req])

    [body] = stub.bodies
    sent = VllmChatRequest.model_validate(body)
    assert (sent.model, sent.temperature, sent.max_tokens, sent.logprobs) == (
        STUB_MODEL,
        0,
        300,  # the smaller of the request's cap and the setting's
        True,
    )
    assert sent.response_format is not None and sent.response_format.type == "json_schema"
    assert sent.response_format.json_schema is not None
    assert sent.response_format.json_schema.json_schema == schema
    assert sent.response_format.json_schema.strict is True
    assert "guided_json" not in json.dumps(body)
    [image_part, text_part] = sent.messages[0].content
    assert isinstance(image_part, ImagePart) and isinstance(text_part, TextPart)
    assert text_part.text == prompt
    prefix = "data:image/png;base64,"
    assert image_part.image_url.url.startswith(prefix)
    received = Image.open(io.BytesIO(base64.b64decode(image_part.image_url.url[len(prefix) :])))
    assert received.format == "PNG" and received.size == image.size
    assert ImageChops.difference(received.convert("RGB"), image).getbbox() is None  # lossless
    assert stub.auth == ["Bearer sk-test-secret"]
    assert "sk-test-secret" not in caplog.text and "POST" in caplog.text

    Invoice.model_validate_json(output.text)
    assert (output.stop_reason, output.input_tokens, output.output_tokens) == ("end", 1234, 7)
    assert output.image_tokens == anyres_image_tokens(700, 500) == model.image_tokens(700, 500)
    assert output.tokens is not None and output.tokens[0].logprob == -0.25


def test_finish_reason_length_alias_names_and_requests_in_flight(stub: StubServer) -> None:
    stub.served = ["llava-hf/llava-v1.6-mistral-7b-hf"]
    model, _ = openai_model(stub.url, name="llava-next-7b", max_concurrency=3)
    assert model.model_id == "openai:llava-hf/llava-v1.6-mistral-7b-hf"
    stub.replies.append(Reply(body=completion('{"invoice_number": "12', "length")))
    [cut] = model.generate([request()])
    assert (cut.stop_reason, cut.text) == ("length", '{"invoice_number": "12')
    stub.replies.extend(Reply(delay_s=0.5) for _ in range(6))
    outputs = model.generate([request(json_schema=Invoice.grammar_schema()) for _ in range(6)])
    assert [o.stop_reason for o in outputs] == ["end"] * 6
    assert {b["model"] for b in stub.bodies} == {"llava-hf/llava-v1.6-mistral-7b-hf"}
    assert stub.most_in_flight == 3  # concurrent, and never more than max_concurrency


# -- faults ---------------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(stub: StubServer) -> None:
    model, sleeps = openai_model(stub.url)
    stub.replies.append(Reply(429, {"error": {"message": "busy"}}, {"Retry-After": "3"}))
    [output] = model.generate([request()])
    assert output.text and len(stub.bodies) == 2
    [pause] = sleeps
    assert 3.0 <= pause <= 3.0 + model.backoff_s  # never sooner, jittered a little
    in_30_s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (retry_after_s(in_30_s) or 0) <= 30


def test_5xx_is_retried_with_growing_backoff_then_fails_retryable(stub: StubServer) -> None:
    model, sleeps = openai_model(stub.url, max_retries=2)
    stub.replies.append(Reply(500, {"message": "boom"}))
    [output] = model.generate([request()])
    assert output.text and len(stub.bodies) == 2
    assert 0.5 * model.backoff_s <= sleeps[0] <= model.backoff_s

    sleeps.clear()
    stub.replies.extend(Reply(503, {"detail": "overloaded"}) for _ in range(3))
    with pytest.raises(ModelError, match="failed 3 attempts; last: HTTP 503: overloaded") as info:
        model.generate([request()])
    assert info.value.retryable
    assert sleeps[0] <= model.backoff_s <= sleeps[1]  # exponential, jittered


def test_a_request_the_server_refuses_is_not_retried(stub: StubServer) -> None:
    model, sleeps = openai_model(stub.url)
    stub.replies.append(Reply(400, {"message": "prompt is longer than max-model-len 4096"}))
    with pytest.raises(ModelError, match=r"max-model-len 4096.*--max-model-len") as info:
        model.generate([request()])
    assert not info.value.retryable and len(stub.bodies) == 1 and not sleeps


def test_a_slow_server_times_out_without_a_resend(stub: StubServer) -> None:
    model, sleeps = openai_model(stub.url, request_timeout_s=0.3)
    stub.replies.append(Reply(delay_s=3))
    with pytest.raises(ModelError, match=r"within 0.3 s.*REQUEST_TIMEOUT_S") as info:
        model.generate([request()])
    assert info.value.retryable and len(stub.bodies) == 1 and not sleeps

    stub.replies.append(Reply(delay_s=3))  # the document's own deadline comes first
    patient, _ = openai_model(stub.url, request_timeout_s=60)
    with pytest.raises(GenerationTimeout):
        patient.generate([request()], timeout_s=0.3)


def test_server_down_at_start_is_a_config_error_before_any_request() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model, sleeps = openai_model(url)
    with pytest.raises(
        ConfigError, match=re.escape(f"No OpenAI-compatible server answers at '{url}'")
    ):
        model.load()
    with pytest.raises(ConfigError, match="--base-url"):
        model.generate([request()])  # loads lazily: the same clear error
    assert not sleeps
    with pytest.raises(ConfigError, match="needs a server: pass --base-url"):
        create_model(Settings(model={"backend": "openai"}))
    with pytest.raises(ConfigError, match="not an http"):
        create_model(Settings(model={"backend": "openai", "base_url": "gpu1:8000"}))


def test_cli_base_url_feeds_the_openai_backend(tmp_path: Path) -> None:
    args = ["run", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    result = CliRunner().invoke(app, [*args, "--base-url", "gpu1:8000"])
    # checked before any work: the option reached model.base_url and chose the openai backend
    assert result.exit_code == 2 and "not an http(s) URL" in " ".join(result.output.split())


def test_unknown_model_name_lists_the_served_ones(stub: StubServer) -> None:
    stub.served = ["llava-a", "llava-b"]
    model, _ = openai_model(stub.url, name="llava-c")
    with pytest.raises(ConfigError, match=r"'llava-c' is not served .* 'llava-a', 'llava-b'"):
        model.load()
    assert not stub.bodies


def test_server_killed_mid_run_fails_the_rest_with_model_error_and_loses_none(
    stub: StubServer, tmp_path: Path, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={
            "model": ModelSettings(
                backend="openai", name=STUB_MODEL, base_url=stub.url, max_retries=1
            ),
            "tiling": settings.tiling.model_copy(update={"strategy": "anyres"}),
        }
    )
    model = BatchingModel(
        OpenAIVisionModel(settings.model, backoff_s=0.01), max_batch=4, max_wait_s=0.01
    )
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    paths = []
    for number in range(4):
        path = tmp_path / f"scan{number}.png"
        page_image((600, 800), f"INVOICE {number}").save(path)
        paths.append(path)
    stub.kill_after = 2  # two documents answered, then the server dies
    outcomes = [
        process(factory, register(factory, p, settings), settings, model=model)[0] for p in paths
    ]

    assert [o.status for o in outcomes[:2]] == ["needs_review"] * 2  # empty records, answered
    assert [o.status for o in outcomes[2:]] == ["failed"] * 2
    with factory() as session:
        documents = set(session.scalars(select(Document.id)))
        rows = session.execute(select(Extraction.document_id, Extraction.error_category)).all()
    assert len(documents) == 4 and sorted(d for d, _ in rows) == sorted(documents)  # one each
    assert sorted(c or "" for _, c in rows) == ["", "", "model_error", "model_error"]
    assert "failed 2 attempts; last: ConnectError" in str(outcomes[3].reason)


# -- a real server: `transformers serve` with tiny-random ------------------------------------------


@contextmanager
def transformers_serve(folder: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`transformers serve FOLDER` on a free loopback port; yields (base URL, process) once it
    answers /health, and always kills it."""
    port = free_port()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder)]
    options = ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    # one torch thread: twice as fast here, the tiny model gains nothing from the client's cores
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, *options], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_random(tmp_path_factory.mktemp("served") / "tiny-random")


@pytest.fixture(scope="module")
def served_tiny(tiny_folder: Path) -> Iterator[str]:
    with transformers_serve(tiny_folder, tiny_folder.parent / "serve.log") as (url, _):
        yield url


def tiny_settings(tmp_path: Path, url: str, folder: Path, **model: Any) -> Settings:
    return Settings(
        db_url=f"sqlite:///{tmp_path / 'docextract.db'}",
        cache_dir=tmp_path / "cache",
        model={
            "backend": "openai",
            "name": str(folder),
            "base_url": url,
            "max_new_tokens": 24,
            "batch_size": 4,
            **model,
        },
        tiling={"strategy": "anyres"},
        extraction={"max_reasks": 1},
    )


@pytest.mark.slow
def test_transformers_serve_gets_each_image_whole_and_reports_usage(
    served_tiny: str, tiny_folder: Path
) -> None:
    model, _ = openai_model(served_tiny, name=str(tiny_folder), max_new_tokens=16)
    sizes = [(120, 90), (300, 120), (90, 260)]
    outputs = model.generate([request(size) for size in sizes])
    # Same prompt, so the prompt tokens differ only by each image's tokens: the server's
    # processor saw every image at its own size.
    text_tokens = {
        o.input_tokens - anyres_image_tokens(w, h, TINY_GEOMETRY)
        for o, (w, h) in zip(outputs, sizes, strict=True)
    }
    assert len(text_tokens) == 1 and text_tokens.pop() > 0
    for output in outputs:
        assert output.text and 0 < output.output_tokens <= 16
        assert output.stop_reason == ("length" if output.output_tokens == 16 else "end")
        assert output.tokens is None  # transformers serve ignores `logprobs`


@pytest.mark.slow
def test_extraction_through_transformers_serve_reasks_then_fails_invalid_output(
    served_tiny: str, tiny_folder: Path, tmp_path: Path
) -> None:
    settings = tiny_settings(tmp_path, served_tiny, tiny_folder)
    pages = [make_page(tmp_path / "pages", 1, size=(400, 520))]
    model = get_model(settings)  # as a run builds it: the registry, behind BatchingModel
    try:
        result = extract_final(pages, Invoice, model, settings)
    finally:
        forget_loaded_models()
    # The server ignores response_format: the random model's text is never a valid invoice,
    # so the page is asked again with the problem, then fails with the raw answers kept.
    assert result.status == Status.FAILED
    assert result.error_category == ErrorCategory.INVALID_OUTPUT
    assert "no valid answer after 2 attempts" in str(result.error_message)
    assert [call.attempt for call in result.calls] == [0, 1]
    for call in result.calls:
        assert call.text and call.problem and call.input_tokens > 0
        # an estimate for the llava-v1.6 grid, not tiny-random's: the API reports no such count
        assert call.image_tokens == anyres_image_tokens(400, 520)


@pytest.mark.slow
def test_transformers_serve_unknown_model_then_killed_mid_run(
    served_tiny: str, tiny_folder: Path, tmp_path: Path
) -> None:
    wrong, _ = openai_model(served_tiny, name="llava-next-7b")
    with pytest.raises(ConfigError, match=re.escape(f"it serves '{tiny_folder}'")):
        wrong.load()

    with transformers_serve(tiny_folder, tmp_path / "serve.log") as (url, proc):
        model, sleeps = openai_model(url, name=str(tiny_folder), max_new_tokens=16, max_retries=1)
        assert model.generate([request((120, 90))])[0].text
        proc.kill()
        proc.wait(timeout=30)
        with pytest.raises(ModelError, match="failed 2 attempts; last: ConnectError") as info:
            model.generate([request((120, 90))])
        assert info.value.retryable and len(sleeps) == 1
