"""The DDPM U-Net noise predictor ``eps_theta(x_t, t[, y])`` (Ho et al. 2020, appendix B).

The layout follows the ``diffusion`` TF reference (``diffusion_tf/models/unet.py``), a
PixelCNN++-style U-Net (Salimans et al. 2017; Ronneberger et al. 2015):

* time embedding: sinusoidal(``base_channels``) -> Linear -> SiLU -> Linear to
  ``4 * base_channels`` (plus a label embedding for class-conditional models);
* a 3x3 input convolution, then for each level ``num_res_blocks`` residual blocks (each
  followed by self-attention at the chosen resolutions) and a 2x down-sampling; every
  intermediate feature map is kept for the skip connections;
* a middle block residual -> attention -> residual;
* the up path mirrors it with ``num_res_blocks + 1`` residual blocks per level, each fed
  the concatenation of the current map and one stored skip map, then 2x up-sampling;
* GroupNorm -> SiLU -> 3x3 convolution to the output, initialised to zero (as are the
  last convolution of each residual block and the attention output projection, DDPM's
  ``init_scale=0``), so the untrained network predicts eps = 0.

Residual blocks (Zagoruyko & Komodakis 2016 "wide ResNet") are GroupNorm -> SiLU -> conv
-> time embedding -> GroupNorm -> SiLU -> dropout -> conv, with a 1x1 ("NIN") skip when
the channel count changes. The time embedding enters either as in DDPM, added to the
features before the second GroupNorm, or (``scale_shift_norm=True``) as
``h = norm(h) * (1 + scale) + shift`` (improved-diffusion's ``use_scale_shift_norm``,
Nichol & Dhariwal 2021; "adaptive group normalization", which improved FID in Dhariwal &
Nichol 2021, sec. 3; the Annotated Diffusion Model's ``Block``).

The constructor's defaults are the paper's CIFAR-10 model; the presets of
:data:`UNET_PRESETS` depart from it where they say why.

Inputs of any size: the input is reflect-padded (split evenly between the two sides) up
to a multiple of ``2 ** (len(channel_mults) - 1)`` and the output cropped back. Reflection
keeps the padded border statistically like the image (noise at large t, content at small
t), so the network sees no artificial frame; it needs each side to exceed its padding.

Speed on CPU: ``model.to(memory_format=torch.channels_last)`` works and gives the same
outputs, but PyTorch's channels-last GroupNorm kernel is slow when groups hold few
channels, so on 2-core CPUs it gains little at 28x28 and loses at 8x8
(``benchmarks/unet_throughput.py``). Without gradients (sampling) the blocks overwrite
their intermediates in place instead of allocating new ones.

The network knows nothing of diffusion: ``t`` is only a float index to embed.
"""

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddpm.errors import ConfigError
from ddpm.nets.embeddings import TIME_EMBEDDINGS, LabelEmbedding, TimeEmbedding

# The small presets use scale-shift norm (better FID, Dhariwal & Nichol 2021) and no dropout
# (short CPU budgets under-fit; they do not over-fit).
UNET_PRESETS: dict[str, dict] = {
    # CPU tests: 48k parameters, milliseconds on 8x8 and 28x28.
    "tiny": dict(
        base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
        image_size=8, dropout=0.0, num_groups=4, scale_shift_norm=True,
    ),
    # MNIST (28x28: levels 28, 14, 7) on a 2-core CPU, 1.19M parameters: the ~1.1M shape
    # measured in DESIGN.md (base 32, mults 1-2-2, one block per level), attention at 7x7 only.
    "small": dict(
        base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_resolutions=(7,),
        image_size=28, dropout=0.0, scale_shift_norm=True,
    ),
    # scikit-learn digits (8x8), 0.76M parameters: two levels, attention at 4x4.
    "digits": dict(
        base_channels=32, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
        image_size=8, dropout=0.0, scale_shift_norm=True,
    ),
    # The paper's CIFAR-10 model (Ho et al. 2020, appendix B): 35.7M parameters.
    "cifar10": dict(
        base_channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2, attention_resolutions=(16,),
        image_size=32, dropout=0.1, scale_shift_norm=False,
    ),
}

ATTENTION_KINDS = ("full", "linear")


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is at most ``at_most``."""
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def group_norm(channels: int, num_groups: int, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018) with the largest group count <= ``num_groups`` dividing ``channels``."""
    return nn.GroupNorm(largest_divisor(channels, num_groups), channels, eps=eps)


