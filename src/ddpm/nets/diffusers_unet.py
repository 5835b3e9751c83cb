"""diffusers' ``UNet2DModel`` behind the ``forward(x, t, y=None)`` interface of :class:`~ddpm.nets.unet.UNet`.

``UNet2DModel`` is the PyTorch port of the DDPM U-Net (von Platen et al., diffusers). The
wrapper takes the same keyword arguments as ``UNet`` (so a preset of
:data:`~ddpm.nets.unet.UNET_PRESETS` builds either network), maps them to
``block_out_channels`` / ``layers_per_block`` / down and up block types ("AttnDownBlock2D"
and "AttnUpBlock2D" at attention resolutions), and pads odd sizes the same way.
diffusers is imported lazily: it is an optional extra.
"""

import math

import torch
from torch import Tensor, nn

from ddpm.errors import ConfigError
from ddpm.nets.unet import complete_options, largest_divisor, level_resolutions, pad_to_multiple


class DiffusersUNet(nn.Module):
    """``UNet2DModel`` with ``forward(x, t, y=None)``; options and defaults as :class:`~ddpm.nets.unet.UNet`.

    Options diffusers has no counterpart for (linear attention, weight standardisation,
    resampling without convolutions, several heads) raise :class:`~ddpm.errors.ConfigError`.
    ``num_groups`` is lowered to the largest divisor of every level's channel count
    (diffusers uses one group count throughout). Labels: ``y=None`` means "no label",
    embedded as class ``num_classes`` like :class:`~ddpm.nets.embeddings.LabelEmbedding`.
    With the same options both networks have the same layers and parameter count.
    """

    def __init__(self, **options):
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError as err:
            raise ConfigError(
                "the diffusers U-Net needs the diffusers package: install with pip install 'ddpm[diffusers]'"
            ) from err
        self.config = c = complete_options(options)
        unsupported = c["attention"] != "full" or c["weight_standardized"] or not c["resample_with_conv"]
        if unsupported or c["num_heads"] != 1:
            raise ConfigError(
                "the diffusers U-Net supports only attention='full', weight_standardized=False, "
                "resample_with_conv=True and num_heads=1"
            )
        resolutions = level_resolutions(c["image_size"], len(c["channel_mults"]), c["attention_resolutions"])
        self.multiple = 2 ** (len(c["channel_mults"]) - 1)
        channels = [c["base_channels"] * m for m in c["channel_mults"]]
        groups = largest_divisor(math.gcd(*channels), c["num_groups"])
        attention = [r in c["attention_resolutions"] for r in resolutions]
        self.num_classes = c["num_classes"]
        self.unet = UNet2DModel(
            sample_size=resolutions[0],
            in_channels=c["in_channels"],
            out_channels=c["out_channels"],
            block_out_channels=tuple(channels),
            layers_per_block=c["num_res_blocks"],
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
            dropout=c["dropout"],
            attention_head_dim=None,  # one head of all channels
            norm_num_groups=groups,
            attn_norm_num_groups=groups,
            resnet_time_scale_shift="scale_shift" if c["scale_shift_norm"] else "default",
            num_class_embeds=None if self.num_classes is None else self.num_classes + 1,
        )

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
