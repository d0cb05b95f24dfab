"""Random-weight LLaVA-NeXT models for benchmarks, built offline.

`random-7b` has the exact architecture of llava-hf/llava-v1.6-mistral-7b-hf (Mistral-7B text
model, CLIP ViT-L/14-336 vision tower, 32,064 logits, the real 336 px tiles and grid pinpoints),
so one forward pass costs what the real model's costs; its weights are noise. `random-mini` is the
same structure at toy width, to check the benchmark's code path on a CPU. Both use the
tiny-random tokenizer (trained locally); the grammar masks are as wide as the model's logits.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from pipeline.backends.random_llava import (
    CHAT_TEMPLATE,
    build_tiny_random,
    llava_next_config,
    set_generation_ids,
)
from pipeline.backends.transformers import TransformersVisionModel, geometry_of
from pipeline.geometry import ImageGeometry
from pipeline.settings import ModelSettings

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "random-7b": {
        "text": dict(
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            rope_theta=1e6,
        ),
        "vision": dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            projection_dim=768,
        ),
    },
    "random-mini": {
        "text": dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
        "vision": dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=64,
        ),
    },
}


def build(arch: str, cache: Path, settings: ModelSettings) -> TransformersVisionModel:
    """A loaded `TransformersVisionModel` of architecture `arch` with random weights."""
    tokenizer_dir = build_tiny_random(cache / "tiny-random-v1")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.padding_side = "left"
    spec = ARCHITECTURES[arch]
    config = llava_next_config(
        tokenizer,
        vocab_size=32064,
        text={"max_position_embeddings": 32768, **spec["text"]},
        vision=spec["vision"],
        geometry=ImageGeometry(),  # the real checkpoint's 336 px tiles and grid pinpoints
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    started = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:  # initialise on the device: 7.5 B parameters never touch host memory
            model = LlavaNextForConditionalGeneration._from_config(
                config, attn_implementation=settings.attn_implementation
            ).eval()
    finally:
        torch.set_default_dtype(previous)
    set_generation_ids(model, tokenizer)
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}
        ),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    wrapped = TransformersVisionModel(arch, settings, model_id=f"{arch} (random weights)")
    wrapped.model, wrapped.processor, wrapped.device = model, processor, device
    wrapped.geometry = geometry_of(processor, wrapped.geometry)
    params = sum(p.numel() for p in model.parameters()) / 1e9
    print(
        f"built {arch}: {params:.2f} B parameters, {dtype}, {device}, "
        f"{time.perf_counter() - started:.1f} s"
    )
    return wrapped
