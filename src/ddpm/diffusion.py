"""The Gaussian diffusion process of DDPM, independent of any network.

:class:`GaussianDiffusion` holds a schedule and every quantity derived from it
(float64, computed once) and the options that define a model: the prediction
target, the reverse-process variance and the training loss. Methods that need
the network receive it as an argument, ``model(x_t, t, **model_kwargs)``, where
``t`` is the float index of the step in the original chain.

Notation follows Ho et al. (2020): alpha_t = 1 - beta_t, alpha-bar_t = prod alpha_s,
and the timestep index ``t`` runs 0..T-1 for the paper's 1..T.
"""

from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from .distributions import discretized_gaussian_log_likelihood, gaussian_log_likelihood, normal_kl
from .errors import ConfigError

Target = Literal["eps", "x0", "v"]
Variance = Literal["fixed_small", "fixed_large"]
LossType = Literal["l2", "l1", "huber"]


def _check(name: str, value, options) -> None:
    allowed = get_args(options)
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch dimensions."""
    return x.mean(dim=tuple(range(1, x.ndim)))


class GaussianDiffusion:
    """Forward process q, reverse process p_theta and the training objective of DDPM.

    Args:
        betas: beta_1..beta_T (any sequence; see :func:`ddpm.schedules.make_betas`).
        target: what the network predicts: ``eps`` (DDPM eq. 11), ``x0``, or ``v``
            (Salimans & Ho 2022, v = sqrt(alpha-bar) eps - sqrt(1 - alpha-bar) x0).
        variance: Sigma_theta of the reverse process (DDPM sec. 3.2): ``fixed_small``
            is the posterior variance beta-tilde_t (eq. 7), ``fixed_large`` is beta_t.
        loss: distance of L_simple (DDPM eq. 14) on the target: ``l2``, ``l1`` or ``huber``.
        min_snr_gamma: if set, weight each example's loss by the Min-SNR-gamma rule
            (Hang et al. 2023), expressed for the chosen target.
        timestep_map: original-chain index of each step, when this process is a
            respaced copy of a longer one (see :meth:`respaced`).
    """

    def __init__(
        self,
        betas,
        target: Target = "eps",
        variance: Variance = "fixed_small",
        loss: LossType = "l2",
        min_snr_gamma: float | None = None,
        timestep_map=None,
    ):
        _check("target", target, Target)
        _check("variance", variance, Variance)
        _check("loss", loss, LossType)
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ConfigError(f"min_snr_gamma must be positive, got {min_snr_gamma}: use e.g. 5.0, or leave it unset")
        self.target, self.variance, self.loss, self.min_snr_gamma = target, variance, loss, min_snr_gamma

        betas = np.asarray(betas, dtype=np.float64)
        self.num_timesteps = T = len(betas)
        self.timestep_map = np.arange(T) if timestep_map is None else np.asarray(timestep_map, dtype=np.int64)
        alphas = 1.0 - betas
        ab = np.cumprod(alphas)
        ab_prev = np.append(1.0, ab[:-1])
        # posterior q(x_{t-1} | x_t, x_0), DDPM eq. 6-7
        post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
        # log of beta-tilde is -inf at t=0: use its t=1 value there (improved-diffusion)
        post_logvar = np.log(np.append(post_var[1], post_var[1:])) if T > 1 else np.log(betas)
        large_logvar = np.log(np.append(post_var[1], betas[1:])) if T > 1 else np.log(betas)
        self._np = {
            "betas": betas,
            "alphas_cumprod": ab,
            "alphas_cumprod_prev": ab_prev,
            "sqrt_alphas_cumprod": np.sqrt(ab),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ab),
            "log_one_minus_alphas_cumprod": np.log(1.0 - ab),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ab),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ab - 1.0),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": post_logvar,
            "posterior_mean_coef1": betas * np.sqrt(ab_prev) / (1.0 - ab),
            "posterior_mean_coef2": (1.0 - ab_prev) * np.sqrt(alphas) / (1.0 - ab),
            "model_variance": post_var if variance == "fixed_small" else betas,
            "model_log_variance": post_logvar if variance == "fixed_small" else large_logvar,
            "snr": ab / (1.0 - ab),
        }
        self._cache: dict[torch.device, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ helpers
    def __getattr__(self, name):
        # schedule arrays as float64 NumPy arrays, e.g. process.alphas_cumprod
        arrays = self.__dict__.get("_np", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    def _extract(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Schedule constant ``name`` at steps ``t``, shaped to broadcast against ``like``
        and cast to its dtype: the one place constants meet a batch."""
        out = self._table(t.device)[name][t]
        return out.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def _table(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The schedule arrays as tensors on ``device`` (float64; float32 on MPS), made once."""
        table = self._cache.get(device)
        if table is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            table = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in self._np.items()}
            table["timestep_map"] = torch.as_tensor(self.timestep_map, device=device)
            self._cache[device] = table
        return table

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Float index in the original chain of steps ``t`` (what the network sees)."""
        return self._table(t.device)["timestep_map"][t].float()

    def sample_timesteps(self, n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """t ~ Uniform{0..T-1}, one per example (DDPM Algorithm 1)."""
        return torch.randint(0, self.num_timesteps, (n,), generator=generator, device="cpu").to(device)

    # ------------------------------------------------------------ forward process
    def q_mean_variance(self, x_start, t):
        """Mean, variance and log-variance of q(x_t | x_0) (DDPM eq. 4)."""
        mean = self._extract("sqrt_alphas_cumprod", t, x_start) * x_start
        var = (1.0 - self._extract("alphas_cumprod", t, x_start)).expand_as(x_start)
        logvar = self._extract("log_one_minus_alphas_cumprod", t, x_start).expand_as(x_start)
        return mean, var, logvar

    def q_sample(self, x_start, t, noise):
        """Draw x_t ~ q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I) (DDPM eq. 4)."""
        return (
            self._extract("sqrt_alphas_cumprod", t, x_start) * x_start
            + self._extract("sqrt_one_minus_alphas_cumprod", t, x_start) * noise
        )

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7)."""
        mean = (
            self._extract("posterior_mean_coef1", t, x_t) * x_start
            + self._extract("posterior_mean_coef2", t, x_t) * x_t
        )
        var = self._extract("posterior_variance", t, x_t).expand_as(x_t)
        logvar = self._extract("posterior_log_variance_clipped", t, x_t).expand_as(x_t)
        return mean, var, logvar

    # ------------------------------------------------------ target conversions
    def predict_start_from_noise(self, x_t, t, eps):
        """x_0 = (x_t - sqrt(1 - alpha-bar) eps) / sqrt(alpha-bar), inverting eq. 4."""
        return (
            self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t
            - self._extract("sqrt_recipm1_alphas_cumprod", t, x_t) * eps
        )

    def predict_noise_from_start(self, x_t, t, x_start):
        """eps = (x_t - sqrt(alpha-bar) x_0) / sqrt(1 - alpha-bar), inverting eq. 4."""
        return (self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t - x_start) / self._extract(
            "sqrt_recipm1_alphas_cumprod", t, x_t
        )

    def predict_start_from_v(self, x_t, t, v):
        """x_0 = sqrt(alpha-bar) x_t - sqrt(1 - alpha-bar) v (Salimans & Ho 2022, sec. 4)."""
        return self._extract("sqrt_alphas_cumprod", t, x_t) * x_t - self._extract(
            "sqrt_one_minus_alphas_cumprod", t, x_t
        ) * v

    def get_v(self, x_start, noise, t):
        """v = sqrt(alpha-bar) eps - sqrt(1 - alpha-bar) x_0 (Salimans & Ho 2022, eq. 8 area)."""
        return self._extract("sqrt_alphas_cumprod", t, x_start) * noise - self._extract(
            "sqrt_one_minus_alphas_cumprod", t, x_start
        ) * x_start

    def training_target(self, x_start, noise, t):
        """What the network is trained to output for this process's ``target``."""
        if self.target == "eps":
            return noise
        if self.target == "x0":
            return x_start
        return self.get_v(x_start, noise, t)

    # ------------------------------------------------------------ reverse process
    def model_predictions(self, model, x_t, t, clip_denoised: bool = False, model_kwargs=None):
        """Run the network once and return (eps, x0) predictions, whatever the target.

        With ``clip_denoised`` the predicted x_0 is clipped to [-1, 1] and eps is
        re-derived from it, so both stay consistent (as in DDIM and improved-diffusion).
        """
        out = model(x_t.float(), self.model_timesteps(t), **(model_kwargs or {})).to(x_t.dtype)
        if self.target == "eps":
            eps, x0 = out, self.predict_start_from_noise(x_t, t, out)
        elif self.target == "x0":
            x0 = out
            eps = self.predict_noise_from_start(x_t, t, x0)
        else:
            x0 = self.predict_start_from_v(x_t, t, out)
            eps = self.predict_noise_from_start(x_t, t, x0)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
            eps = self.predict_noise_from_start(x_t, t, x0)
        return eps, x0

    def p_mean_variance(self, model, x_t, t, clip_denoised: bool = False, model_kwargs=None):
        """Mean, variance, log-variance of p_theta(x_{t-1} | x_t) and the predicted x_0.

        The mean is the posterior mean of eq. 7 at the predicted x_0, which for an eps
        network equals DDPM eq. 11: (x_t - beta_t / sqrt(1 - alpha-bar_t) eps) / sqrt(alpha_t).
        """
        eps, x0 = self.model_predictions(model, x_t, t, clip_denoised, model_kwargs)
        mean, _, _ = self.q_posterior_mean_variance(x0, x_t, t)
        var = self._extract("model_variance", t, x_t).expand_as(x_t)
        logvar = self._extract("model_log_variance", t, x_t).expand_as(x_t)
        return {"mean": mean, "variance": var, "log_variance": logvar, "pred_xstart": x0, "pred_eps": eps}

    # -------------------------------------------------------------- objectives
    def loss_weight(self, t, like):
        """Min-SNR-gamma weight per example, for the chosen target (Hang et al. 2023, eq. 10)."""
        snr = self._extract("snr", t, like).reshape(-1)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.target == "eps":
            return clipped / snr
        if self.target == "x0":
            return clipped
        return clipped / (snr + 1.0)

    def training_losses(self, model, x_start, t, noise=None, model_kwargs=None):
        """L_simple (DDPM eq. 14) on the chosen target, one value per example.

        Returns a dict with ``loss`` (B,), the weighted per-example objective to average.
        """
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        out = model(x_t, self.model_timesteps(t), **(model_kwargs or {}))
        out, target = out.float(), self.training_target(x_start, noise, t).float()
        if self.loss == "l2":
            loss = mean_flat((out - target) ** 2)
        elif self.loss == "l1":
            loss = mean_flat((out - target).abs())
        else:
            loss = mean_flat(F.smooth_l1_loss(out, target, reduction="none"))
        if self.min_snr_gamma is not None:
            loss = loss * self.loss_weight(t, x_start).float()
        return {"loss": loss}

    # ------------------------------------------------------- variational bound
    def vb_terms_bpd(self, model, x_start, x_t, t, discrete: bool = True, clip_denoised: bool = False, model_kwargs=None):
        """One term of the variational bound (DDPM eq. 5), in bits per dimension.

        For t > 0: L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)).
        For t = 0: L_0 = -log p_theta(x_0 | x_1), the discretized Gaussian decoder of
        eq. 13 for 8-bit data in [-1, 1] (``discrete``), or a Gaussian density otherwise.
        """
        true_mean, _, true_logvar = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised, model_kwargs)
        kl = mean_flat(normal_kl(true_mean, true_logvar, out["mean"], out["log_variance"])) / np.log(2.0)
        if discrete:
            nll = -discretized_gaussian_log_likelihood(x_start, out["mean"], 0.5 * out["log_variance"])
        else:
            nll = -gaussian_log_likelihood(x_start, out["mean"], out["log_variance"])
        nll = mean_flat(nll) / np.log(2.0)
        return {"output": torch.where(t == 0, nll, kl), "pred_xstart": out["pred_xstart"]}

    def prior_bpd(self, x_start):
        """L_T = KL(q(x_T | x_0) || N(0, I)) in bits per dimension (DDPM eq. 5)."""
        t = torch.full((x_start.shape[0],), self.num_timesteps - 1, device=x_start.device, dtype=torch.long)
        mean, _, logvar = self.q_mean_variance(x_start, t)
        return mean_flat(normal_kl(mean, logvar, torch.zeros_like(mean), torch.zeros_like(logvar))) / np.log(2.0)

    @torch.no_grad()
    def calc_bpd_loop(self, model, x_start, discrete: bool = True, generator=None, clip_denoised: bool = False, model_kwargs=None):
        """The whole bound L_0 + ... + L_{T-1} + L_T per example, in bits per dimension.

        Returns ``total_bpd`` (B,), ``prior_bpd`` (B,) and ``vb`` (B, T), the terms by step.
        """
        B, T = x_start.shape[0], self.num_timesteps
        vb = torch.zeros(B, T, dtype=torch.float64, device=x_start.device)
        for i in reversed(range(T)):
            t = torch.full((B,), i, device=x_start.device, dtype=torch.long)
            noise = torch.randn(x_start.shape, generator=generator, dtype=x_start.dtype).to(x_start.device)
            x_t = self.q_sample(x_start, t, noise)
            vb[:, i] = self.vb_terms_bpd(model, x_start, x_t, t, discrete, clip_denoised, model_kwargs)["output"].double()
        prior = self.prior_bpd(x_start).double()
        return {"total_bpd": vb.sum(dim=1) + prior, "prior_bpd": prior, "vb": vb}

    # ---------------------------------------------------------------- respacing
    def respaced(self, use_timesteps) -> "GaussianDiffusion":
        """A process over a subsequence of this one's steps (improved-diffusion respacing).

        New betas are re-derived so that alpha-bar at each kept step is unchanged:
        beta_i = 1 - alpha-bar_{t_i} / alpha-bar_{t_{i-1}} (Nichol & Dhariwal 2021, sec. 4).
        """
        steps = np.array(sorted(set(int(s) for s in use_timesteps)))
        if len(steps) == 0 or steps[0] < 0 or steps[-1] >= self.num_timesteps:
            raise ConfigError(f"timesteps must lie in 0..{self.num_timesteps - 1}")
        ab = self.alphas_cumprod[steps]
        new_betas = 1.0 - ab / np.append(1.0, ab[:-1])
        return GaussianDiffusion(
            new_betas, self.target, self.variance, self.loss, self.min_snr_gamma, self.timestep_map[steps]
        )


def spaced_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """``steps`` indices of 0..T-1, evenly spaced, always holding T-1 (the noisiest) and 0."""
    if not 1 <= steps <= num_timesteps:
        raise ConfigError(f"number of sampling steps must lie in 1..{num_timesteps}, got {steps}")
    if steps == 1:
        return np.array([num_timesteps - 1])
    return np.unique(np.round(np.linspace(0, num_timesteps - 1, steps)).astype(np.int64))
