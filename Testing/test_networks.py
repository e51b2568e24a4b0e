"""Network registry: baselines build in 2D and 3D from name + preset + arguments; clear errors otherwise."""

from __future__ import annotations

import pytest
import torch

from MedSegEfficientLib.errors import NetworkConfigError
from MedSegEfficientLib.networks import available_networks, build_network, get_network_spec
from MedSegEfficientLib.networks.cost import count_parameters, measure_cost, parse_shape


@pytest.mark.parametrize("name", ["monai_unet", "monai_segresnet", "monai_swinunetr"])
@pytest.mark.parametrize("dims", [2, 3])
def test_baselines_build_and_run(name, dims):
    network = build_network(name, dims, in_channels=2, out_channels=4, preset="small").eval()
    side = 64 if name == "monai_swinunetr" else 32  # SwinUNETR halves five times and needs 2+ voxels left
    with torch.inference_mode():
        output = network(torch.zeros((1, 2) + (side,) * dims))
    assert output.shape == (1, 4) + (side,) * dims


def test_arguments_override_the_preset():
    small = build_network("monai_unet", 3, 1, 2, preset="tiny")
    wider = build_network("monai_unet", 3, 1, 2, preset="tiny", args={"channels": [16, 32, 64, 128]})
    assert count_parameters(wider) > count_parameters(small)


def test_unknown_names_presets_and_arguments_are_clear():
    with pytest.raises(NetworkConfigError, match="unknown network 'nope'"):
        build_network("nope", 3, 1, 2)
    with pytest.raises(NetworkConfigError, match="has no preset 'huge'"):
        build_network("monai_unet", 3, 1, 2, preset="huge")
    with pytest.raises(NetworkConfigError, match="rejected its arguments"):
        build_network("monai_unet", 3, 1, 2, preset="tiny", args={"no_such_argument": 1})


def test_nnunet_default_topologies_have_nnunets_parameter_counts():
    pytest.importorskip("dynamic_network_architectures")
    full = build_network("nnunet_plain", 3, 1, 14, preset="3d_fullres")
    flat = build_network("nnunet_plain", 2, 1, 14, preset="2d")
    assert count_parameters(full) == pytest.approx(31.2e6, rel=0.01)
    assert count_parameters(flat) == pytest.approx(46.4e6, rel=0.01)
    assert get_network_spec("nnunet_plain").dims_for("2d") == 2


def test_mac_counter_on_a_single_convolution():
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    cost = measure_cost(conv, (1, 3, 20, 10))
    assert cost.macs == 8 * 3 * 9 * 20 * 10 and cost.parameters == 8 * 3 * 9


def test_shape_parsing():
    assert parse_shape("1x3x256x256") == (1, 3, 256, 256)
    for bad, message in (("256x256", "needs batch, channels"), ("abc", "BATCHxCHANNELS"), ("1x1x0x4x4", "each 1"),
                         ("1x1x5000x5000x5000", "more than the")):
        with pytest.raises(NetworkConfigError, match=message):
            parse_shape(bad)


def test_arguments_from_a_file_cannot_make_a_terabyte_network():
    with pytest.raises(NetworkConfigError, match="would have .* parameters"):
        build_network("monai_unet", 3, 1, 5, args={"channels": [100000, 100000], "strides": [2]})


def test_registry_lists_dimensions_and_presets():
    names = {spec.name: spec for spec in available_networks()}
    assert names["monai_unet"].spatial_dims == (2, 3) and "small" in names["monai_unet"].presets
