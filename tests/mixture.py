"""The exact optimal denoiser of a Gaussian mixture, for proving samplers without a network.

Data x_0 ~ sum_k w_k N(mu_k, s_k^2 I). Then x_t = alpha x_0 + sigma eps has the density
sum_k w_k N(alpha mu_k, (alpha^2 s_k^2 + sigma^2) I), whose score is known in closed form, and
the optimal eps-prediction is eps*(x_t) = -sigma * score(x_t) (Tweedie's formula).
"""

import numpy as np
import torch


class MixtureDenoiser:
    """eps*(x_t, t) of a Gaussian mixture for a process; called like a network (float64)."""

    dtype = torch.float64

    def __init__(self, process, means, stds, weights=None):
        self.process = process
        self.means = torch.as_tensor(np.asarray(means), dtype=torch.float64)  # (K, D)
        self.stds = torch.as_tensor(np.asarray(stds), dtype=torch.float64)  # (K,)
        k = len(self.stds)
        w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
        self.log_w = torch.as_tensor(np.log(w / w.sum()))
        self.calls = 0

    def __call__(self, x, t, y=None):
        self.calls += 1
        sigma_ve = torch.as_tensor(self.process.sigma_at(t.double().cpu().numpy()), dtype=torch.float64)[:, None]
        alpha = 1.0 / torch.sqrt(1.0 + sigma_ve**2)
        sigma = alpha * sigma_ve
        var = alpha[:, :, None] ** 2 * self.stds[None, :, None] ** 2 + sigma[:, :, None] ** 2  # (B, K, 1)
        diff = x[:, None, :] - alpha[:, :, None] * self.means[None]  # (B, K, D)
        d = x.shape[1]
        log_r = self.log_w - 0.5 * (diff**2 / var).sum(-1) - 0.5 * d * torch.log(var[..., 0])
        r = torch.softmax(log_r, dim=1)[..., None]
        score = -(r * diff / var).sum(1)
        return -sigma * score

    def sample_data(self, n, seed=0):
        gen = torch.Generator().manual_seed(seed)
        k = torch.multinomial(self.log_w.exp(), n, replacement=True, generator=gen)
        noise = torch.randn(n, self.means.shape[1], generator=gen, dtype=torch.float64)
        return self.means[k] + self.stds[k, None] * noise


def ring(process, k=8, radius=2.0, std=0.15):
    """k Gaussians on a circle: the 8-Gaussians toy set with an exact denoiser."""
    angles = np.arange(k) * 2 * np.pi / k
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return MixtureDenoiser(process, means, np.full(k, std))
