"""Random-weight LLaVA-NeXT checkpoints, built offline: the `tiny-random` model, and the one
config builder the benchmarks' exact-architecture random models (bench/_random_llava.py) use too.

The offline `tiny-random` model: a LLaVA-NeXT with random weights, built locally in seconds.

It exercises the real transformers code path (processor, AnyRes tiling, batched `generate()`,
constrained decoding) without downloading anything. Its geometry is the mistral-7b checkpoint's
scaled down by 6 (56 px tiles, 14 px patches, the same five pinpoints / 6), and its logits are
padded past the tokenizer to a multiple of 64 like the real ones (3,008 for 3,002 tokens here,
32,064 for 32,002 there), so budget and mask-width bugs show up here first. Its output is
noise: use it for plumbing, never for quality. The transformers backend loads it
(`pipeline.backends.transformers.create_tiny`). torch and transformers are imported inside the
functions that need them: importing `pipeline` never imports torch.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.geometry import DEFAULT_GRID_PINPOINTS, ImageGeometry
from pipeline.settings import Settings

# Provenance and cache folder name: bump the version whenever the recipe below changes, so
# that caches rebuild and records made with the old weights stay distinguishable.
TINY_MODEL_ID = "tiny-random-v1"
# Written last into the build folder: a folder without it is not a finished build.
_MARKER = "docextract-tiny.json"
_SEED = 1234
_rng_lock = threading.Lock()
_SCALE = 6
TINY_GEOMETRY = ImageGeometry(
    tile_size=336 // _SCALE,
    patch_size=14,
    grid_pinpoints=tuple((h // _SCALE, w // _SCALE) for h, w in DEFAULT_GRID_PINPOINTS),
)
_TOKENIZER_VOCAB = 3000
# Mistral's layout: <unk> <s> </s> first, then the learned vocabulary, then <image> <pad> appended.
_LEADING_SPECIALS = ("<unk>", "<s>", "</s>")
_TRAILING_SPECIALS = ("<image>", "<pad>")

# The llava-hf mistral template: images first, then the text, inside [INST] ... [/INST]; the
# tokenizer adds <s>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\\n' + message['content'][0]['text'] + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'][0]['text'] + '</s> ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)

_WORDS_TEXT = (
    "invoice number date due total subtotal tax amount quantity unit price description seller "
    "buyer name address iban purchase order currency payment terms net days bank account vat id "
    "line item service consulting hardware software license support hours delivery shipping "
    "discount rate percent street road avenue city berlin paris london munich new york gmbh ltd "
    "inc sa bv the of and for to in on with from by is as at or be this that are was it an "
    "extract fields document image page answer json schema value null write every key return "
    "only one object nothing else read printed as shown if a field is missing use what sold "
    "company person postal one line identification still pay still grand including before "
    "after per each month year office paper printer cable monitor laptop desk chair coffee"
)
_WORDS = _WORDS_TEXT.split()
_PUNCTUATION = "{}[]:,.\"-+/()%€$£#@&*!?;'_=<>|\\"


def _corpus(lines: int = 3000) -> list[str]:
    """Seeded synthetic text: prose, compact JSON records, numbers, dates and punctuation."""
    rng = random.Random(_SEED)
    out = [_PUNCTUATION, "0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    for _ in range(lines):
        words = rng.choices(_WORDS, k=rng.randint(4, 14))
        out.append(" ".join(words).capitalize() + rng.choice(".:?!"))
        record = {
            rng.choice(_WORDS): rng.choice(
                [
                    None,
                    " ".join(rng.choices(_WORDS, k=rng.randint(1, 4))).title(),
                    f"{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}",
                    f"20{rng.randint(0, 39):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    rng.choice(["EUR", "USD", "GBP", "CHF"]),
                    [],
                    [{"amount": str(rng.randint(1, 999))}],
                ]
            )
            for _ in range(rng.randint(1, 5))
        }
        out.append(json.dumps(record, separators=(",", ":")))
        out.append(f"[INST] <image>\n{' '.join(words)} [/INST]")
    return out


def _train_tokenizer():  # -> PreTrainedTokenizerFast
    """A byte-level BPE trained on `_corpus()`; any text encodes, no <unk> ever needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TOKENIZER_VOCAB,
        special_tokens=list(_LEADING_SPECIALS),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(_corpus(), trainer)
    backend.add_special_tokens(list(_TRAILING_SPECIALS))
    bos_id = backend.token_to_id("<s>")
    # Like Llama/Mistral, the tokenizer (not the chat template) puts <s> in front.
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
        extra_special_tokens={"image_token": "<image>"},
    )


