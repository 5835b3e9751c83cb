"""Numeric precision of the network: fp32, or autocast mixed precision (bf16, fp16), or "auto".

Autocast (Micikevicius et al. 2018, "Mixed precision training") runs convolutions and matrix
products in a 16-bit type while the weights, the optimizer state, the normalisations and the
diffusion maths stay in float32 (float64 for the schedule and the samplers).

``auto`` picks bf16 where the device computes it natively and fp32 elsewhere:
CUDA devices that support bf16, and CPUs with AMX tiles or AVX-512 BF16 instructions (Intel
Sapphire Rapids and later, AMD Zen 4 and later). Measured on a 2-core Sapphire Rapids CPU
(``benchmarks/cpu_profile.py``, 2026-11-27): the small MNIST U-Net trains 1.6-2.0x and samples
1.8-3.5x faster in bf16 than in fp32; on 2 cores of an AMD EPYC with AVX-512 BF16 and no AMX
(``benchmarks/train_throughput.py``, 2026-12-06) it trains 1.63-1.64x and samples 1.2-1.5x faster,
eager or compiled. A CPU without these instructions emulates bf16 and runs it many times
slower than fp32, which is why ``auto`` and never a fixed bf16 is the default of the presets.
"""

import torch
from torch import nn

from .errors import ConfigError

#: the 16-bit type of each precision (None: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"auto": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def native(precision: str, device: torch.device) -> bool:
    """Whether ``device`` computes ``precision`` ("bf16", "fp16") in hardware."""
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        if precision == "bf16":
            return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
        return torch.cpu._is_amx_fp16_supported()
    return False


def resolve_precision(precision: str, device) -> str:
    """``precision`` with ``auto`` replaced by bf16 where ``device`` has native bf16, else fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if native("bf16", torch.device(device)) else "fp32"


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved ``precision`` on ``device`` (disabled for fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


class Autocast(nn.Module):
    """A network called under autocast at ``precision``, its output returned in float32, so that
    the samplers' arithmetic stays in their own precision."""

    def __init__(self, model: nn.Module, precision: str):
        super().__init__()
        self.model, self.precision = model, precision
        self.train(model.training)  # the sampler restores the mode it finds: the network's own

    def forward(self, x, t, **kwargs):
        with autocast(self.precision, x.device):
            out = self.model(x, t, **kwargs)
        return out.float()
