"""The machine a benchmark ran on, recorded with its figures."""

import datetime
import os
import platform

import torch


def machine_info(device: str | torch.device = "cpu") -> dict:
    device = torch.device(device)
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
