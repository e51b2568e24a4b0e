"""nnU-Net v2's own architectures, PlainConvUNet and ResidualEncoderUNet from dynamic_network_architectures, built
from a plans.json architecture entry, so that trained nnU-Net models (TotalSegmentator's among them) run through
our engine with their weights as saved.

The plans name torch classes by dotted path (``torch.nn.modules.conv.Conv3d``); they are looked up in a fixed
table, never imported by name, and the topology's sizes are bounded before anything is allocated.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from MedSegEfficientLib.errors import NetworkConfigError
from MedSegEfficientLib.networks.registry import NetworkSpec, register_network

ARCHITECTURES = ("PlainConvUNet", "ResidualEncoderUNet")
_OPERATIONS = {name: getattr(nn, name) for name in (
    "Conv2d", "Conv3d", "InstanceNorm2d", "InstanceNorm3d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "LayerNorm",
    "Dropout", "Dropout2d", "Dropout3d", "LeakyReLU", "ReLU", "PReLU", "ELU", "GELU", "SiLU")}
_OPERATION_KEYS = ("conv_op", "norm_op", "dropout_op", "nonlin")
_MAX_STAGES, _MAX_FEATURES, _MAX_KERNEL = 12, 4096, 9


def operation(path: Any) -> type[nn.Module] | None:
    """A torch class from its dotted name in plans.json, from the fixed table only."""
    if path is None:
        return None
    name = str(path).rsplit(".", 1)[-1]
    if name not in _OPERATIONS:
        raise NetworkConfigError(f"nnU-Net operation '{path}' is not one this importer knows "
                                 f"({', '.join(sorted(_OPERATIONS))})")
    return _OPERATIONS[name]


def check_topology(arch_kwargs: dict[str, Any]) -> None:
    stages = arch_kwargs.get("n_stages")
    if not isinstance(stages, int) or not 1 <= stages <= _MAX_STAGES:
        raise NetworkConfigError(f"nnU-Net n_stages must be 1..{_MAX_STAGES}, not {stages!r}")
    features = arch_kwargs.get("features_per_stage")
    if not isinstance(features, list) or len(features) != stages or \
            not all(isinstance(f, int) and 1 <= f <= _MAX_FEATURES for f in features):
        raise NetworkConfigError(f"nnU-Net features_per_stage must list {stages} widths of 1..{_MAX_FEATURES}")
    for key in ("kernel_sizes", "strides"):
        sizes = arch_kwargs.get(key)
        flat = [s for entry in (sizes or []) for s in (entry if isinstance(entry, list) else [entry])]
        if not isinstance(sizes, list) or len(sizes) != stages or \
                not all(isinstance(s, int) and 1 <= s <= _MAX_KERNEL for s in flat):
            raise NetworkConfigError(f"nnU-Net {key} must list {stages} entries of 1..{_MAX_KERNEL}")


def _build(spatial_dims: int, in_channels: int, out_channels: int, architecture: str,
           arch_kwargs: dict[str, Any]) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise NetworkConfigError(f"nnU-Net architecture '{architecture}': {' or '.join(ARCHITECTURES)} import")
    try:
        from dynamic_network_architectures.architectures import unet
    except ImportError:
        raise NetworkConfigError("imported nnU-Net models need dynamic_network_architectures "
                                 "(pip install --no-deps dynamic_network_architectures==0.4.4 einops==0.8.2)") from None
    check_topology(arch_kwargs)
    kwargs = {key: value for key, value in arch_kwargs.items() if not key.startswith("_")}
    for key in _OPERATION_KEYS:
        kwargs[key] = operation(kwargs.get(key))
    expected = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    if kwargs["conv_op"] is not expected:
        raise NetworkConfigError(f"nnU-Net conv_op {kwargs['conv_op'].__name__} does not fit a {spatial_dims}D model")
    kwargs.pop("deep_supervision", None)
    try:
        return getattr(unet, architecture)(input_channels=in_channels, num_classes=out_channels,
                                           deep_supervision=False, **kwargs)
    except TypeError as error:
        raise NetworkConfigError(f"nnU-Net {architecture} arguments: {error}") from None


register_network(NetworkSpec(
    name="nnunet_v2", builder=_build, spatial_dims=(2, 3),
    description="a trained nnU-Net v2 model's own PlainConvUNet or ResidualEncoderUNet (needs "
                "dynamic_network_architectures)",
))

__all__ = ["ARCHITECTURES", "check_topology", "operation"]
