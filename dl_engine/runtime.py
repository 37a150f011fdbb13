"""Where a run computes and in which precision: DEVICE (named by ``dl_engine.devices``) turned into
a torch device, with autocast and the CUDA settings. Training and inference both use it."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional

import torch

from .devices import parse_device
from .errors import InputError


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: Optional[torch.dtype]  # autocast dtype, None = fp32
    channels_last: bool
    description: str  # for the log: "cuda:0 (NVIDIA H200), bf16 autocast"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def needs_grad_scaler(self) -> bool:  # fp16 needs loss scaling; bf16 does not
        return self.amp_dtype == torch.float16 and self.is_cuda


def cpu_supports_bf16() -> bool:
    """bf16 autocast pays on the CPU only with native bf16 instructions (AVX512-BF16 / AMX);
    elsewhere it is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def choose_device(text: str = "auto", local_rank: Optional[int] = None) -> torch.device:
    request = parse_device(text)
    kind = request.kind
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank or 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise InputError("DEVICE", "'mps': Apple's GPU is not available to torch on this machine; use auto or cpu")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise InputError("DEVICE", f"{request.text!r}: no CUDA GPU is available to torch on this machine; "
                                   "use auto or cpu")
    index = local_rank if local_rank is not None else (request.index or 0)
    if index >= torch.cuda.device_count():
        raise InputError("DEVICE", f"{request.text!r}: this machine has {torch.cuda.device_count()} GPU(s) "
                                   f"(cuda:0…cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_runtime(device_text: str = "auto", precision: str = "auto", local_rank: Optional[int] = None) -> Runtime:
    device = choose_device(device_text, local_rank)
    precision = (precision or "auto").lower()
    if precision not in ("auto", "bf16", "fp16", "fp32"):
        raise InputError("precision", f"{precision!r}: accepted auto, bf16, fp16, fp32")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        bf16 = torch.cuda.is_bf16_supported()
        dtype = {"auto": torch.bfloat16 if bf16 else torch.float16, "bf16": torch.bfloat16,
                 "fp16": torch.float16, "fp32": None}[precision]
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
        return Runtime(device, dtype, True, f"{device} ({name}), {_name(dtype)}")
    if device.type == "mps":  # autocast on Apple's GPU only when asked for
        dtype = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
        return Runtime(device, dtype, False, f"mps (Apple GPU), {_name(dtype)}")
    dtype = {"auto": torch.bfloat16 if cpu_supports_bf16() else None, "bf16": torch.bfloat16,
             "fp16": None, "fp32": None}[precision]
    threads = torch.get_num_threads()
    return Runtime(device, dtype, False, f"cpu ({threads} threads, {os.cpu_count()} cores), {_name(dtype)}")


def _name(dtype) -> str:
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(dtype, "fp32")
