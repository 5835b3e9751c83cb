"""diffusers' ``UNet2DModel`` behind the ``forward(x, t, y=None)`` interface of :class:`~ddpm.nets.unet.UNet`.

``UNet2DModel`` is the PyTorch port of the DDPM U-Net (von Platen et al., diffusers). The
wrapper takes the same keyword arguments as ``UNet`` (so a preset of
:data:`~ddpm.nets.unet.UNET_PRESETS` builds either network), maps them with
:func:`ddpm.convert.unet2d.unet2d_config`, and pads odd sizes the same way.
diffusers is imported lazily: it is an optional extra.
"""

import json

import torch
from torch import Tensor, nn

from ddpm.errors import ConfigError
from ddpm.nets.unet import pad_to_multiple


class DiffusersUNet(nn.Module):
    """``UNet2DModel`` with ``forward(x, t, y=None)``; options and defaults as :class:`~ddpm.nets.unet.UNet`.

    Options diffusers has no counterpart for (linear attention, weight standardisation,
    resampling without convolutions) raise :class:`~ddpm.errors.ConfigError`.
    ``num_groups`` is lowered to the largest divisor of every level's channel count
    (diffusers uses one group count throughout). Labels: ``y=None`` means "no label",
    embedded as class ``num_classes`` like :class:`~ddpm.nets.embeddings.LabelEmbedding`.
    With the same options both networks have the same layers and parameter count, and
    where the native U-Net's GroupNorms share one group count they compute the same
    function of weights that :mod:`ddpm.convert.unet2d` maps from one to the other.
    """

    def __init__(self, unet2d_config: str | None = None, **options):
        """Build from U-Net ``options``, or from ``unet2d_config``, a ``UNet2DModel`` configuration
        (JSON text, as ``model.unet2d_config`` holds it) used as it is: an imported network with
        no native counterpart, whose last class embedding, if any, is taken as "no label"."""
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError as err:
            raise ConfigError(
                "the diffusers U-Net needs the diffusers package: install with pip install 'ddpm[diffusers]'"
            ) from err
        from ddpm.convert.unet2d import unet2d_config as config_of
        from ddpm.nets.unet import complete_options

        if unet2d_config is None:
            self.config = complete_options(options)
            self.unet = UNet2DModel(**config_of(self.config))
        else:
            self.unet = UNet2DModel.from_config(json.loads(unet2d_config))
            self.config = dict(self.unet.config)
        self.multiple = 2 ** (len(self.unet.config.block_out_channels) - 1)
        classes = self.unet.config.num_class_embeds
        self.num_classes = None if classes is None else classes - 1

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Predict eps for ``x`` (B, C, H, W) at float steps ``t`` (B,) with labels ``y`` (B,) or None."""
        x, crop = pad_to_multiple(x, self.multiple)
        if self.num_classes is None:
            y = None  # unconditional models ignore labels, as UNet does
        elif y is None:
            y = t.new_full((x.shape[0],), self.num_classes, dtype=torch.long)
        out = self.unet(x, t, class_labels=y, return_dict=False)[0]
        return out[..., crop[0], crop[1]]

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
