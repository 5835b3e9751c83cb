"""Which timesteps a training batch sees, and how much each example weighs: uniform (DDPM
Algorithm 1), importance-sampled by each step's share of the variational bound (Nichol & Dhariwal
2021, sec. 3.3), or EDM's log-normal distribution of noise levels with its loss weighting
(Karras et al. 2022)."""

import math

import torch
import torch.distributed as dist

from ..errors import ConfigError

TIMESTEP_SAMPLING = ("uniform", "importance", "edm")


class FixedTimesteps:
    """A distribution of t that training does not change: no history, nothing to checkpoint."""

    def update(self, t: torch.Tensor, losses: torch.Tensor, dist_info) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class UniformTimesteps(FixedTimesteps):
    """t ~ Uniform{0..T-1}, weight 1."""

    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps

    def sample(self, n: int, device, generator: torch.Generator):
        t = torch.randint(0, self.num_timesteps, (n,), generator=generator).to(device)
        return t, None


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


class EDMTimesteps(FixedTimesteps):
    """EDM's training noise levels and loss weighting (Karras et al. 2022, Table 1 and eq. 2) on
    the chain's steps.

    In EDM's terms step t holds x_t / sqrt(alpha-bar_t) = x_0 + sigma_t eps, with sigma_t =
    sqrt((1 - alpha-bar_t) / alpha-bar_t). EDM draws ln sigma ~ N(P_mean, P_std^2) (-1.2, 1.2) and
    weights the denoiser's squared error ||D - x_0||^2 by lambda(sigma) = (sigma^2 + sigma_data^2)
    / (sigma sigma_data)^2 (sigma_data = 0.5). Here t is drawn with the log-normal's mass over the
    stretch of ln sigma that step t covers (edges halfway between neighbouring steps, the tails to
    the first and last step), and each example's L_simple is weighted by lambda(sigma_t) times the
    squared error of x_0 per unit of the target's squared error (sigma^2 for eps, 1 for x0,
    sigma^2 / (1 + sigma^2) for v), so every target trains the same objective. One departure: the
    weight is taken at min(sigma_t, sigma_max = 80), the top of EDM's noise range, because a
    DDPM chain's last steps reach far beyond it (sigma ~ 157 for the linear schedule, ~10^4 for the
    cosine one), where the eps target's weight lambda sigma^2 would reach 10^8 on steps drawn once
    in millions. The weights are divided by their mean under the draw, so that the loss keeps
    L_simple's scale (Adam does not see the scale; gradient clipping does)."""

    P_MEAN, P_STD, SIGMA_DATA, SIGMA_MAX = -1.2, 1.2, 0.5, 80.0

    def __init__(self, process):
        if process.variance == "learned_range" or process.loss == "vlb" or process.min_snr_gamma is not None:
            raise ConfigError("train.timestep_sampling=edm weights L_simple by EDM's rule: leave diffusion.min_snr_gamma "
                              "unset and use a fixed diffusion.variance with an l2, l1 or huber diffusion.loss")
        log_sigma = torch.tensor(process.log_sigmas, dtype=torch.float64)
        inf = torch.tensor([math.inf], dtype=torch.float64)
        edges = torch.cat([-inf, (log_sigma[1:] + log_sigma[:-1]) / 2, inf])
        cdf = torch.special.ndtr((edges - self.P_MEAN) / self.P_STD)
        #: the probability of drawing each step
        self.p = cdf[1:] - cdf[:-1]
        sigma2 = (2 * log_sigma).exp().clamp(max=self.SIGMA_MAX**2)
        lam = (sigma2 + self.SIGMA_DATA**2) / (sigma2 * self.SIGMA_DATA**2)
        per_target = {"eps": sigma2, "x0": torch.ones_like(sigma2), "v": sigma2 / (1 + sigma2)}[process.target]
        w = lam * per_target
        #: each step's loss weight (mean 1 under :attr:`p`)
        self.weights = w / (self.p * w).sum()

    def sample(self, n: int, device, generator: torch.Generator):
        t = torch.multinomial(self.p, n, replacement=True, generator=generator)
        return t.to(device), self.weights[t].float().to(device)


def make_timestep_sampler(name: str, process):
    """The sampler ``train.timestep_sampling`` names, for ``process`` (a GaussianDiffusion)."""
    if name == "uniform":
        return UniformTimesteps(process.num_timesteps)
    if name == "importance":
        return ImportanceTimesteps(process.num_timesteps)
    if name == "edm":
        return EDMTimesteps(process)
    raise ConfigError(f"unknown train.timestep_sampling {name!r}: choose one of {', '.join(TIMESTEP_SAMPLING)}")
