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
from ddpm.nets.unet import padded_size, pad_to_multiple


class DiffusersUNet(nn.Module):
    """``UNet2DModel`` with ``forward(x, t, y=None)``; arguments as :class:`~ddpm.nets.unet.UNet`.

    Options diffusers has no counterpart for (linear attention, weight standardisation,
    resampling without convolutions, several heads) raise :class:`~ddpm.errors.ConfigError`. ``num_groups``
    is lowered to the largest divisor of every level's channel count (diffusers uses one
    group count throughout). Labels: ``y=None`` means "no label", embedded as class
    ``num_classes`` like :class:`~ddpm.nets.embeddings.LabelEmbedding`.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int | None = None, base_channels: int = 128,
        channel_mults: tuple[int, ...] = (1, 2, 2, 2), num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (16,), image_size: int = 32, dropout: float = 0.0,
        attention: str = "full", weight_standardized: bool = False, num_heads: int = 1,
        num_groups: int = 32, num_classes: int | None = None, resample_with_conv: bool = True,
        scale_shift_norm: bool = True,
    ):
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError as err:
            raise ConfigError(
                "the diffusers U-Net needs the diffusers package: install with pip install 'ddpm[diffusers]'"
            ) from err
        if attention != "full" or weight_standardized or not resample_with_conv or num_heads != 1:
            raise ConfigError(
                "the diffusers U-Net supports only attention='full', weight_standardized=False, "
                "resample_with_conv=True and num_heads=1"
            )
        channel_mults, attention_resolutions = tuple(channel_mults), tuple(attention_resolutions)
        out_channels = in_channels if out_channels is None else out_channels
        self.config = dict(
            in_channels=in_channels, out_channels=out_channels, base_channels=base_channels,
            channel_mults=channel_mults, num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions, image_size=image_size, dropout=dropout,
            attention=attention, weight_standardized=weight_standardized, num_heads=num_heads,
            num_groups=num_groups, num_classes=num_classes, resample_with_conv=resample_with_conv,
            scale_shift_norm=scale_shift_norm,
        )
        self.multiple = 2 ** (len(channel_mults) - 1)
        resolutions = [padded_size(image_size, self.multiple) // 2**i for i in range(len(channel_mults))]
        unknown = set(attention_resolutions) - set(resolutions)
        if unknown:
            raise ConfigError(
                f"attention_resolutions {sorted(unknown)} match no level of a {image_size}x{image_size} "
                f"input; the levels have sides {resolutions}"
            )
        channels = [base_channels * m for m in channel_mults]
        common = math.gcd(*channels)
        groups = max(g for g in range(1, min(num_groups, common) + 1) if common % g == 0)
        attn = [r in attention_resolutions for r in resolutions]
        self.num_classes = num_classes
        self.unet = UNet2DModel(
            sample_size=padded_size(image_size, self.multiple),
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=tuple(channels),
            layers_per_block=num_res_blocks,
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
            dropout=dropout,
            attention_head_dim=None,  # one head of all channels
            norm_num_groups=groups,
            attn_norm_num_groups=groups,
            resnet_time_scale_shift="scale_shift" if scale_shift_norm else "default",
            num_class_embeds=num_classes + 1 if num_classes else None,
        )

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Predict eps for ``x`` (B, C, H, W) at float steps ``t`` (B,) with labels ``y`` (B,) or None."""
        x, crop = pad_to_multiple(x, self.multiple)
        if self.num_classes and y is None:
            y = t.new_full((x.shape[0],), self.num_classes, dtype=torch.long)
        out = self.unet(x, t, class_labels=y, return_dict=False)[0]
        return out[..., crop[0], crop[1]]

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
