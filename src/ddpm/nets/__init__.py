"""Noise-prediction networks: ``model(x_t, t, y=None) -> same shape as x_t``.

Networks know nothing of the diffusion process; :func:`build_model` makes the one a
:class:`~ddpm.config.ModelConfig` describes for data of a given shape.
"""

from ..errors import ConfigError
from .mlp import MLP

__all__ = ["MLP", "build_model"]

_UNET_FIELDS = ("base_channels", "channel_mults", "num_res_blocks", "attention_resolutions", "dropout",
                "attention", "weight_standardized", "scale_shift_norm", "num_heads", "num_groups", "norm_eps",
                "freq_shift", "flip_sin_to_cos", "downsample_padding")


def build_model(model_cfg, data_shape, num_classes: int = 0, output_factor: int = 1):
    """The network for examples of ``data_shape`` ((D,) vectors or (C, H, W) images), with
    ``output_factor`` outputs per input value (2 when it also predicts a variance).

    ``model.attention_resolutions`` count feature-map sides of this data, and for H != W the
    shorter side: 32x48 images with attention at 16 attend on the 16x24 maps. (A preset's own
    resolutions refer to its own image size: they pick the same levels at any input size.)"""
    classes = num_classes if model_cfg.class_conditional else None
    if model_cfg.class_conditional and not num_classes:
        raise ConfigError("model.class_conditional needs a data set with class labels")
    if model_cfg.kind == "mlp":
        if len(data_shape) != 1:
            raise ConfigError(f"the MLP takes vectors, the data has shape {tuple(data_shape)}: use --set model.kind=unet")
        return MLP(data_shape[0], model_cfg.width, model_cfg.depth, model_cfg.time_dim, classes,
                   out_dim=data_shape[0] * output_factor, time_embedding=model_cfg.time_embedding)
    if model_cfg.kind in ("unet", "diffusers"):
        if len(data_shape) != 3:
            raise ConfigError(f"the U-Net takes images, the data has shape {tuple(data_shape)}: use --set model.kind=mlp")
        if model_cfg.kind == "diffusers" and model_cfg.unet2d_config:
            from .diffusers_unet import DiffusersUNet

            return DiffusersUNet(model_cfg.unet2d_config)
        from .unet import UNET_PRESETS, build_unet

        if model_cfg.unet not in UNET_PRESETS:
            raise ConfigError(f"unknown U-Net preset {model_cfg.unet!r}: choose one of {', '.join(UNET_PRESETS)}")
        overrides = {k: getattr(model_cfg, k) for k in _UNET_FIELDS if getattr(model_cfg, k) is not None}
        for key in ("channel_mults", "attention_resolutions"):
            if key in overrides:
                overrides[key] = tuple(overrides[key])
        if "attention_resolutions" in overrides:  # given for this data's own size: its shorter side
            overrides["image_size"] = min(data_shape[1:])
        if classes:
            overrides["num_classes"] = classes
        overrides["out_channels"] = data_shape[0] * output_factor
        overrides["time_embedding"] = model_cfg.time_embedding
        if model_cfg.kind == "unet":
            return build_unet(model_cfg.unet, data_shape[0], **overrides)
        from .diffusers_unet import DiffusersUNet

        return DiffusersUNet(in_channels=data_shape[0], **{**UNET_PRESETS[model_cfg.unet], **overrides})
    raise ConfigError(f"unknown model kind {model_cfg.kind!r}: choose one of mlp, unet, diffusers")
