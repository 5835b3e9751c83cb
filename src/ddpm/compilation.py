"""``torch.compile`` of the network, for training and for sampling.

Modes (``train.compile``, ``sample.compile``), as ``torch.compile`` names them:

* ``none``: eager PyTorch, one kernel launch per operation.
* ``default``: TorchInductor fuses the elementwise operations around the convolutions (Triton
  kernels on CUDA, C++/OpenMP on the CPU).
* ``reduce-overhead``: as ``default``, and on CUDA each static-shape call is recorded once as a
  CUDA graph and replayed with one launch (CUDA graph trees; forward and backward). This is
  for steps bound by kernel launches: on an H200 the small MNIST U-Net's training step ran 3.8x
  and the CIFAR-10 model's 1.9x as fast as eager (``benchmarks/train_throughput.py``, 2026-11-27).
* ``max-autotune``: as ``reduce-overhead``, and Inductor also benchmarks kernel choices for each
  matrix product and convolution (minutes of compilation).

Compilation changes no maths, only the order of floating-point operations, and keeps the module's
parameter names (checkpoints and exact resume are unaffected: the trainer saves the uncompiled
module). A new input shape (a smaller last batch) compiles once more.
"""

import torch
from torch import nn

from .errors import ConfigError

#: the modes of ``train.compile`` and ``sample.compile``
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


def uses_cuda_graphs(mode: str, device: torch.device) -> bool:
    """Whether ``mode`` records CUDA graphs on ``device`` (its outputs are then overwritten by the next replay)."""
    return device.type == "cuda" and mode in ("reduce-overhead", "max-autotune")


def compile_network(net: nn.Module, mode: str) -> nn.Module:
    """``net`` compiled in ``mode`` (one of :data:`COMPILE_MODES`; ``none`` returns ``net``)."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if mode == "none":
        return net
    return torch.compile(net, mode=None if mode == "default" else mode)


class Compiled(nn.Module):
    """A network compiled for sampling. Under CUDA graphs each output is copied out of the graph's
    memory before it is returned, because a multistep sampler keeps earlier outputs while the next
    replay overwrites them; each replay starts a new step of the graph tree."""

    def __init__(self, model: nn.Module, mode: str, device: torch.device):
        super().__init__()
        self.model, self.compiled = model, compile_network(model, mode)
        self.cuda_graphs = uses_cuda_graphs(mode, device)
        self.train(model.training)  # the sampler restores the mode it finds: the network's own

    def forward(self, x, t, **kwargs):
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
            return self.compiled(x, t, **kwargs).clone()
        return self.compiled(x, t, **kwargs)