def _padded_vocab(tokenizer_length: int, multiple: int = 64) -> int:
    """Next multiple of 64 strictly above the tokenizer length, so padded ids always exist."""
    return (tokenizer_length // multiple + 1) * multiple


def _build_processor(tokenizer):  # -> LlavaNextProcessor
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    side = TINY_GEOMETRY.tile_size
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_grid_pinpoints=[list(p) for p in TINY_GEOMETRY.grid_pinpoints],
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=TINY_GEOMETRY.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def llava_next_config(
    tokenizer: Any,
    *,
    vocab_size: int,
    text: dict[str, Any],
    vision: dict[str, Any],
    geometry: ImageGeometry,
) -> Any:  # -> LlavaNextConfig
    """A LLaVA-NeXT config (Mistral text model, CLIP vision tower) over `tokenizer`'s special
    tokens, at the sizes `text` / `vision` give and the tile geometry of `geometry`."""
    from transformers import CLIPVisionConfig, LlavaNextConfig, MistralConfig

    ids = {n: tokenizer.convert_tokens_to_ids(n) for n in ("<s>", "</s>", "<pad>", "<image>")}
    text_config = MistralConfig(
        vocab_size=vocab_size,
        sliding_window=None,
        bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"],
        pad_token_id=ids["<pad>"],
        tie_word_embeddings=False,
        **text,
    )
    vision_config = CLIPVisionConfig(
        image_size=geometry.tile_size, patch_size=geometry.patch_size, **vision
    )
    side = geometry.tile_size // geometry.patch_size
    return LlavaNextConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=ids["<image>"],
        image_grid_pinpoints=[list(p) for p in geometry.grid_pinpoints],
        image_seq_length=side * side,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )


def _build_model(tokenizer):  # -> LlavaNextForConditionalGeneration
    import torch
    from transformers import LlavaNextForConditionalGeneration

    config = llava_next_config(
        tokenizer,
        vocab_size=_padded_vocab(len(tokenizer)),
        text=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=8192,
        ),
        vision=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=32,
        ),
        geometry=TINY_GEOMETRY,
    )
    # Weights come from torch's global RNG: seed a private copy of it, and one build at a time
    # per process, so concurrent builds get the same bytes and the caller's RNG is untouched.
    with _rng_lock, torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = LlavaNextForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer)
    return model


def set_generation_ids(model: Any, tokenizer: Any) -> None:
    """Greedy generation stops at `</s>` and pads with `<pad>` (and starts from `<s>`)."""
    ids = {n: tokenizer.convert_tokens_to_ids(n) for n in ("<s>", "</s>", "<pad>")}
    generation = model.generation_config
    generation.bos_token_id, generation.eos_token_id = ids["<s>"], ids["</s>"]
    generation.pad_token_id = ids["<pad>"]


def _write(folder: Path) -> None:
    tokenizer = _train_tokenizer()
    _build_processor(tokenizer).save_pretrained(folder)
    _build_model(tokenizer).save_pretrained(folder)
    marker = {"model_id": TINY_MODEL_ID, "seed": _SEED, "tokenizer_length": len(tokenizer)}
    (folder / _MARKER).write_text(json.dumps(marker))


def is_built(folder: Path) -> bool:
    """True when `folder` holds a finished tiny-random build of this version."""
    marker = folder / _MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("model_id") == TINY_MODEL_ID


def build_tiny_random(dest: Path) -> Path:
    """Build the tiny-random checkpoint into `dest` (a folder) unless it is already there.

    Atomic: files are written to a temporary sibling folder that is renamed into place, so a
    reader never sees half a model, and two processes building at once both end up with the
    winner's copy. Offline and deterministic (fixed seed). Returns `dest`.
    """
    if is_built(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _write(staging)
        try:
            os.rename(staging, dest)  # POSIX: atomic, and replaces an empty `dest` folder
        except OSError as error:
            # Another process renamed its build first: fine if it is complete.
            if not is_built(dest):
                raise ConfigError(
                    f"{str(dest)!r} exists but is not a finished {TINY_MODEL_ID} "
                    "build; delete it and run again."
                ) from error
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return dest


def tiny_model_dir(settings: Settings) -> Path:
    return settings.model_cache_dir / TINY_MODEL_ID
