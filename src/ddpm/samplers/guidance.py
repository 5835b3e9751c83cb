"""Classifier-free guidance (Ho & Salimans 2022): one network, conditional and unconditional."""

import torch
from torch import nn


class ClassifierFreeGuidance(nn.Module):
    """A class-conditional network guided at scale ``w``, called like the network itself.

    output = u + w (c - u) with c the output for the requested labels and u for the "no label"
    class ``null_label`` (Ho & Salimans 2022, eq. 6, on whatever the network predicts: eps, x0
    and v are affine in each other at a given x_t, so guiding any of them is the same). Both come
    from one batched call. w = 0 is the unconditional model, w = 1 the conditional one. With a
    learned variance only the target's channels are guided; the variance is the conditional one.
    ``rescale`` > 0 mixes in the guided output rescaled to the conditional output's standard
    deviation per example (Lin et al. 2024, "Common diffusion noise schedules...", eq. 15-16),
    which counters the over-exposure of large scales.
    """

    def __init__(self, model: nn.Module, scale: float, null_label: int, rescale: float = 0.0,
                 learned_variance: bool = False):
        super().__init__()
        self.model, self.scale, self.null_label = model, float(scale), int(null_label)
        self.rescale, self.learned_variance = float(rescale), learned_variance
        self.train(model.training)  # the sampler restores the mode it finds: the network's own

    def forward(self, x, t, y=None):
        if y is None:
            raise ValueError("guidance needs the labels to guide towards")
        null = torch.full_like(y, self.null_label)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([y, null]))
        cond, uncond = both.chunk(2)
        variance = None
        if self.learned_variance:
            (cond, variance), (uncond, _) = cond.chunk(2, dim=1), uncond.chunk(2, dim=1)
        guided = uncond + self.scale * (cond - uncond)
        if self.rescale > 0:
            dims = tuple(range(1, guided.ndim))
            rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
            guided = self.rescale * rescaled + (1 - self.rescale) * guided
        return guided if variance is None else torch.cat([guided, variance], dim=1)
