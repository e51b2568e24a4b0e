"""nnU-Net's default 3d_fullres and 2d topologies (PlainConvUNet from dynamic_network_architectures) as peers.

Only for comparison in benchmarks and for users who bring such weights; the package is an optional dependency
(``pip install --no-deps dynamic_network_architectures==0.4.4 einops==0.8.2``: the README says why no deps).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from MedSegEfficientLib.errors import NetworkConfigError
from MedSegEfficientLib.networks.registry import NetworkSpec, register_network


def _build_plain_unet(spatial_dims: int, in_channels: int, out_channels: int, features: list[int],
                      deep_supervision: bool = False) -> nn.Module:
    try:
        from dynamic_network_architectures.architectures.unet import PlainConvUNet
    except ImportError:
        raise NetworkConfigError("nnU-Net topologies need the optional package dynamic_network_architectures "
                                 "(pip install --no-deps dynamic_network_architectures==0.4.4 einops==0.8.2)") from None
    import torch.nn as tnn

    stages = len(features)
    conv = tnn.Conv3d if spatial_dims == 3 else tnn.Conv2d
    norm = tnn.InstanceNorm3d if spatial_dims == 3 else tnn.InstanceNorm2d
    return PlainConvUNet(
        input_channels=in_channels, n_stages=stages, features_per_stage=features, conv_op=conv,
        kernel_sizes=[3] * stages, strides=[1] + [2] * (stages - 1), n_conv_per_stage=[2] * stages,
        num_classes=out_channels, n_conv_per_stage_decoder=[2] * (stages - 1), conv_bias=True, norm_op=norm,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=tnn.LeakyReLU, nonlin_kwargs={"inplace": True},
        deep_supervision=deep_supervision,
    )


_PRESETS: dict[str, dict[str, Any]] = {
    # 6 stages 32-320, 128^3 patches: the default plan for a CT at ~1 mm.
    "3d_fullres": {"features": [32, 64, 128, 256, 320, 320]},
    # 8 stages 32-512, 512^2 slices: the default 2d plan for a 512x512 CT.
    "2d": {"features": [32, 64, 128, 256, 512, 512, 512, 512]},
}

register_network(NetworkSpec(
    name="nnunet_plain", builder=_build_plain_unet, spatial_dims=(2, 3), presets=_PRESETS,
    default_preset="3d_fullres", preset_dims={"3d_fullres": 3, "2d": 2},
    description="nnU-Net default PlainConvUNet topologies (peer; needs dynamic_network_architectures)",
))
