"""Model FLOPs and the device's matrix-product ceiling, for utilisation figures (MFU).

FLOPs are counted by ``torch.utils.flop_counter`` (a multiply-add counts 2; convolutions, matrix
products and attention, not the elementwise work), for one forward pass, or one forward and
backward pass, at a given batch. The ceiling is measured, not read off a data sheet: a square
matrix product in the given dtype on the device (the cores' or the GPU's clock is not known here).
"""

import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def model_flops(model: torch.nn.Module, shape: tuple, batch: int, backward: bool, device="cpu") -> int:
    """FLOPs of one call of ``model`` on (batch, *shape) at a mid-chain timestep, with its backward if asked."""
    x = torch.randn(batch, *shape, device=device)
    t = torch.full((batch,), 500.0, device=device)
    with FlopCounterMode(display=False) as counter:
        if backward:
            model(x, t).square().mean().backward()
        else:
            with torch.no_grad():
                model(x, t)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def gemm_ceiling(dtype: torch.dtype, size: int, device="cpu", repeats: int = 5) -> float:
    """FLOP/s of a size x size x size matrix product in ``dtype`` on ``device`` (best of ``repeats``)."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        if a.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if a.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
