"""MONAI's UNet, SegResNet and SwinUNETR, 2D and 3D: the baselines users know."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from MedSegEfficientLib.networks.registry import NetworkSpec, register_network


def _build_unet(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    from monai.networks.nets import UNet

    kwargs.setdefault("strides", [2] * (len(kwargs["channels"]) - 1))
    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


def _build_segresnet(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


def _build_swinunetr(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


register_network(NetworkSpec(
    name="monai_unet", builder=_build_unet, spatial_dims=(2, 3), default_preset="default",
    description="MONAI residual UNet",
    presets={
        "tiny": {"channels": [8, 16, 32, 64], "num_res_units": 1},
        "small": {"channels": [16, 32, 64, 128, 256], "num_res_units": 1},
        "default": {"channels": [32, 64, 128, 256, 320], "num_res_units": 2},
    },
))
register_network(NetworkSpec(
    name="monai_segresnet", builder=_build_segresnet, spatial_dims=(2, 3), default_preset="default",
    description="MONAI SegResNet",
    presets={
        "small": {"init_filters": 8, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]},
        "default": {"init_filters": 32, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]},
    },
))
register_network(NetworkSpec(
    name="monai_swinunetr", builder=_build_swinunetr, spatial_dims=(2, 3), default_preset="default",
    description="MONAI SwinUNETR (input sides divisible by 32)",
    presets={
        "small": {"feature_size": 24},
        "default": {"feature_size": 48},
    },
))
