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
Variance = Literal["fixed_small", "fixed_large", "learned_range"]
LossType = Literal["l2", "l1", "huber", "vlb"]


def _check(name: str, value, options) -> None:
    allowed = get_args(options)
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")


def model_dtype(model) -> torch.dtype | None:
    """The floating dtype a network computes in (None for a plain function)."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        return torch.float32 if param is None else param.dtype
    return getattr(model, "dtype", None)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch dimensions."""
    return x.mean(dim=tuple(range(1, x.ndim)))


#: the schedule arrays every process exposes, float64 NumPy, read-only
SCHEDULE_ARRAYS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "log_betas",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "model_variance", "model_log_variance", "snr", "log_sigmas",
)


class GaussianDiffusion:
    """Forward process q, reverse process p_theta and the training objective of DDPM.

    Args:
        betas: beta_1..beta_T (any sequence; see :func:`ddpm.schedules.make_betas`).
        target: what the network predicts: ``eps`` (DDPM eq. 11), ``x0``, or ``v``
            (Salimans & Ho 2022, v = sqrt(alpha-bar) eps - sqrt(1 - alpha-bar) x0).
        variance: Sigma_theta of the reverse process: ``fixed_small`` is the posterior
            variance beta-tilde_t (DDPM eq. 7), ``fixed_large`` is beta_t (DDPM sec. 3.2),
            ``learned_range`` is learned between the two (Nichol & Dhariwal 2021, eq. 15):
            the network outputs twice the data's channels, the second half v in [-1, 1].
        loss: ``l2``, ``l1`` or ``huber`` distance of L_simple (DDPM eq. 14) on the target,
            plus ``vlb_weight`` times L_vlb when the variance is learned (L_hybrid, iDDPM
            eq. 16); or ``vlb``, the variational bound alone (iDDPM sec. 3.3).
        min_snr_gamma: if set, weight each example's L_simple by the Min-SNR-gamma rule
            (Hang et al. 2023), expressed for the chosen target.
        vlb_weight: lambda of L_hybrid = L_simple + lambda L_vlb (iDDPM: 0.001).
        timestep_map: original-chain index of each step, when this process is a
            respaced copy of a longer one (see :meth:`respaced`).

    The schedule is exposed as read-only float64 arrays (``process.alphas_cumprod``, ...:
    :data:`SCHEDULE_ARRAYS`) and meets a batch through :meth:`extract`.
    """

    def __init__(
        self,
        betas,
        target: Target = "eps",
        variance: Variance = "fixed_small",
        loss: LossType = "l2",
        min_snr_gamma: float | None = None,
        timestep_map=None,
        vlb_weight: float = 0.001,
    ):
        _check("target", target, Target)
        _check("variance", variance, Variance)
        _check("loss", loss, LossType)
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ConfigError(f"min_snr_gamma must be positive, got {min_snr_gamma}: use e.g. 5.0, or leave it unset")
        if not vlb_weight >= 0:
            raise ConfigError(f"vlb_weight must be >= 0, got {vlb_weight}: iDDPM uses 0.001")
        self.target, self.variance, self.loss, self.min_snr_gamma = target, variance, loss, min_snr_gamma
        self.vlb_weight = float(vlb_weight)

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
        arrays = {
            "betas": betas,
            "alphas_cumprod": ab,
            "alphas_cumprod_prev": ab_prev,
            "sqrt_alphas_cumprod": np.sqrt(ab),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ab),
            "log_one_minus_alphas_cumprod": np.log(1.0 - ab),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ab),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ab - 1.0),
            "log_betas": np.log(betas),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": post_logvar,
            "posterior_mean_coef1": betas * np.sqrt(ab_prev) / (1.0 - ab),
            "posterior_mean_coef2": (1.0 - ab_prev) * np.sqrt(alphas) / (1.0 - ab),
            # fixed variances; a learned one interpolates log_betas and posterior_log_variance_clipped
            "model_variance": betas if variance == "fixed_large" else post_var,
            "model_log_variance": large_logvar if variance == "fixed_large" else post_logvar,
            "snr": ab / (1.0 - ab),
            # log of the variance-exploding noise level sigma_t = sqrt((1 - alpha-bar) / alpha-bar) (EDM)
            "log_sigmas": 0.5 * np.log((1.0 - ab) / ab),
        }
        for name in SCHEDULE_ARRAYS:
            arrays[name].setflags(write=False)
            setattr(self, name, arrays[name])
        self._cache: dict[torch.device, dict[str, torch.Tensor]] = {}

    @property
    def learned_variance(self) -> bool:
        """Whether the network also outputs the reverse-process variance (iDDPM eq. 15)."""
        return self.variance == "learned_range"

    @property
    def output_channels_factor(self) -> int:
        """Network outputs per data channel: 2 with a learned variance, else 1."""
        return 2 if self.learned_variance else 1

    # ------------------------------------------------------------------ helpers
    def extract(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Schedule array ``name`` at steps ``t`` (B,), shaped (B, 1, ...) to broadcast against
        ``like`` and cast to its dtype: the one place schedule constants meet a batch."""
        out = self._table(t.device)[name][t]
        return out.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def _table(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The schedule arrays as tensors on ``device`` (float64; float32 on MPS), made once."""
        table = self._cache.get(device)
        if table is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            table = {k: torch.tensor(getattr(self, k), dtype=dtype, device=device) for k in SCHEDULE_ARRAYS}
            table["timestep_map"] = torch.as_tensor(self.timestep_map, device=device)
            self._cache[device] = table
        return table

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Float index in the original chain of steps ``t`` (what the network sees)."""
        return self._table(t.device)["timestep_map"][t].float()

    # ------------------------------------------------- continuous time (samplers)
    def sigma_at(self, t) -> np.ndarray:
        """EDM's noise level sigma = sqrt((1 - alpha-bar) / alpha-bar) at step(s) ``t`` of this
        chain, fractional steps interpolated linearly in log sigma (as k-diffusion does)."""
        return np.exp(np.interp(np.asarray(t, dtype=np.float64), np.arange(self.num_timesteps), self.log_sigmas))

    @property
    def sigma_range(self) -> tuple[float, float]:
        """(sigma_min, sigma_max): the noise levels of the chain's first and last steps."""
        return float(np.exp(self.log_sigmas[0])), float(np.exp(self.log_sigmas[-1]))

    def t_at_sigma(self, sigma) -> np.ndarray:
        """The (fractional) step whose noise level is ``sigma``: the inverse of :meth:`sigma_at`,
        clamped to 0..T-1; a level of one of the chain's steps gives that step exactly."""
        t = np.interp(np.log(np.asarray(sigma, dtype=np.float64)), self.log_sigmas, np.arange(self.num_timesteps))
        return np.where(np.abs(t - np.rint(t)) < 1e-6, np.rint(t), t)

    def steps_at_sigmas(self, sigmas) -> np.ndarray:
        """The steps of noise levels ``sigmas``, which must be steps of this chain (integers)."""
        t = self.t_at_sigma(sigmas)
        if not np.all(t == np.rint(t)):
            raise ConfigError("this sampler runs on the chain's own steps: use a linspace, leading or trailing spacing")
        return t.astype(np.int64)

    def predict_at(self, model, x_t, sigma: float, clip_denoised: bool = False, model_kwargs=None):
        """(eps, x0) predicted by the network for the whole batch at EDM noise level ``sigma``, where
        x_t = alpha (x_0 + sigma eps) with alpha = 1 / sqrt(1 + sigma^2). The network sees the
        step of that level, interpolated between the steps it was trained on (an exact step when
        sigma is one) and clamped to the chain (EDM's churn can raise sigma above the last step)."""
        t = float(self.t_at_sigma(sigma))
        t_model = float(np.interp(t, np.arange(self.num_timesteps), self.timestep_map))
        t_model = torch.full((x_t.shape[0],), t_model, device=x_t.device)
        out, _ = self.split_output(self.model_output(model, x_t, t_model, model_kwargs))
        alpha = 1.0 / np.sqrt(1.0 + sigma * sigma)
        return self.predictions_from_output(out, x_t, alpha, alpha * sigma, clip_denoised)

    # ------------------------------------------------------------ forward process
    def q_mean_variance(self, x_start, t):
        """Mean, variance and log-variance of q(x_t | x_0) (DDPM eq. 4)."""
        mean = self.extract("sqrt_alphas_cumprod", t, x_start) * x_start
        var = (1.0 - self.extract("alphas_cumprod", t, x_start)).expand_as(x_start)
        logvar = self.extract("log_one_minus_alphas_cumprod", t, x_start).expand_as(x_start)
        return mean, var, logvar

    def q_sample(self, x_start, t, noise):
        """Draw x_t ~ q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I) (DDPM eq. 4)."""
        return (
            self.extract("sqrt_alphas_cumprod", t, x_start) * x_start
            + self.extract("sqrt_one_minus_alphas_cumprod", t, x_start) * noise
        )

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7)."""
        mean = (
            self.extract("posterior_mean_coef1", t, x_t) * x_start
            + self.extract("posterior_mean_coef2", t, x_t) * x_t
        )
        var = self.extract("posterior_variance", t, x_t).expand_as(x_t)
        logvar = self.extract("posterior_log_variance_clipped", t, x_t).expand_as(x_t)
        return mean, var, logvar

    # ------------------------------------------------------ target conversions
    def predict_start_from_noise(self, x_t, t, eps):
        """x_0 = (x_t - sqrt(1 - alpha-bar) eps) / sqrt(alpha-bar), inverting eq. 4."""
        return (
            self.extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t
            - self.extract("sqrt_recipm1_alphas_cumprod", t, x_t) * eps
        )

    def predict_noise_from_start(self, x_t, t, x_start):
        """eps = (x_t - sqrt(alpha-bar) x_0) / sqrt(1 - alpha-bar), inverting eq. 4."""
        return (self.extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t - x_start) / self.extract(
            "sqrt_recipm1_alphas_cumprod", t, x_t
        )

    def predict_start_from_v(self, x_t, t, v):
        """x_0 = sqrt(alpha-bar) x_t - sqrt(1 - alpha-bar) v (Salimans & Ho 2022, sec. 4)."""
        return self.extract("sqrt_alphas_cumprod", t, x_t) * x_t - self.extract(
            "sqrt_one_minus_alphas_cumprod", t, x_t
        ) * v

    def get_v(self, x_start, noise, t):
        """v = sqrt(alpha-bar) eps - sqrt(1 - alpha-bar) x_0 (Salimans & Ho 2022, eq. 8 area)."""
        return self.extract("sqrt_alphas_cumprod", t, x_start) * noise - self.extract(
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
    def scales(self, t, like):
        """(sqrt(alpha-bar_t), sqrt(1 - alpha-bar_t)) at steps ``t``: x_t = alpha x_0 + sigma eps (eq. 4)."""
        return self.extract("sqrt_alphas_cumprod", t, like), self.extract("sqrt_one_minus_alphas_cumprod", t, like)

    def model_output(self, model, x_t, t_model, model_kwargs=None) -> torch.Tensor:
        """The raw network output at original-chain steps ``t_model`` (float), in x_t's dtype
        (the network runs in its own: float32 for a module, x_t's for a plain function)."""
        dtype = model_dtype(model) or x_t.dtype
        return model(x_t.to(dtype), t_model, **(model_kwargs or {})).to(x_t.dtype)

    def split_output(self, out: torch.Tensor):
        """(target prediction, variance output v or None): a learned-variance network's
        outputs are the target's channels followed by v's (iDDPM sec. 3.1)."""
        if not self.learned_variance:
            return out, None
        if out.shape[1] % 2:
            raise ConfigError(f"a learned-variance process needs a network with twice the data's channels, got "
                              f"{out.shape[1]}: build the model with diffusion.variance=learned_range")
        pred, v = out.chunk(2, dim=1)
        return pred, v

    def predictions_from_output(self, out, x_t, alpha, sigma, clip_denoised: bool | float = False):
        """(eps, x0) from the network's target prediction ``out`` at x_t = alpha x0 + sigma eps.

        eps: x0 = (x_t - sigma eps) / alpha (inverting DDPM eq. 4); v: x0 = alpha x_t - sigma v
        (Salimans & Ho 2022, sec. 4). ``clip_denoised``: True clips x0 to [-1, 1]; a number p in
        (0, 1) is dynamic thresholding (Saharia et al. 2022, sec. 2.3): per sample s = the
        p-quantile of |x0|, at least 1, and x0 = clip(x0, -s, s) / s. Either way eps is
        re-derived from the clipped x0, so both stay consistent (as in DDIM and improved-diffusion).
        """
        if self.target == "eps":
            eps, x0 = out, (x_t - sigma * out) / alpha
        elif self.target == "x0":
            x0 = out
            eps = (x_t - alpha * x0) / sigma
        else:
            x0 = alpha * x_t - sigma * out
            eps = (x_t - alpha * x0) / sigma
        if clip_denoised is True:
            x0 = x0.clamp(-1.0, 1.0)
        elif clip_denoised:
            s = torch.quantile(x0.abs().flatten(1), float(clip_denoised), dim=1).clamp(min=1.0)
            s = s.reshape(-1, *([1] * (x0.ndim - 1)))
            x0 = torch.maximum(torch.minimum(x0, s), -s) / s
        if clip_denoised:
            eps = (x_t - alpha * x0) / sigma
        return eps, x0

    def model_predictions(self, model, x_t, t, clip_denoised: bool = False, model_kwargs=None):
        """Run the network once at steps ``t`` (B,) and return (eps, x0), whatever the target."""
        out, _ = self.split_output(self.model_output(model, x_t, self.model_timesteps(t), model_kwargs))
        alpha, sigma = self.scales(t, x_t)
        return self.predictions_from_output(out, x_t, alpha, sigma, clip_denoised)

    def p_mean_variance(self, model, x_t, t, clip_denoised: bool = False, model_kwargs=None, output=None):
        """Mean, variance, log-variance of p_theta(x_{t-1} | x_t) and the predicted x_0 and eps.

        The mean is the posterior mean of eq. 7 at the predicted x_0, which for an eps
        network equals DDPM eq. 11: (x_t - beta_t / sqrt(1 - alpha-bar_t) eps) / sqrt(alpha_t).
        The variance is fixed, or learned: log Sigma = v' log beta_t + (1 - v') log beta-tilde_t
        with v' = (v + 1) / 2 (iDDPM eq. 15). ``output``: a network output already computed.
        """
        if output is None:
            output = self.model_output(model, x_t, self.model_timesteps(t), model_kwargs)
        out, v = self.split_output(output)
        alpha, sigma = self.scales(t, x_t)
        eps, x0 = self.predictions_from_output(out, x_t, alpha, sigma, clip_denoised)
        mean, _, _ = self.q_posterior_mean_variance(x0, x_t, t)
        if v is None:
            logvar = self.extract("model_log_variance", t, x_t).expand_as(x_t)
        else:
            frac = (v + 1.0) / 2.0
            logvar = frac * self.extract("log_betas", t, x_t) + (1.0 - frac) * self.extract(
                "posterior_log_variance_clipped", t, x_t)
        return {"mean": mean, "variance": torch.exp(logvar), "log_variance": logvar, "pred_xstart": x0,
                "pred_eps": eps}

    # -------------------------------------------------------------- objectives
    def loss_weight(self, t, like):
        """Min-SNR-gamma weight per example, for the chosen target (Hang et al. 2023, eq. 10)."""
        snr = self.extract("snr", t, like).reshape(-1)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.target == "eps":
            return clipped / snr
        if self.target == "x0":
            return clipped
        return clipped / (snr + 1.0)

    def training_losses(self, model, x_start, t, noise=None, model_kwargs=None, discrete: bool = True):
        """The training objective at steps ``t``, one value per example.

        L_simple (DDPM eq. 14) on the chosen target; with a learned variance plus
        lambda * T * L_t, an unbiased estimate of lambda * L_vlb for uniform t, computed with
        the mean's output detached so that L_vlb trains the variance only (L_hybrid, iDDPM
        sec. 3.1; the bound in bits as improved-diffusion); for ``loss="vlb"``, T * L_t alone.
        ``discrete``: L_0 by the discretized decoder of 8-bit data (images), else a Gaussian
        density (vectors). Returns ``loss`` (B,), the objective to average, and ``vb`` (B,), L_t
        in bits per dimension (None without a learned variance or vlb loss).
        """
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        output = model(x_t, self.model_timesteps(t), **(model_kwargs or {}))
        out, v = self.split_output(output)
        if self.loss == "vlb":
            vb = self._vb_term(x_start.float(), x_t.float(), t, discrete, output.float())
            return {"loss": vb * self.num_timesteps, "vb": vb}
        vb = None
        if v is not None:
            frozen = torch.cat([out.detach(), v], dim=1)
            vb = self._vb_term(x_start.float(), x_t.float(), t, discrete, frozen.float())
        out, target = out.float(), self.training_target(x_start, noise, t).float()
        if self.loss == "l2":
            loss = mean_flat((out - target) ** 2)
        elif self.loss == "l1":
            loss = mean_flat((out - target).abs())
        else:
            loss = mean_flat(F.smooth_l1_loss(out, target, reduction="none"))
        if self.min_snr_gamma is not None:
            loss = loss * self.loss_weight(t, x_start).float()
        if vb is not None:
            loss = loss + self.vlb_weight * self.num_timesteps * vb
        return {"loss": loss, "vb": vb}

    # ------------------------------------------------------- variational bound
    def vb_terms_bpd(self, model, x_start, x_t, t, discrete: bool = True, clip_denoised: bool = False, model_kwargs=None):
        """One term of the variational bound (DDPM eq. 5), in bits per dimension.

        For t > 0: L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)).
        For t = 0: L_0 = -log p_theta(x_0 | x_1), the discretized Gaussian decoder of
        eq. 13 for 8-bit data in [-1, 1] (``discrete``), or a Gaussian density otherwise.
        """
        out = self.p_mean_variance(model, x_t, t, clip_denoised, model_kwargs)
        return {"output": self._vb_from(out, x_start, x_t, t, discrete), "pred_xstart": out["pred_xstart"]}

    def _vb_term(self, x_start, x_t, t, discrete, output):
        return self._vb_from(self.p_mean_variance(None, x_t, t, output=output), x_start, x_t, t, discrete)

    def _vb_from(self, out, x_start, x_t, t, discrete):
        true_mean, _, true_logvar = self.q_posterior_mean_variance(x_start, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_logvar, out["mean"], out["log_variance"])) / np.log(2.0)
        if discrete:
            nll = -discretized_gaussian_log_likelihood(x_start, out["mean"], 0.5 * out["log_variance"])
        else:
            nll = -gaussian_log_likelihood(x_start, out["mean"], out["log_variance"])
        nll = mean_flat(nll) / np.log(2.0)
        return torch.where(t == 0, nll, kl)

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
            new_betas, self.target, self.variance, self.loss, self.min_snr_gamma, self.timestep_map[steps],
            self.vlb_weight,
        )


Spacing = Literal["linspace", "leading", "trailing"]


def spaced_timesteps(num_timesteps: int, steps: int, spacing: Spacing = "linspace") -> np.ndarray:
    """``steps`` distinct steps of 0..T-1 to sample on, ascending, named as diffusers names them:

    - ``linspace``: evenly spaced from 0 to T-1, both included (round(linspace(0, T-1, S)));
    - ``leading``: 0, k, 2k, ..., (S-1)k with k = T // S (DDIM's and Stable Diffusion's; it never
      visits the noisiest steps, which costs quality at few steps);
    - ``trailing``: round(T - i T/S) - 1 for i = 0..S-1, holding T-1 (recommended at few steps by
      Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", table 2).
    """
    if not 1 <= steps <= num_timesteps:
        raise ConfigError(f"number of sampling steps must lie in 1..{num_timesteps}, got {steps}")
    _check("timestep spacing", spacing, Spacing)
    T = num_timesteps
    if spacing == "leading":
        ts = np.arange(steps) * (T // steps)
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / steps)).astype(np.int64)[:steps] - 1
    elif steps == 1:
        ts = np.array([T - 1])
    else:
        ts = np.round(np.linspace(0, T - 1, steps))
    return np.unique(ts.astype(np.int64))
