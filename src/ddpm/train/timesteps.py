"""Which timesteps a training batch sees: uniform (DDPM Algorithm 1) or importance-sampled by
each step's share of the variational bound (Nichol & Dhariwal 2021, sec. 3.3)."""

import torch
import torch.distributed as dist

from ..errors import ConfigError

TIMESTEP_SAMPLING = ("uniform", "importance")


class UniformTimesteps:
    """t ~ Uniform{0..T-1}, weight 1."""

    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps

    def sample(self, n: int, device, generator: torch.Generator):
        t = torch.randint(0, self.num_timesteps, (n,), generator=generator).to(device)
        return t, None

    def update(self, t: torch.Tensor, losses: torch.Tensor, dist_info) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ImportanceTimesteps:
    """iDDPM sec. 3.3: p_t proportional to sqrt(E[L_t^2]), from the last ``history`` values of each
    step's loss, mixed with ``uniform_prob`` of the uniform distribution; uniform until every step
    has its ``history`` values. Each example is weighted 1 / (T p_t), so the weighted loss is an
    unbiased estimate of the bound (eq. 18), with far less variance than uniform t for L_vlb.
    Under DDP the ranks share every loss, so their histories (and draws' distribution) agree."""

    def __init__(self, num_timesteps: int, history: int = 10, uniform_prob: float = 0.001):
        self.num_timesteps, self.uniform_prob = num_timesteps, uniform_prob
        self.history = torch.zeros(num_timesteps, history, dtype=torch.float64)
        self.count = torch.zeros(num_timesteps, dtype=torch.long)

    def probabilities(self) -> torch.Tensor:
        T = self.num_timesteps
        if (self.count < self.history.shape[1]).any():
            return torch.full((T,), 1.0 / T, dtype=torch.float64)
        w = self.history.pow(2).mean(dim=1).sqrt()
        w = w / w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / T

    def sample(self, n: int, device, generator: torch.Generator):
        p = self.probabilities()
        t = torch.multinomial(p, n, replacement=True, generator=generator)
        weights = 1.0 / (self.num_timesteps * p[t])
        return t.to(device), weights.float().to(device)

    def update(self, t: torch.Tensor, losses: torch.Tensor, dist_info) -> None:
        t, losses = t.detach(), losses.detach().double()
        if dist_info.enabled:
            ts = [torch.empty_like(t) for _ in range(dist_info.world_size)]
            ls = [torch.empty_like(losses) for _ in range(dist_info.world_size)]
            dist.all_gather(ts, t)
            dist.all_gather(ls, losses)
            t, losses = torch.cat(ts), torch.cat(ls)
        k = self.history.shape[1]
        for step, loss in zip(t.cpu().tolist(), losses.cpu().tolist()):
            c = int(self.count[step])
            if c < k:
                self.history[step, c] = loss
            else:
                self.history[step, :-1] = self.history[step, 1:].clone()
                self.history[step, -1] = loss
            self.count[step] = c + 1

    def state_dict(self) -> dict:
        return {"timesteps.history": self.history.clone(), "timesteps.count": self.count.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.history.copy_(state["timesteps.history"])
        self.count.copy_(state["timesteps.count"])


def make_timestep_sampler(name: str, num_timesteps: int):
    if name == "uniform":
        return UniformTimesteps(num_timesteps)
    if name == "importance":
        return ImportanceTimesteps(num_timesteps)
    raise ConfigError(f"unknown train.timestep_sampling {name!r}: choose one of {', '.join(TIMESTEP_SAMPLING)}")