def zero_init(module: nn.Module) -> nn.Module:
    """Set a layer's parameters to zero (DDPM ``init_scale=0``)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class WeightStandardizedConv2d(nn.Conv2d):
    """Convolution with weights standardised per output channel (Qiao et al. 2019, eq. 5).

    ``W_hat = (W - mean(W)) / sqrt(var(W) + eps)`` over each filter's fan-in; it pairs with
    GroupNorm (Kolesnikov et al. 2020, BiT).
    """

    eps = 1e-5

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, correction=0)
        return self._conv_forward(x, (self.weight - mean) * torch.rsqrt(var + self.eps), self.bias)


class ResidualBlock(nn.Module):
    """DDPM ``resnet_block``: x + conv(dropout(SiLU(norm(conv(SiLU(norm(x))) (+) emb)))).

    With ``scale_shift_norm`` the embedding gives (scale, shift) and the second norm becomes
    ``norm(h) * (1 + scale) + shift``; otherwise it is added before the norm (DDPM).
    Weight-standardised convolutions keep their random initialisation: standardisation
    divides by the weights' spread, so zero weights would amplify their first gradient by
    1/sqrt(eps).
    """

    def __init__(
        self, in_channels: int, out_channels: int, emb_channels: int, *, dropout: float,
        num_groups: int, scale_shift_norm: bool, weight_standardized: bool, norm_eps: float = 1e-5,
    ):
        super().__init__()
        conv = WeightStandardizedConv2d if weight_standardized else nn.Conv2d
        self.scale_shift_norm = scale_shift_norm
        self.norm1 = group_norm(in_channels, num_groups, norm_eps)
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_channels, out_channels * (2 if scale_shift_norm else 1))
        self.norm2 = group_norm(out_channels, num_groups, norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        if not weight_standardized:
            zero_init(self.conv2)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``emb`` is SiLU(time embedding), shape (B, emb_channels)."""
        inplace = not torch.is_grad_enabled()  # sampling: reuse buffers, no graph needs them
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        e = self.emb_proj(emb)[:, :, None, None]
        if self.scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        else:
            h = self.norm2(h.add_(e))  # a convolution's output is not saved for its backward
        h = self.conv2(self.dropout(F.silu(h, inplace=inplace)))
        return h.add_(self.skip(x))


