"""The in-process transformers backend on the offline tiny-random LLaVA-NeXT (CPU, fp32).

Real code paths: the locally built checkpoint, the real LlavaNextProcessor, batched
`generate()` and llguidance-constrained decoding. The model's weights are random, so tests check
plumbing (shapes, counts, batching, grammar), never content.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, LlavaNextImageProcessorPil, LlavaNextProcessor

from pipeline.backends import create_model
from pipeline.backends.grammar import JsonSchemaLogitsProcessor, compile_json_schema
from pipeline.backends.random_llava import TINY_GEOMETRY, TINY_MODEL_ID, build_tiny_random, is_built
from pipeline.backends.transformers import TransformersVisionModel, geometry_of
from pipeline.errors import ConfigError, ModelError
from pipeline.geometry import ImageGeometry
from pipeline.settings import ModelSettings, Settings
from pipeline.types import VisionRequest
from schemas.invoice import Invoice

SMALL_SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "maximum": 99},
        "tag": {"type": "string", "maxLength": 3},
    },
    "required": ["n", "tag"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No test here may reach the hub: the build and every load are offline."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, offline) -> Settings:
    return Settings(
        cache_dir=tmp_path_factory.mktemp("cache"),
        model=ModelSettings(name="tiny-random", device="cpu", dtype="float32"),
    )


@pytest.fixture(scope="module")
def tiny_model(tiny_settings) -> TransformersVisionModel:
    model = create_model(tiny_settings)
    assert model.model is None, "constructors must not load"
    model.load()
    return model


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_model, tiny_settings) -> Path:
    return tiny_settings.model_cache_dir / TINY_MODEL_ID


def image(width: int, height: int, shade: int = 200) -> Image.Image:
    return Image.new("RGB", (width, height), (shade, 255 - shade, 128))


def test_tiny_build_is_offline_complete_and_reused(tiny_model, tiny_model_dir):
    assert tiny_model.model_id == TINY_MODEL_ID
    assert is_built(tiny_model_dir)
    weights = tiny_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_random(tiny_model_dir) == tiny_model_dir
    assert weights.stat().st_mtime_ns == before, "a finished build must be reused, not rebuilt"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    assert tokenizer.padding_side == "left"
    assert 1000 < len(tokenizer) < 8000
    vocab = tiny_model.vocab_size
    assert vocab % 64 == 0 and vocab > len(tokenizer), "logits must be padded like 32,064 vs 32,002"
    assert tiny_model.model.config.image_token_index == tokenizer.convert_tokens_to_ids("<image>")
    assert tiny_model.geometry == TINY_GEOMETRY


def test_concurrent_builds_end_with_one_complete_deterministic_folder(tmp_path, tiny_model_dir):
    dest = tmp_path / "models" / TINY_MODEL_ID
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build_tiny_random, [dest, dest]))
    assert results == [dest, dest] and is_built(dest)
    assert os.listdir(dest.parent) == [TINY_MODEL_ID], "staging folders must be cleaned up"
    for name in ("model.safetensors", "tokenizer.json"):  # seeded: same bytes on every build
        assert (dest / name).read_bytes() == (tiny_model_dir / name).read_bytes()


SIZES = [(56, 56), (200, 150), (60, 300), (300, 60), (1000, 1000), (113, 97)]


@pytest.mark.parametrize("size", SIZES)
def test_image_tokens_equal_processor_count(tiny_model, size):
    request = VisionRequest(images=(image(*size),), prompt="x")
    inputs = tiny_model.encode([request])
    inserted = int((inputs["input_ids"] == tiny_model.processor.image_token_id).sum())
    assert tiny_model.image_tokens(*size) == inserted


def test_image_tokens_real_7b_geometry(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    geometry = geometry_of(processor, ImageGeometry(tile_size=1))
    assert geometry == ImageGeometry()  # 336 px tiles, 14 px patches, the mistral-7b pinpoints
    for (width, height), expected in {
        (1654, 2339): 2256,
        (1000, 1000): 2928,
        (500, 2000): 1944,
    }.items():
        out = processor(images=[image(width, height)], text=["<image>\nx"], return_tensors="pt")
        inserted = int((out["input_ids"] == tokenizer.convert_tokens_to_ids("<image>")).sum())
        assert inserted == expected
        assert (
            TransformersVisionModel("unused", ModelSettings(), geometry=geometry).image_tokens(
                width, height
            )
            == expected
        )


def mixed_requests() -> list[VisionRequest]:
    schema = Invoice.grammar_schema()
    return [
        VisionRequest(
            images=(image(200, 150),),
            prompt="Extract the invoice.",
            json_schema=schema,
            max_new_tokens=24,
        ),
        VisionRequest(
            images=(image(60, 300, 30),),
            prompt="Read this tall strip, please.",
            json_schema=None,
            max_new_tokens=12,
        ),
        VisionRequest(
            images=(image(1000, 1000, 90),),
            prompt="Small record.",
            json_schema=SMALL_SCHEMA,
            max_new_tokens=30,
        ),
    ]


def test_batched_generation_equals_one_at_a_time(tiny_model):
    requests = mixed_requests()
    batched = tiny_model.generate(requests)
    single = [tiny_model.generate([request])[0] for request in requests]
    image_tokens = {out.image_tokens for out in batched}
    assert len(image_tokens) == 3, "the rows must have different image sizes"
    for one, many in zip(single, batched, strict=True):
        assert [t.text for t in many.tokens] == [t.text for t in one.tokens]
        assert (many.text, many.stop_reason) == (one.text, one.stop_reason)
        assert (many.input_tokens, many.image_tokens, many.output_tokens) == (
            one.input_tokens,
            one.image_tokens,
            one.output_tokens,
        )
        assert [t.logprob for t in many.tokens] == pytest.approx(
            [t.logprob for t in one.tokens], abs=1e-4
        )


def test_rows_keep_their_own_caps_and_free_rows_are_unconstrained(tiny_model):
    invoice, free, small = tiny_model.generate(mixed_requests())
    assert free.stop_reason == "length" and free.output_tokens == 12
    assert not free.text.startswith("{"), "a row without schema must not be held to JSON"
    assert invoice.output_tokens <= 24 and invoice.text.startswith('{"invoice_number":')
    assert small.stop_reason == "end" and json.loads(small.text).keys() == {"n", "tag"}
    for out in (invoice, free, small):
        assert out.seconds > 0 and out.input_tokens > out.image_tokens > 0
        assert all(t.logprob <= 0 and math.isfinite(t.logprob) for t in out.tokens)


def test_constrained_invoices_validate_within_budget(tiny_model):
    schema = Invoice.grammar_schema()
    requests = [
        VisionRequest(
            images=(image(*size),),
            prompt="Extract the invoice as JSON.",
            json_schema=schema,
            max_new_tokens=400,
        )
        for size in [(300, 400), (120, 60)]
    ]
    for out in tiny_model.generate(requests):
        assert out.stop_reason == "end", out.text
        assert out.output_tokens <= 400
        Invoice.model_validate_json(out.text)


def test_logprobs_match_the_processed_scores(tiny_model):
    """The recorder's per-token values equal log_softmax of generate()'s own output_scores."""
    requests = mixed_requests()[:2]
    outputs = tiny_model.generate(requests)
    inputs = tiny_model.encode(requests)
    eos, pad = tiny_model.special_token_ids()
    grammar = JsonSchemaLogitsProcessor(
        tiny_model.processor.tokenizer,
        [r.json_schema for r in requests],
        vocab_size=tiny_model.vocab_size,
        eos_token_ids=eos,
        pad_token_id=pad,
        max_new_tokens=[24, 12],
    )
    result = tiny_model.model.generate(
        **inputs,
        do_sample=False,
        max_new_tokens=12,
        logits_processor=[grammar],
        return_dict_in_generate=True,
        output_scores=True,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    scores = torch.stack(result.scores, dim=1).log_softmax(-1)
    chosen = result.sequences[:, inputs["input_ids"].shape[1] :]
    expected = scores.gather(2, chosen[..., None]).squeeze(-1)
    for row, out in enumerate(outputs):
        got = [t.logprob for t in out.tokens][:12]
        assert got == pytest.approx(expected[row, : len(got)].tolist(), abs=1e-5)


def test_mask_is_as_wide_as_the_padded_vocabulary(tiny_model):
    tokenizer = tiny_model.processor.tokenizer
    vocab = tiny_model.vocab_size
    processor = JsonSchemaLogitsProcessor(tokenizer, [SMALL_SCHEMA, None], vocab_size=vocab)
    scores = torch.zeros(2, vocab)
    masked = processor(torch.zeros(2, 3, dtype=torch.long), scores)
    assert masked.shape == (2, vocab)
    assert torch.isinf(masked[0, len(tokenizer) :]).all(), "padded ids must never be allowed"
    assert torch.isfinite(masked[0]).sum() > 0
    assert torch.equal(masked[1], scores[1]), "a row without schema is left alone"
    with pytest.raises(ValueError, match="padded vocabulary"):
        processor(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, len(tokenizer)))
    with pytest.raises(ConfigError, match="smaller than the tokenizer"):
        JsonSchemaLogitsProcessor(tokenizer, [SMALL_SCHEMA], vocab_size=len(tokenizer) - 1)


def test_complete_grammar_allows_only_eos_and_finished_rows_are_left_alone(tiny_model):
    tokenizer = tiny_model.processor.tokenizer
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    processor = JsonSchemaLogitsProcessor(
        tokenizer,
        [SMALL_SCHEMA],
        vocab_size=tiny_model.vocab_size,
        eos_token_ids=[eos],
        pad_token_id=pad,
    )
    sequence = [tokenizer.bos_token_id]
    processor(torch.tensor([sequence]), torch.zeros(1, tiny_model.vocab_size))
    for token in tokenizer.encode('{"n":7,"tag":"ab"}', add_special_tokens=False):
        sequence.append(token)
        processor(torch.tensor([sequence]), torch.zeros(1, tiny_model.vocab_size))
    assert processor.errors == [None]
    assert processor.allowed_mask()[0].nonzero()[0].tolist() == [eos]
    for token in (eos, pad):  # EOS, then the pad generate() writes into a finished row
        sequence.append(token)
        out = processor(torch.tensor([sequence]), torch.zeros(1, tiny_model.vocab_size))
        assert torch.isfinite(out).all()


def test_grammar_is_compiled_once_per_schema():
    reordered = json.loads(json.dumps(SMALL_SCHEMA, sort_keys=True))
    assert compile_json_schema(SMALL_SCHEMA) is compile_json_schema(reordered)
    with pytest.raises(ConfigError, match="cannot be used to constrain"):
        compile_json_schema({"type": "strin"})


def test_unusable_settings_raise_config_errors(tiny_settings, tmp_path):
    def settings(**model: str) -> Settings:
        return tiny_settings.model_copy(update={"model": ModelSettings(**model)})

    with pytest.raises(ConfigError, match="Unknown device 'tpu9'"):
        create_model(settings(name="tiny-random", device="tpu9"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            create_model(settings(name="tiny-random", device="cuda")).load()
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            create_model(settings(name="tiny-random", quantization="4bit")).load()
    with pytest.raises(ConfigError, match="does not exist"):
        create_model(settings(name=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="hf download"):
        create_model(settings(name="no-such-org/no-such-model", device="cpu")).load()


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("CUDA error: device-side assert triggered"), False),
    ],
)
def test_generate_failures_become_model_errors(tiny_model, monkeypatch, error, retryable):
    def fail(**kwargs):
        raise error

    monkeypatch.setattr(tiny_model.model, "generate", fail)
    with pytest.raises(ModelError) as caught:
        tiny_model.generate(mixed_requests()[:1])
    assert caught.value.retryable is retryable


def test_static_cache_gives_the_same_greedy_output(tiny_model, tiny_settings, monkeypatch):
    """The static-cache setting changes how the KV cache is held, never what is generated."""
    static = TransformersVisionModel(
        str(tiny_settings.model_cache_dir / TINY_MODEL_ID),
        tiny_settings.model.model_copy(update={"static_cache": True}),
        model_id=TINY_MODEL_ID,
        local_files_only=True,
    )
    static.processor, static.model, static.device = (
        tiny_model.processor,
        tiny_model.model,
        tiny_model.device,
    )
    static.geometry = tiny_model.geometry
    requests = mixed_requests()
    for plain, preallocated in zip(
        tiny_model.generate(requests), static.generate(requests), strict=True
    ):
        assert (preallocated.text, preallocated.stop_reason) == (plain.text, plain.stop_reason)
