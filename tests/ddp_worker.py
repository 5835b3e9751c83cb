"""Run under torchrun by tests/test_distributed.py: trains the same model on every rank
uninterrupted, interrupted + resumed, and under a time budget, and saves each rank's weights for
comparison."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from ddpm.config import DataConfig, TrainConfig
from ddpm.data import load_dataset
from ddpm.diffusion import GaussianDiffusion
from ddpm.nets import MLP
from ddpm.schedules import make_betas
from ddpm.train.trainer import Trainer


def trainer(run_dir, **budget):
    torch.manual_seed(0)
    cfg = TrainConfig(**{"steps": 20, **budget}, batch_size=16, lr=1e-3, warmup=3, log_every=5, progress=False,
                      checkpoint_every=0)
    data = load_dataset(DataConfig(name="moons", n=301), seed=0)
    return Trainer(GaussianDiffusion(make_betas("linear", 50)), MLP(2, width=32, depth=2), data, cfg,
                   run_dir=run_dir, seed=0)


def main(out: Path):
    full = trainer(out / "full").run()
    rank = full.dist.rank
    trainer(out / "resumed").run(max_steps=8)
    dist.barrier()
    resumed = trainer(out / "resumed").resume()
    resumed.run()
    # a time budget: the ranks must agree on the step budget it becomes and on when to stop
    timed = trainer(out / "timed", steps=10**6, minutes=0.03).run()
    save_file({**{f"full.{k}": v for k, v in full.model.state_dict().items()},
               **{f"resumed.{k}": v for k, v in resumed.model.state_dict().items()},
               **{f"timed.{k}": v for k, v in timed.model.state_dict().items()},
               "timed_step": torch.tensor(timed.step), "timed_budget": torch.tensor(timed.step_budget),
               "shard": full.shard.clone(), "world": torch.tensor(full.dist.world_size)},
              str(out / f"rank{rank}.safetensors"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
