"""The machine a benchmark ran on, recorded with its figures."""

import datetime
import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``platform.processor()`` says only x86_64)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str | torch.device = "cpu") -> dict:
    """Where a figure was measured: the CPU's model and whether it computes bf16 in hardware (AMX
    tiles, AVX-512 BF16), which decides what ``precision=auto`` picks and how fast it runs."""
    device = torch.device(device)
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_amx": torch.cpu._is_amx_tile_supported(), "cpu_avx512_bf16": torch.cpu._is_avx512_bf16_supported()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
