"""The native U-Net as diffusers' ``UNet2DModel`` and back: configuration and weights, exactly.

Both networks are the DDPM U-Net (Ho et al. 2020, appendix B; ``UNet2DModel`` is its
diffusers port), so a network of the DDPM layout has one set of weights in two namings:

============================  =========================================
native (:class:`~ddpm.nets.unet.UNet`)  ``UNet2DModel``
============================  =========================================
``time_embedding.mlp.0/2``    ``time_embedding.linear_1/2``
``label_embedding.embedding`` ``class_embedding`` (last row: "no label")
``down.i.blocks.j.res``       ``down_blocks.i.resnets.j``
``down.i.blocks.j.attn``      ``down_blocks.i.attentions.j``
``down.i.resample.conv``      ``down_blocks.i.downsamplers.0.conv``
``mid_res1/mid_attn/mid_res2`` ``mid_block.resnets.0/attentions.0/resnets.1``
``up.i...``                   ``up_blocks.i...`` (``upsamplers.0``)
``norm_out``                  ``conv_norm_out``
============================  =========================================

Inside a residual block ``emb_proj`` is ``time_emb_proj`` and ``skip`` is
``conv_shortcut``; inside attention ``norm`` is ``group_norm``, the fused 1x1 ``qkv``
convolution is the three linear maps ``to_q``, ``to_k``, ``to_v`` and ``proj_out`` is
``to_out.0``. Options with no counterpart (linear attention, weight standardisation,
resampling without convolutions, GroupNorms of different group counts) are refused with
:class:`~ddpm.errors.ConfigError` naming the option, never approximated.
"""

import inspect
import math
import re

import torch
from torch import nn

from ..errors import ConfigError
from ..nets.unet import UNet, complete_options, largest_divisor, level_resolutions

_RESNET = {"emb_proj": "time_emb_proj", "skip": "conv_shortcut"}
_ATTENTION = {"norm": "group_norm", "proj_out": "to_out.0"}
_TOP = {"time_embedding.mlp.0": "time_embedding.linear_1", "time_embedding.mlp.2": "time_embedding.linear_2",
        "label_embedding.embedding": "class_embedding", "norm_out": "conv_norm_out",
        "mid_res1": "mid_block.resnets.0", "mid_res2": "mid_block.resnets.1", "mid_attn": "mid_block.attentions.0"}
_BLOCK = re.compile(r"^(down|up)\.(\d+)\.blocks\.(\d+)\.(res|attn)\.(.+)$")
_RESAMPLE = re.compile(r"^(down|up)\.(\d+)\.resample\.(.+)$")


def unet2d_name(key: str) -> str:
    """The ``UNet2DModel`` name of a native parameter (``qkv`` stays fused: see :func:`to_unet2d`)."""
    if m := _BLOCK.match(key):
        side, level, block, part, rest = m.groups()
        head, _, tail = rest.partition(".")
        inner = (_RESNET if part == "res" else _ATTENTION).get(head, head)
        kind = "resnets" if part == "res" else "attentions"
        return f"{side}_blocks.{level}.{kind}.{block}.{inner}.{tail}"
    if m := _RESAMPLE.match(key):
        side, level, rest = m.groups()
        return f"{side}_blocks.{level}.{side}samplers.0.{rest}"
    for native, theirs in _TOP.items():
        if key.startswith(native + "."):
            rest = key[len(native) + 1:]
            if native.endswith("attn"):
                head, _, tail = rest.partition(".")
                rest = f"{_ATTENTION.get(head, head)}.{tail}"
            elif native.startswith("mid_res"):
                head, _, tail = rest.partition(".")
                rest = f"{_RESNET.get(head, head)}.{tail}"
            return f"{theirs}.{rest}"
    return key


