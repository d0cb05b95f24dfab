"""Where a transformers checkpoint comes from: an alias, a local folder or a hub id.

Checked before any work, without loading anything: a mistyped name must fail in a second with
the known aliases, not after minutes of download retries and a row per document.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.settings import MODEL_ALIASES

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TRUE = {"1", "on", "yes", "true"}


def resolve_source(name: str) -> str:
    """Alias -> hub id; an existing folder -> its absolute path; `org/name` -> a hub id.

    Raises ConfigError, listing the aliases, for a name that looks like a path (./, /, ~) but
    is no folder, and for a name that is none of the three (`tiny-randm`).
    """
    name = MODEL_ALIASES.get(name, name)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    choices = (
        f"Give an alias ({', '.join(MODEL_ALIASES)}), a checkpoint folder, or a Hugging Face "
        "hub id such as 'llava-hf/llava-v1.6-mistral-7b-hf'."
    )
    if name.startswith((".", "/", "~")) or path.exists():
        raise ConfigError(f"Model folder {name!r} does not exist (or is not a folder). {choices}")
    if not _HUB_ID.fullmatch(name):
        raise ConfigError(f"Unknown model {name!r}. {choices}")
    return name


def hub_offline() -> bool:
    """Whether the environment forbids hub downloads (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def check_available(source: str, revision: str | None, local_files_only: bool) -> None:
    """Raise ConfigError when `source` (a resolved source) is a hub id that cannot be loaded
    here: not in the local cache while downloads are off. A folder, or a hub id that may still
    be downloaded, passes (the load reports hub errors)."""
    if Path(source).is_dir():
        return
    offline = hub_offline()
    if not (offline or local_files_only):
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json", revision=revision), str):
        return
    why = "HF_HUB_OFFLINE=1" if offline else "DOCEXTRACT_MODEL__LOCAL_FILES_ONLY=true"
    raise ConfigError(
        f"Model {source!r} is not in the local Hugging Face cache and {why} forbids "
        f"downloading it: download it first (`hf download {source}`) where the hub is "
        f"reachable, or allow downloads. Known aliases: {', '.join(MODEL_ALIASES)}."
    )