class SelfAttention(nn.Module):
    """Residual multi-head self-attention over the H*W positions (DDPM ``attn_block``).

    ``x + proj_out(softmax(q k^T / sqrt(d)) v)`` with q, k, v 1x1 projections of
    GroupNorm(x) (Vaswani et al. 2017, eq. 1), computed by ``F.scaled_dot_product_attention``.
    ``linear=True`` replaces the softmax attention by linear ("efficient") attention
    (Shen et al. 2018; Katharopoulos et al. 2020) as in the Annotated Diffusion Model:
    ``softmax_d(q) (softmax_N(k)^T v)``, O(N d^2) instead of O(N^2 d). Unlike that version
    it has no extra output GroupNorm or q scaling: like the full attention, its output
    projection starts at zero inside the residual connection.
    """

    def __init__(self, channels: int, *, num_heads: int, num_groups: int, linear: bool = False,
                 norm_eps: float = 1e-5):
        super().__init__()
        if channels % num_heads:
            raise ConfigError(f"num_heads={num_heads} must divide the attention channels {channels}")
        self.num_heads = num_heads
        self.linear = linear
        self.norm = group_norm(channels, num_groups, norm_eps)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        # Attention runs position-major: (B, 3C, H, W) channels-last -> q, k, v views (B, heads, N, d).
        qkv = self.qkv(self.norm(x)).contiguous(memory_format=torch.channels_last)
        qkv = qkv.flatten(2).view(B, 3, self.num_heads, C // self.num_heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)
        # float32 attention under CPU autocast: the softmax keeps its precision, and PyTorch's CPU
        # flash-attention backward is ~6x slower in bf16 than in float32 (measured, 2 cores)
        upcast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", enabled=False) if upcast else contextlib.nullcontext():
            if upcast:
                q, k, v = q.float(), k.float(), v.float()
            if self.linear:
                h = q.softmax(dim=-1) @ (k.softmax(dim=-2).transpose(-1, -2) @ v)
            else:
                h = F.scaled_dot_product_attention(q, k, v)
        # (B, heads, N, d) -> (B, C, H, W) channels-last (a view when num_heads == 1) -> x's layout.
        h = h.transpose(1, 2).reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous(memory_format=layout)
        return self.proj_out(h).add_(x)


class Downsample(nn.Module):
    """Halve H and W: 3x3 convolution with stride 2, or 2x2 average pooling.

    ``padding=1`` pads the convolution by one on every side (improved-diffusion);
    ``padding=0`` pads only the bottom and right, TensorFlow's "SAME" padding of the DDPM
    reference (``downsample_padding=0`` in diffusers).
    """

    def __init__(self, channels: int, with_conv: bool, padding: int = 1):
        super().__init__()
        self.same_padding = padding == 0
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding) if with_conv else None

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is None:
            return F.avg_pool2d(x, 2)
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.same_padding else x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour up-sampling, then optionally a 3x3 convolution.

    The up-sampling is a broadcast (each pixel becomes a 2x2 block), the same numbers as
    ``F.interpolate(x, scale_factor=2, mode="nearest")``; its gradient is a sum over each block.
    ``F.interpolate``'s gradient is a scatter-add that ``torch.compile`` on the CPU (Inductor's C++
    backend, PyTorch 2.13) computes after the kernel that reads it: every layer below the first
    up-sampling then trained with a zero gradient (``tests/test_compilation.py``).
    """

    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if with_conv else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        return self.conv(x[:, :, :, None, :, None].expand(B, C, H, 2, W, 2).reshape(B, C, 2 * H, 2 * W))


class UNetBlock(nn.Module):
    """A residual block, followed by self-attention at attention resolutions."""

    def __init__(self, res: ResidualBlock, attn: SelfAttention | None):
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.res(x, emb)
        return h if self.attn is None else self.attn(h)


class Level(nn.Module):
    """One resolution of the U-Net: its blocks and the resampling that leaves it (or None)."""

    def __init__(self, blocks: list[UNetBlock], resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


def padded_size(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return math.ceil(size / multiple) * multiple


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[slice, slice]]:
    """Reflect-pad H and W of ``x`` up to multiples of ``multiple``; return it and the crop back."""
    H, W = x.shape[-2:]
    pad_h, pad_w = padded_size(H, multiple) - H, padded_size(W, multiple) - W
    if pad_h == 0 and pad_w == 0:
        return x, (slice(None), slice(None))
    top, left = pad_h // 2, pad_w // 2
    if pad_h - top >= H or pad_w - left >= W:
        raise ConfigError(
            f"a {H}x{W} input is too small to reflect-pad to a multiple of {multiple}: "
            "use fewer channel_mults (levels) or larger images"
        )
    x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="reflect")
    return x, (slice(top, top + H), slice(left, left + W))


def level_resolutions(image_size: int, num_levels: int, attention_resolutions: tuple[int, ...]) -> list[int]:
    """Feature-map side of each level for a (padded) ``image_size`` input; checks the attention ones."""
    multiple = 2 ** (num_levels - 1)
    resolutions = [padded_size(image_size, multiple) // 2**i for i in range(num_levels)]
    unknown = set(attention_resolutions) - set(resolutions)
    if unknown:
        raise ConfigError(
            f"attention_resolutions {sorted(unknown)} match no level of an input whose shorter side is "
            f"{image_size}; the levels have (shorter) sides {resolutions}"
        )
    return resolutions


def complete_options(options: dict) -> dict:
    """:class:`UNet` keyword arguments completed with its defaults; unknown names raise ConfigError."""
    defaults = UNet.__init__.__kwdefaults__
    unknown = options.keys() - defaults.keys() - {"in_channels"}
    if unknown or "in_channels" not in options:
        raise ConfigError(
            f"U-Net options need in_channels and accept only {sorted(defaults)}; "
            f"got unknown {sorted(unknown)}"
        )
    options = {**defaults, **options}
    if options["out_channels"] is None:
        options["out_channels"] = options["in_channels"]
    options["channel_mults"] = tuple(options["channel_mults"])
    options["attention_resolutions"] = tuple(options["attention_resolutions"])
    return options


class UNet(nn.Module):
    """DDPM U-Net ``eps_theta(x, t[, y])``: (B, C, H, W) -> (B, out_channels, H, W).

    Args:
        in_channels: image channels.
        out_channels: output channels (default ``in_channels``; twice that for a learned variance).
        base_channels: channels of the first level ("ch"); level i has
            ``base_channels * channel_mults[i]``; the time embedding has ``4 * base_channels``.
        channel_mults: one multiplier per resolution level ("ch_mult").
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_resolutions: feature-map sides, counted on the padded ``image_size``, after
            whose residual blocks self-attention is applied (e.g. (16,) for CIFAR-10).
        image_size: the input side the attention resolutions refer to; inputs of other sizes
            run with attention at the same levels.
        dropout: dropout rate inside the residual blocks.
        attention: "full" softmax self-attention or "linear" attention at the attention
            resolutions. The middle block always uses full attention (as the Annotated
            Diffusion Model does): it runs at the lowest resolution, where it is cheap.
        weight_standardized: weight-standardised convolutions in the residual blocks.
        num_heads: attention heads (DDPM: 1).
        num_groups: GroupNorm groups, lowered to the largest divisor of each channel count.
        num_classes: if set, class labels 0..num_classes-1 are embedded and added to the
            time embedding; ``y=None`` means "no label" (for classifier-free guidance).
            Unconditional models ignore ``y``.
        resample_with_conv: 3x3 convolutions in down/up-sampling (else avg-pool / nearest only).
        scale_shift_norm: time embedding as GroupNorm scale and shift (else added, as DDPM).
        norm_eps: the epsilon of every GroupNorm (the DDPM reference's TensorFlow GroupNorm: 1e-6).
        freq_shift, flip_sin_to_cos: the time embedding's frequencies and order
            (:class:`~ddpm.nets.embeddings.SinusoidalEmbedding`; the DDPM reference: 1, False).
        downsample_padding: 1 (symmetric) or 0 (TensorFlow "SAME", the DDPM reference), see
            :class:`Downsample`.
        time_embedding: "sinusoidal" (DDPM) or "fourier" (Gaussian random Fourier features of a
            continuous time, :class:`~ddpm.nets.embeddings.GaussianFourierEmbedding`).

    The last four exist so that a diffusers ``UNet2DModel`` of the DDPM layout, such as the
    paper's own CIFAR-10 model converted (google/ddpm-cifar10-32), maps onto this network
    exactly (:mod:`ddpm.convert.unet2d`).

    ``config`` holds all of them: ``UNet(**model.config)`` rebuilds the model.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int | None = None, base_channels: int = 128,
        channel_mults: tuple[int, ...] = (1, 2, 2, 2), num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (16,), image_size: int = 32, dropout: float = 0.1,
        attention: str = "full", weight_standardized: bool = False, num_heads: int = 1,
        num_groups: int = 32, num_classes: int | None = None, resample_with_conv: bool = True,
        scale_shift_norm: bool = False, norm_eps: float = 1e-5, freq_shift: float = 0.0,
        flip_sin_to_cos: bool = False, downsample_padding: int = 1, time_embedding: str = "sinusoidal",
    ):
        super().__init__()
        channel_mults, attention_resolutions = tuple(channel_mults), tuple(attention_resolutions)
        out_channels = in_channels if out_channels is None else out_channels
        self.config = dict(
            in_channels=in_channels, out_channels=out_channels, base_channels=base_channels,
            channel_mults=channel_mults, num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions, image_size=image_size, dropout=dropout,
            attention=attention, weight_standardized=weight_standardized, num_heads=num_heads,
            num_groups=num_groups, num_classes=num_classes, resample_with_conv=resample_with_conv,
            scale_shift_norm=scale_shift_norm, norm_eps=norm_eps, freq_shift=freq_shift,
            flip_sin_to_cos=flip_sin_to_cos, downsample_padding=downsample_padding, time_embedding=time_embedding,
        )
        if attention not in ATTENTION_KINDS:
            raise ConfigError(f"attention={attention!r} is not one of {ATTENTION_KINDS}")
        sizes = (in_channels, out_channels, base_channels, num_heads, num_groups, *channel_mults)
        invalid = not channel_mults or min(sizes) < 1 or num_res_blocks < 0
        if invalid or (num_classes is not None and num_classes < 1):
            raise ConfigError(f"U-Net sizes must be positive (num_res_blocks >= 0), got {self.config}")
        self.multiple = 2 ** (len(channel_mults) - 1)
        resolutions = level_resolutions(image_size, len(channel_mults), attention_resolutions)

        emb_channels = 4 * base_channels
        if downsample_padding not in (0, 1):
            raise ConfigError(f"downsample_padding={downsample_padding!r} must be 0 (TensorFlow SAME) or 1")
        if time_embedding not in TIME_EMBEDDINGS:
            raise ConfigError(f"time_embedding={time_embedding!r} is not one of {TIME_EMBEDDINGS}")
        self.time_embedding = TimeEmbedding(base_channels, emb_channels, freq_shift, flip_sin_to_cos, time_embedding)
        self.label_embedding = None if num_classes is None else LabelEmbedding(num_classes, emb_channels)

        def res(cin: int, cout: int) -> ResidualBlock:
            return ResidualBlock(
                cin, cout, emb_channels, dropout=dropout, num_groups=num_groups,
                scale_shift_norm=scale_shift_norm, weight_standardized=weight_standardized, norm_eps=norm_eps,
            )

        def block(cin: int, cout: int, resolution: int) -> UNetBlock:
            attn = None
            if resolution in attention_resolutions:
                linear = attention == "linear"
                attn = SelfAttention(cout, num_heads=num_heads, num_groups=num_groups, linear=linear,
                                     norm_eps=norm_eps)
            return UNetBlock(res(cin, cout), attn)

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        skip_channels, ch = [base_channels], base_channels
        self.down = nn.ModuleList()
        for i, (mult, resolution) in enumerate(zip(channel_mults, resolutions)):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(block(ch, base_channels * mult, resolution))
                ch = base_channels * mult
                skip_channels.append(ch)
            last = i == len(channel_mults) - 1
            self.down.append(Level(blocks, None if last else Downsample(ch, resample_with_conv, downsample_padding)))
            if not last:
                skip_channels.append(ch)

        self.mid_res1 = res(ch, ch)
        self.mid_attn = SelfAttention(ch, num_heads=num_heads, num_groups=num_groups, norm_eps=norm_eps)
        self.mid_res2 = res(ch, ch)

        self.up = nn.ModuleList()
        for i in reversed(range(len(channel_mults))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                cout = base_channels * channel_mults[i]
                blocks.append(block(ch + skip_channels.pop(), cout, resolutions[i]))
                ch = cout
            self.up.append(Level(blocks, Upsample(ch, resample_with_conv) if i > 0 else None))

        self.norm_out = group_norm(ch, num_groups, norm_eps)
        self.conv_out = zero_init(nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Predict eps for noisy images ``x`` (B, C, H, W) at float steps ``t`` (B,), labels ``y`` (B,).

        The result has the shape of ``x`` (with ``out_channels``); for padded sizes it is a
        cropped view of the padded output.
        """
        x, crop = pad_to_multiple(x, self.multiple)
        emb = self.time_embedding(t)
        if self.label_embedding is not None:
            emb = emb + self.label_embedding(y, x.shape[0], x.device)
        emb = F.silu(emb)  # every residual block projects SiLU(temb) (DDPM ``temb_proj``)

        hs = [self.conv_in(x)]
        for level in self.down:
            for blk in level.blocks:
                hs.append(blk(hs[-1], emb))
            if level.resample is not None:
                hs.append(level.resample(hs[-1]))
        h = self.mid_res2(self.mid_attn(self.mid_res1(hs[-1], emb)), emb)
        for level in self.up:
            for blk in level.blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), emb)
            if level.resample is not None:
                h = level.resample(h)
        h = self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))
        return h[..., crop[0], crop[1]]

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def build_unet(preset_or_kwargs: str | dict, in_channels: int, **overrides) -> UNet:
    """Build a :class:`UNet` from a preset name of :data:`UNET_PRESETS` or a kwargs dict, plus overrides."""
    if isinstance(preset_or_kwargs, str):
        if preset_or_kwargs not in UNET_PRESETS:
            raise ConfigError(
                f"unknown U-Net preset {preset_or_kwargs!r}; choose one of {sorted(UNET_PRESETS)}"
            )
        preset_or_kwargs = UNET_PRESETS[preset_or_kwargs]
    return UNet(**complete_options({**preset_or_kwargs, **overrides, "in_channels": in_channels}))