def to_unet2d(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A native U-Net state dict in ``UNet2DModel``'s names and shapes."""
    out = {}
    for key, value in state.items():
        name = unet2d_name(key)
        prefix, _, kind = name.rpartition(".")
        if prefix.endswith(".qkv"):
            base = prefix[: -len("qkv")]
            for part, chunk in zip(("to_q", "to_k", "to_v"), value.chunk(3, dim=0)):
                out[f"{base}{part}.{kind}"] = chunk.reshape(chunk.shape[:2]) if kind == "weight" else chunk.clone()
        elif prefix.endswith("to_out.0") and kind == "weight":
            out[name] = value.reshape(value.shape[:2]).clone()
        else:
            out[name] = value.clone()
    return out


def from_unet2d(state: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``UNet2DModel`` state dict as the native state dict ``like`` names and shapes it."""
    out = {}
    for key, target in like.items():
        name = unet2d_name(key)
        prefix, _, kind = name.rpartition(".")
        if prefix.endswith(".qkv"):
            base = prefix[: -len("qkv")]
            value = torch.cat([state[f"{base}{part}.{kind}"] for part in ("to_q", "to_k", "to_v")])
        else:
            value = state[name]
        out[key] = value.reshape(target.shape).clone()
    return out


def group_count(options: dict) -> int:
    """The one GroupNorm group count ``UNet2DModel`` gets: the largest divisor of every level's
    channel count that is at most ``num_groups``."""
    channels = [options["base_channels"] * m for m in options["channel_mults"]]
    return largest_divisor(math.gcd(*channels), options["num_groups"])


def unet2d_config(options: dict, sample_size: int | tuple[int, int] | None = None) -> dict:
    """``UNet2DModel`` keyword arguments of the U-Net with native ``options``; ``sample_size``
    defaults to the padded ``image_size``. Options with no counterpart raise ConfigError."""
    c = complete_options(options)
    for name, supported, fix in (
        ("attention", c["attention"] == "full", "full"),
        ("weight_standardized", not c["weight_standardized"], "false"),
        ("resample_with_conv", c["resample_with_conv"], "true"),
        ("time_embedding", c["time_embedding"] == "sinusoidal", "sinusoidal"),
    ):
        if not supported:
            raise ConfigError(f"model.{name}={c[name]!r} has no counterpart in diffusers' UNet2DModel: "
                              f"train with model.{name}={fix} to use diffusers")
    resolutions = level_resolutions(c["image_size"], len(c["channel_mults"]), c["attention_resolutions"])
    channels = [c["base_channels"] * m for m in c["channel_mults"]]
    attention = [r in c["attention_resolutions"] for r in resolutions]
    attended = [ch for ch, a in zip(channels, attention) if a] + [channels[-1]]
    if c["num_heads"] != 1 and len(set(attended)) != 1:
        raise ConfigError(f"model.num_heads={c['num_heads']} over attention layers of {sorted(set(attended))} "
                          "channels has no counterpart in diffusers' UNet2DModel (one head width for all): "
                          "use num_heads=1")
    groups = group_count(c)
    return dict(
        sample_size=resolutions[0] if sample_size is None else sample_size,
        in_channels=c["in_channels"],
        out_channels=c["out_channels"],
        block_out_channels=tuple(channels),
        layers_per_block=c["num_res_blocks"],
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        dropout=c["dropout"],
        attention_head_dim=None if c["num_heads"] == 1 else attended[0] // c["num_heads"],
        norm_num_groups=groups,
        attn_norm_num_groups=groups,
        norm_eps=c["norm_eps"],
        resnet_time_scale_shift="scale_shift" if c["scale_shift_norm"] else "default",
        num_class_embeds=None if c["num_classes"] is None else c["num_classes"] + 1,
        freq_shift=c["freq_shift"],
        flip_sin_to_cos=c["flip_sin_to_cos"],
        downsample_padding=c["downsample_padding"],
    )


def check_group_counts(model: UNet) -> int:
    """The group count shared by every GroupNorm of ``model``; ConfigError when they differ
    (the native U-Net lowers ``num_groups`` per channel count, ``UNet2DModel`` cannot)."""
    counts = {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    if len(counts) != 1:
        raise ConfigError(f"model.num_groups={model.config['num_groups']} gives GroupNorms of {sorted(counts)} groups "
                          "(lowered to divide each channel count); diffusers' UNet2DModel has one count: "
                          "train with a num_groups that divides every channel count")
    return counts.pop()


#: ``UNet2DModel`` settings the native U-Net reproduces, each with the value(s) it needs
_FIXED = {"act_fn": ("silu",), "time_embedding_type": ("positional",), "center_input_sample": (False,),
          "mid_block_type": ("UNetMidBlock2D",), "downsample_type": ("conv",), "upsample_type": ("conv",),
          "add_attention": (True,), "class_embed_type": (None,), "mid_block_scale_factor": (1, 1.0),
          "resnet_time_scale_shift": ("default", "scale_shift")}
_MAPPED = {"sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
           "down_block_types", "up_block_types", "dropout", "attention_head_dim", "norm_num_groups",
           "attn_norm_num_groups", "norm_eps", "num_class_embeds", "freq_shift", "flip_sin_to_cos",
           "downsample_padding", "time_embedding_dim", "num_train_timesteps"}


def _unsupported(name: str, value, fix: str = "it runs as a diffusers network (model.kind=diffusers)") -> ConfigError:
    return ConfigError(f"UNet2DModel setting {name}={value!r} has no counterpart in the native U-Net: {fix}")


def native_options(config: dict) -> dict:
    """Native U-Net options (without ``in_channels`` checks) equal to a ``UNet2DModel`` ``config``
    (``model.config``); ConfigError naming the first setting that does not map."""
    from diffusers import UNet2DModel

    defaults = {k: p.default for k, p in inspect.signature(UNet2DModel.__init__).parameters.items() if k != "self"}
    for name, value in config.items():
        if name.startswith("_") or name in _MAPPED:
            continue
        if name in _FIXED:
            if value not in _FIXED[name]:
                raise _unsupported(name, value)
        elif name in defaults and value != defaults[name]:
            raise _unsupported(name, value)
    channels = list(config["block_out_channels"])
    base = channels[0]
    if any(ch % base for ch in channels):
        raise _unsupported("block_out_channels", channels)
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    known = {"DownBlock2D", "AttnDownBlock2D"}
    if len(down) != len(channels) or not set(down) <= known:
        raise _unsupported("down_block_types", down)
    mirrored = ["AttnUpBlock2D" if d == "AttnDownBlock2D" else "UpBlock2D" for d in reversed(down)]
    if up != mirrored:
        raise _unsupported("up_block_types", up)
    if config.get("time_embedding_dim") not in (None, 4 * base):
        raise _unsupported("time_embedding_dim", config["time_embedding_dim"])
    groups = config["norm_num_groups"]
    attn_groups = config.get("attn_norm_num_groups")
    if attn_groups is None and config["resnet_time_scale_shift"] != "default":
        raise _unsupported("attn_norm_num_groups", None, "its middle attention has no GroupNorm")
    if attn_groups not in (None, groups):
        raise _unsupported("attn_norm_num_groups", attn_groups)
    attention = [d == "AttnDownBlock2D" for d in down]
    head_dim = config.get("attention_head_dim")
    attended = [ch for ch, a in zip(channels, attention) if a] + [channels[-1]]
    heads = {1} if head_dim is None else {ch // head_dim for ch in attended}
    if len(heads) != 1 or (head_dim is not None and any(ch % head_dim for ch in attended)):
        raise _unsupported("attention_head_dim", head_dim)
    size = config["sample_size"]
    side = size if isinstance(size, int) else min(size)  # attention levels count the shorter side
    multiple = 2 ** (len(channels) - 1)
    resolutions = [math.ceil(side / multiple) * multiple // 2**i for i in range(len(channels))]
    num_classes = config.get("num_class_embeds")
    return dict(
        out_channels=config["out_channels"], base_channels=base, channel_mults=tuple(ch // base for ch in channels),
        num_res_blocks=config["layers_per_block"],
        attention_resolutions=tuple(r for r, a in zip(resolutions, attention) if a), image_size=side,
        dropout=float(config.get("dropout", 0.0)), attention="full", weight_standardized=False,
        num_heads=heads.pop(), num_groups=groups, num_classes=None if num_classes is None else num_classes - 1,
        resample_with_conv=True, scale_shift_norm=config["resnet_time_scale_shift"] == "scale_shift",
        norm_eps=float(config["norm_eps"]), freq_shift=float(config["freq_shift"]),
        flip_sin_to_cos=bool(config["flip_sin_to_cos"]), downsample_padding=int(config["downsample_padding"]),
        time_embedding="sinusoidal",
    )
