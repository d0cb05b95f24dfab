"""In-process backend: LLaVA-NeXT (or any image-text-to-text model) through transformers.

Static batches through `generate()`: left padding, greedy decoding, one JSON-Schema grammar per
row (pipeline.backends.grammar), each row cut at its own token cap. All torch/transformers code
of the in-process path lives here; `random_llava.py` only builds checkpoint folders for it.
torch and transformers are imported on first use, not with this module: a command that finds
every document done (or names an unknown device) never pays their 3-7 s import.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.backends.grammar import JsonSchemaLogitsProcessor
from pipeline.backends.hub import check_available, resolve_source
from pipeline.backends.random_llava import (
    TINY_GEOMETRY,
    TINY_MODEL_ID,
    build_tiny_random,
    tiny_model_dir,
)
from pipeline.errors import ConfigError, ModelError
from pipeline.geometry import ImageGeometry, anyres_image_tokens
from pipeline.settings import ModelSettings, Settings
from pipeline.types import StopReason, TokenLogprob, VisionOutput, VisionRequest

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_DEVICE_TYPES = ("cpu", "cuda")
_PLAIN_DEVICE = re.compile(r"auto|(cpu|cuda)(:\d+)?")


def parse_device(name: str) -> torch.device | None:
    """The torch device named by a setting (None for 'auto'). Raises ConfigError if unknown."""
    if name == "auto":
        return None
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise ConfigError(
            f"Unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N' "
            "(DOCEXTRACT_MODEL__DEVICE)."
        ) from error
    if device.type not in _DEVICE_TYPES:
        raise ConfigError(
            f"Device {name!r} is not supported: use 'auto' or one of {', '.join(_DEVICE_TYPES)}."
        )
    return device


def resolve_device(name: str) -> torch.device:
    """The device to load on: 'auto' is CUDA when torch sees a GPU, else CPU.

    Raises ConfigError for an unknown device or one this machine does not have.
    """
    import torch

    device = parse_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ConfigError(
                f"Device {name!r} asked for, but torch {torch.__version__} sees {count} CUDA "
                "GPU(s). Set DOCEXTRACT_MODEL__DEVICE=auto or cpu, or install a CUDA build of "
                "torch."
            )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto': bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(kind: str, device: torch.device, dtype: torch.dtype) -> Any | None:
    """bitsandbytes settings for '4bit'/'8bit' (None for 'none'). Raises ConfigError off-GPU."""
    if kind == "none":
        return None
    if kind not in ("4bit", "8bit"):
        raise ConfigError(f"Unknown quantization {kind!r}: use 'none', '4bit' or '8bit'.")
    if device.type != "cuda":
        raise ConfigError(
            f"Quantization {kind!r} needs a CUDA GPU (bitsandbytes), but the model "
            f"device is {str(device)!r}. Set DOCEXTRACT_MODEL__QUANTIZATION=none."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            f"Quantization {kind!r} needs bitsandbytes: pip install 'docextract[gpu]'."
        )
    from transformers import BitsAndBytesConfig

    if kind == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def geometry_of(processor: Any, fallback: ImageGeometry) -> ImageGeometry:
    """Tile size, patch size and grid pinpoints of an AnyRes processor (`fallback` otherwise)."""
    image_processor = getattr(processor, "image_processor", None)
    pinpoints = getattr(image_processor, "image_grid_pinpoints", None)
    patch = getattr(processor, "patch_size", None)
    if not pinpoints or not patch:
        return fallback
    tile = _side(getattr(image_processor, "crop_size", None), "height") or _side(
        getattr(image_processor, "size", None), "shortest_edge"
    )
    return ImageGeometry(
        tile_size=int(tile or fallback.tile_size),
        patch_size=int(patch),
        grid_pinpoints=tuple((int(h), int(w)) for h, w in pinpoints),
    )


def _side(size: Any, key: str) -> int | None:
    if size is None:
        return None
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def _hub_hint(source: str) -> str:
    return (
        f"If {source!r} is a hub id: check the name, set HF_TOKEN for a gated or private "
        "model, or download it beforehand with `hf download "
        f"{source}` (`huggingface-cli download {source}` in older huggingface_hub) and run "
        "with DOCEXTRACT_MODEL__LOCAL_FILES_ONLY=true; unset HF_HUB_OFFLINE to allow "
        "downloads."
    )


class TransformersVisionModel:
    """A `VisionModel` on a transformers checkpoint (folder or hub id), loaded lazily.

    `source` is a folder or hub id; `prepare` (if given) runs at the start of `load()`, e.g. to
    build the checkpoint. `geometry` is the processor's once loaded (the argument before).
    """

    def __init__(
        self,
        source: str,
        settings: ModelSettings,
        *,
        model_id: str | None = None,
        geometry: ImageGeometry | None = None,
        local_files_only: bool | None = None,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        if not _PLAIN_DEVICE.fullmatch(settings.device):  # checked without importing torch
            parse_device(settings.device)  # an unknown device fails now, not after a download
        self.source = source
        self.settings = settings
        pinned = f"{source}@{settings.revision}" if settings.revision else source
        self.model_id = model_id or pinned
        self.geometry = geometry or ImageGeometry()
        self.local_files_only = (
            settings.local_files_only if local_files_only is None else local_files_only
        )
        self.processor: Any = None
        self.model: Any = None
        self.device: torch.device | None = None
        self._prepare = prepare
        self._lock = threading.Lock()
        # One batch on the device at a time: concurrent generate() calls from worker threads
        # would only compete for the same GPU (or oversubscribe the CPU threads).
        self._generate_lock = threading.Lock()

    def preflight(self) -> None:
        """Check, without loading, that the checkpoint can be loaded here (a hub id with
        downloads off must be in the cache). Raises ConfigError."""
        if self._prepare is None:  # a checkpoint built on load (tiny-random) is always there
            check_available(self.source, self.settings.revision, self.local_files_only)

    def load(self) -> None:
        """Load processor and weights once. Raises ConfigError for settings that cannot work."""
        from transformers import (
            AutoConfig,
            AutoModelForImageTextToText,
            AutoProcessor,
            LlavaNextForConditionalGeneration,
            LlavaNextProcessor,
        )

        with self._lock:
            if self.model is not None:
                return
            device = resolve_device(self.settings.device)
            dtype = resolve_dtype(self.settings.dtype, device)
            quantization = quantization_config(self.settings.quantization, device, dtype)
            if self._prepare is not None:
                self._prepare()
            config = self._pretrained(AutoConfig)
            is_llava_next = config.model_type == "llava_next"
            processor = self._pretrained(LlavaNextProcessor if is_llava_next else AutoProcessor)
            processor.tokenizer.padding_side = "left"  # batched generation needs left padding
            kwargs: dict[str, Any] = {
                "config": config,
                "dtype": dtype,
                "attn_implementation": self.settings.attn_implementation,
            }
            if quantization is not None:
                kwargs.update(quantization_config=quantization, device_map={"": str(device)})
            model_class = (
                LlavaNextForConditionalGeneration if is_llava_next else AutoModelForImageTextToText
            )
            model = self._pretrained(model_class, **kwargs)
            if quantization is None:
                model.to(device)
            self.processor, self.device = processor, device
            self.geometry = geometry_of(processor, self.geometry)
            self.model = model.eval()
            log.info("loaded %s on %s (%s)", self.model_id, device, dtype)

    def _pretrained(self, cls: Any, **kwargs: Any) -> Any:
        try:
            return cls.from_pretrained(
                self.source,
                revision=self.settings.revision,
                local_files_only=self.local_files_only,
                **kwargs,
            )
        except OSError as error:
            raise ConfigError(
                f"Cannot load {cls.__name__} for model {self.source!r}: "
                f"{error}\n{_hub_hint(self.source)}"
            ) from error
        except (ValueError, ImportError) as error:
            raise ConfigError(
                f"Cannot load model {self.source!r} with {cls.__name__}: {error}. "
                "Check DOCEXTRACT_MODEL__ATTN_IMPLEMENTATION, DTYPE and "
                "QUANTIZATION."
            ) from error

    def image_tokens(self, width: int, height: int) -> int:
        return anyres_image_tokens(width, height, self.geometry)

    @property
    def vocab_size(self) -> int:
        """Width of the logits (the padded vocabulary), which grammar masks must match."""
        config = self.model.config
        return getattr(config, "text_config", config).vocab_size

    def generate(
        self, requests: Sequence[VisionRequest], *, timeout_s: float | None = None
    ) -> list[VisionOutput]:
        """One output per request, in order (greedy). Raises ModelError when the batch fails;
        an out-of-memory error is `retryable` (a smaller batch may pass). Generation stops at
        `timeout_s` (rows cut there end with stop reason "length"). Thread-safe: calls from
        several threads run one after the other."""
        if not requests:
            return []
        return self.generate_prepared(self.prepare(requests), timeout_s=timeout_s)

    def prepare(self, requests: Sequence[VisionRequest]) -> PreparedBatch:
        """Run the processor (CPU work: resize, tile, normalize, tokenize) for a batch, apart
        from the device, so that it can overlap with the previous batch's generation."""
        self.load()
        try:
            return PreparedBatch(list(requests), self.encode(requests, to_device=False))
        except (RuntimeError, ValueError) as error:
            raise ModelError(f"the processor of {self.model_id!r} failed: {error}") from error

    def generate_prepared(
        self, batch: PreparedBatch, *, timeout_s: float | None = None
    ) -> list[VisionOutput]:
        """Generate for a batch from `prepare()`. See `generate`."""
        with self._generate_lock:
            return self._generate(batch, timeout_s)

    def _generate(self, batch: PreparedBatch, timeout_s: float | None) -> list[VisionOutput]:
        import torch
        from transformers import LogitsProcessorList, MaxTimeCriteria, StoppingCriteriaList

        requests = batch.requests
        caps = [min(r.max_new_tokens, self.settings.max_new_tokens) for r in requests]
        eos, pad = self.special_token_ids()
        grammar = JsonSchemaLogitsProcessor(
            self.processor.tokenizer,
            [r.json_schema for r in requests],
            vocab_size=self.vocab_size,
            eos_token_ids=eos,
            pad_token_id=pad,
            max_new_tokens=caps,
        )
        recorder = _LogprobRecorder()
        stopping: list[Any] = [_RowBudget(batch.inputs["input_ids"].shape[1], caps)]
        if timeout_s is not None:
            stopping.append(MaxTimeCriteria(max_time=timeout_s))
        try:
            inputs = batch.inputs.to(self.device, dtype=self.model.dtype)
            prompt_length = inputs["input_ids"].shape[1]
            start = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs,
                    do_sample=False,
                    max_new_tokens=max(caps),
                    logits_processor=LogitsProcessorList([grammar, recorder]),
                    stopping_criteria=StoppingCriteriaList(stopping),
                    eos_token_id=eos,
                    pad_token_id=pad,
                    return_dict_in_generate=True,
                    **({"cache_implementation": "static"} if self.settings.static_cache else {}),
                )
        except torch.OutOfMemoryError as error:
            torch.cuda.empty_cache()  # so that a retry with a smaller batch finds the memory
            raise ModelError(
                f"Out of memory generating a batch of {len(requests)} on "
                f"{self.device}; lower DOCEXTRACT_MODEL__BATCH_SIZE.",
                retryable=True,
            ) from error
        except (RuntimeError, ValueError) as error:
            raise ModelError(
                f"{self.model_id!r} failed on a batch of {len(requests)}: {error}",
                retryable="out of memory" in str(error),
            ) from error
        seconds = (time.perf_counter() - start) / len(requests)  # each row's share
        new_tokens = out.sequences[:, prompt_length:]
        logprobs = recorder.finish(new_tokens).tolist()
        new_tokens = new_tokens.tolist()
        return [
            self._output(inputs, row, new_tokens[row][: caps[row]], logprobs[row], eos, seconds)
            for row in range(len(requests))
        ]

    def _prompt_text(self, request: VisionRequest) -> str:
        content: list[dict[str, str]] = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": request.prompt})
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
        # A processor without a template: image placeholders, then the prompt.
        return "".join(f"{self.processor.image_token}\n" for _ in request.images) + request.prompt

    def encode(self, requests: Sequence[VisionRequest], *, to_device: bool = True) -> Any:
        """The processor's batch (left-padded ids, pixel values, image sizes), on the device
        unless `to_device` is False."""
        texts = [self._prompt_text(r) for r in requests]
        images = [image.convert("RGB") for r in requests for image in r.images]
        bos = self.processor.tokenizer.bos_token
        # Templates that write <s> themselves must not get a second one from the tokenizer.
        add_special = not (bos and all(t.startswith(bos) for t in texts))
        inputs = self.processor(
            images=images or None,
            text=texts,
            padding=True,
            add_special_tokens=add_special,
            return_tensors="pt",
        )
        return inputs.to(self.device, dtype=self.model.dtype) if to_device else inputs

    def special_token_ids(self) -> tuple[list[int], int]:
        """(EOS ids, pad id) from the generation config, else from the tokenizer."""
        generation = self.model.generation_config
        eos = generation.eos_token_id
        if eos is None:
            eos = self.processor.tokenizer.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos)
        pad = generation.pad_token_id
        if pad is None:
            pad = self.processor.tokenizer.pad_token_id
        return eos_ids, pad if pad is not None else eos_ids[0]

    def _output(
        self,
        inputs: Any,
        row: int,
        tokens: list[int],
        logprobs: list[float],
        eos: list[int],
        seconds: float,
    ) -> VisionOutput:
        end = next((i for i, token in enumerate(tokens) if token in eos), None)
        stop: StopReason = "length" if end is None else "end"
        text_tokens = tokens if end is None else tokens[:end]
        tokenizer = self.processor.tokenizer
        image_id = getattr(self.processor, "image_token_id", None)
        return VisionOutput(
            text=tokenizer.decode(text_tokens, skip_special_tokens=True),
            stop_reason=stop,
            input_tokens=int(inputs["attention_mask"][row].sum()),
            output_tokens=len(tokens) if end is None else end + 1,  # EOS costs a step too
            image_tokens=int((inputs["input_ids"][row] == image_id).sum()) if image_id else 0,
            seconds=seconds,
            tokens=tuple(
                TokenLogprob(tokenizer.decode([t]), lp)
                for t, lp in zip(text_tokens, logprobs, strict=False)
            ),
        )


