"""Choosing the device, the compute dtype and the memory format."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from .errors import InputError

log = logging.getLogger(__name__)


def check_device_name(name: object) -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, or an InputError (availability is
    checked by :func:`pick_device`).

    Example:
        >>> check_device_name("cuda:1")
        >>> check_device_name("meta")
        Traceback (most recent call last):
        ...
        warpaint.errors.InputError: unknown device 'meta'; use auto, cpu, cuda, cuda:N or mps
    """
    ok = isinstance(name, str) and (name in ("auto", "cpu", "cuda", "mps") or (
        name.startswith("cuda:") and name[5:].isdigit() and len(name) < 12))
    if not ok:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; any other name is used as given.

    Example:
        >>> pick_device("cpu")
        device(type='cpu')
    """
    check_device_name(name)
    if name != "auto":
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but no CUDA GPU is available")
        if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
            raise InputError(f"device {name!r} requested but only {torch.cuda.device_count()} "
                             "CUDA GPU(s) are present")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise InputError("device 'mps' requested but Apple MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """Autocast dtype for the VGG passes: ``"auto"``, ``"float32"`` or ``"bfloat16"``.

    ``auto`` is bf16 on CPUs with native bf16 support and float32 elsewhere (on CUDA float32
    already runs on TF32 tensor cores, see :func:`enable_fast_math`). On a CPU without native
    bf16 (AVX2 only) autocast to bf16 is over ten times slower, so it is never chosen there.
    """
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if name != "auto":
        raise InputError(f"dtype must be auto, float32 or bfloat16, got {name!r}")
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def enable_fast_math(device: torch.device) -> None:
    """Turn on the fast matmul modes of the GPU path (TF32 matmuls and convolutions)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def use_channels_last(device: torch.device, dtype: torch.dtype) -> bool:
    """Channels-last helps cuDNN and oneDNN's bf16 kernels; fp32 on an AVX2 CPU it does not."""
    return device.type == "cuda" or dtype == torch.bfloat16
