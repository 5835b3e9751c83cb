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
* ``auto``: the fastest mode measured that is safe where the run is (:func:`resolve_compile`):
  ``reduce-overhead`` on one CUDA device, ``default`` on the CPU when a trial compilation works
  there (Inductor's C++ backend needs a C++ compiler and Python's headers), else ``none``.

Compilation changes no maths, only the order of floating-point operations, and keeps the module's
parameter names (checkpoints and exact resume are unaffected: the trainer saves the uncompiled
module). A new input shape (a smaller last batch) compiles once more.
"""

import functools
import warnings

import torch
from torch import nn

from .errors import ConfigError

#: the modes of ``train.compile`` and ``sample.compile``
COMPILE_MODES = ("none", "auto", "default", "reduce-overhead", "max-autotune")


@functools.cache
def inductor_works_on_the_cpu() -> bool:
    """Whether ``torch.compile`` can build a C++ kernel here: one trial compilation (seconds, once
    per process). It fails without a C++ compiler or without Python's headers."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(torch.compile(lambda x: x * 2 + 1)(torch.ones(4)).eq(3).all())
    except Exception as e:  # noqa: BLE001 - any failure of the toolchain means: stay eager
        warnings.warn(f"compile=auto: torch.compile does not work on this CPU ({type(e).__name__}), so the network "
                      "runs eagerly; install a C++ compiler and Python's headers (e.g. g++ and python3-dev) for "
                      "about 1.4x faster training", stacklevel=2)
        return False


def resolve_compile(mode: str, device, trained: nn.Module | None = None, distributed: bool = False) -> str:
    """``mode`` with ``auto`` replaced by the mode a run on ``device`` compiles in; ``trained``: the
    network when its training is compiled, ``distributed``: whether several processes train.

    ``auto`` is ``reduce-overhead`` (CUDA graphs) on one CUDA device: 3.8x eager for the mnist
    preset's step on an H200 (``benchmarks/results/train_throughput_mnist_h200.json``). On the CPU
    it is ``default`` when :func:`inductor_works_on_the_cpu`: 1.36x the training and 1.49x the
    sampling throughput of eager bf16 on 2 cores (``train_throughput_mnist_cpu.json``). It is
    ``none`` for several processes (compilation under DDP is unmeasured), on other devices, and for
    training diffusers' U-Net on the CPU, whose up-sampling's gradient Inductor computes wrongly in
    PyTorch 2.13 (:class:`ddpm.nets.unet.Upsample`)."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if mode != "auto":
        return mode
    from .nets.diffusers_unet import DiffusersUNet

    device = torch.device(device)
    if distributed:
        return "none"
    if device.type == "cuda":
        return "reduce-overhead"
    if device.type == "cpu" and not isinstance(trained, DiffusersUNet) and inductor_works_on_the_cpu():
        return "default"
    return "none"


def uses_cuda_graphs(mode: str, device: torch.device) -> bool:
    """Whether ``mode`` records CUDA graphs on ``device`` (its outputs are then overwritten by the next replay)."""
    return device.type == "cuda" and mode in ("reduce-overhead", "max-autotune")


def compile_network(net: nn.Module, mode: str) -> nn.Module:
    """``net`` compiled in ``mode`` (one of :data:`COMPILE_MODES` but ``auto``, which
    :func:`resolve_compile` turns into one of them; ``none`` returns ``net``)."""
    if mode not in COMPILE_MODES or mode == "auto":
        raise ConfigError(f"compile mode {mode!r} is not one of {', '.join(m for m in COMPILE_MODES if m != 'auto')}")
    if mode == "none":
        return net
    # static shapes: a new input shape compiles anew rather than marking dimensions dynamic, which
    # Inductor's CPU backend cannot lower for the U-Net (PyTorch 2.13) and CUDA graphs cannot record
    return torch.compile(net, mode=None if mode == "default" else mode, dynamic=False)


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