@dataclass
class PreparedBatch:
    """A batch after the processor, before the device: what `generate_prepared` takes."""

    requests: list[VisionRequest]
    inputs: Any


class _RowBudget:
    """Stopping criterion (duck-typed, as `_LogprobRecorder` is a logits processor): ends each
    row at its own token cap; `generate()` pads it while the others go on."""

    def __init__(self, prompt_length: int, caps: Sequence[int]) -> None:
        import torch

        self.prompt_length = prompt_length
        self.caps = torch.tensor(caps)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_length
        return (generated >= self.caps).to(input_ids.device)


class _LogprobRecorder:
    """Logits processor placed last: log-probability of each chosen token, under the final
    (grammar-masked, renormalised) distribution, as vLLM reports it with structured outputs.

    Keeps one (batch,) vector per step instead of `output_scores`' (batch, vocab) per step,
    which would cost gigabytes at batch 32 x 768 steps x 32k vocab.
    """

    def __init__(self) -> None:
        self._chosen: list[torch.Tensor] = []
        self._last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._last is not None:  # input_ids now ends with the token chosen from _last
            self._chosen.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
        import torch

        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(batch, steps) float32 on CPU, aligned with the generated tokens."""
        steps = new_tokens.shape[1]
        chosen = self._chosen[:steps]
        if len(chosen) < steps and self._last is not None:  # the last token saw no next call
            last = new_tokens[:, len(chosen) : len(chosen) + 1]
            chosen.append(self._last.gather(1, last).squeeze(1))
        import torch

        if not chosen:
            return torch.zeros(new_tokens.shape, dtype=torch.float32)
        return torch.stack(chosen, dim=1).float().cpu()


def create(settings: Settings) -> TransformersVisionModel:
    """The `transformers` backend for `settings.model.name` (alias, folder, hub id), unloaded."""
    if settings.model.name == "tiny-random":
        return create_tiny(settings)
    return TransformersVisionModel(resolve_source(settings.model.name), settings.model)


def create_tiny(settings: Settings) -> TransformersVisionModel:
    """The `tiny` backend: this backend on the offline tiny-random folder, built on `load()`."""
    folder = tiny_model_dir(settings)
    return TransformersVisionModel(
        str(folder),
        settings.model,
        model_id=TINY_MODEL_ID,
        geometry=TINY_GEOMETRY,
        local_files_only=True,
        prepare=lambda: build_tiny_random(folder),
    )
