"""Where and how an in-process model loads: the torch device, the dtype, 4/8-bit quantization.

torch (and transformers, for bitsandbytes) are imported inside the functions: importing a
backend never costs their seconds of import time.
"""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_TYPES = ("cpu", "cuda")
PLAIN_DEVICE = re.compile(r"auto|(cpu|cuda)(:\d+)?")  # checked without importing torch


DEVICE_TYPES = ("cpu", "cuda")


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
    if device.type not in DEVICE_TYPES:
        raise ConfigError(
            f"Device {name!r} is not supported: use 'auto' or one of {', '.join(DEVICE_TYPES)}."
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
