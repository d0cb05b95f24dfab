"""Vision-language model backends: the `VisionModel` protocol and one registry.

Built-in backends register exactly the way a third party would: a name and an import path
("module:factory"), so that importing `pipeline` never imports torch. A third-party package can
also expose a factory under the entry-point group `docextract.backends`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from pipeline.backends.base import VisionModel
from pipeline.backends.batching import BatchingModel
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.types import VisionOutput, VisionRequest

BackendFactory = Callable[[Settings], VisionModel]

_registry: dict[str, BackendFactory | str] = {}


def register_backend(name: str, factory: BackendFactory | str) -> None:
    """Register a backend under `name`; `factory` is a callable or a lazy "module:attr" path."""
    _registry[name] = factory


register_backend("transformers", "pipeline.backends.transformers:create")
register_backend("tiny", "pipeline.backends.transformers:create_tiny")
register_backend("scripted", "pipeline.backends.scripted:create")
register_backend("scripted-truth", "pipeline.backends.scripted_truth:create")
register_backend("openai", "pipeline.backends.openai:create")


def known_backends() -> list[str]:
    _load_entry_points()
    return sorted(_registry)


def _load_entry_points() -> None:
    for entry in entry_points(group="docextract.backends"):
        _registry.setdefault(entry.name, entry.value)


def _resolve(name: str) -> BackendFactory:
    _load_entry_points()
    try:
        factory = _registry[name]
    except KeyError:
        raise ConfigError(
            f"Unknown backend {name!r}. Known backends: {', '.join(known_backends())}."
        ) from None
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        _registry[name] = factory
    return factory


def backend_name_for(settings: Settings) -> str:
    """The registry name to use: the setting, or for 'auto' the one the other settings imply."""
    if settings.model.backend != "auto":
        return settings.model.backend
    if settings.model.base_url:
        return "openai"
    return "tiny" if settings.model.name == "tiny-random" else "transformers"


def create_model(settings: Settings) -> VisionModel:
    """Build (not load) the model the settings name. Raises ConfigError for unknown names."""
    return _resolve(backend_name_for(settings))(settings)


_loaded: dict[tuple[str, str, str], VisionModel] = {}
_loaded_lock = threading.Lock()


def get_model(settings: Settings) -> VisionModel:
    """The process-wide model for these settings: built once, reused by every task, behind a
    `BatchingModel` so that concurrent documents share batches.

    Weights load on the first `generate()` (or an explicit `load()`), so a run that finds all
    its work already done never pays for loading.
    """
    m = settings.model
    key = (backend_name_for(settings), m.model_dump_json(), str(settings.model_cache_dir))
    with _loaded_lock:
        if key not in _loaded:
            model = create_model(settings)
            if not getattr(model, "batches_itself", False):  # a server batches on its own
                model = BatchingModel(
                    model,
                    max_batch=m.batch_size,
                    max_image_tokens=m.max_batch_image_tokens,
                    max_wait_s=m.batch_wait_s,
                )
            _loaded[key] = model
        return _loaded[key]


def forget_loaded_models() -> None:
    """Drop cached models (tests, or to free memory between runs in one process)."""
    with _loaded_lock:
        _loaded.clear()


def run_in_batches(
    model: VisionModel, requests: Sequence[VisionRequest], batch_size: int
) -> list[VisionOutput]:
    """Split `requests` into batches of at most `batch_size` and keep the order of outputs."""
    outputs: list[VisionOutput] = []
    for start in range(0, len(requests), batch_size):
        outputs.extend(model.generate(requests[start : start + batch_size]))
    return outputs
