"""ViL layer and block: shapes, the specified initialisation, causality per scan direction, backend parity."""

from __future__ import annotations

import pytest
import torch

from MedSegEfficientLib.networks.mlstm.vil import HeadwiseLinear, ViLBlock, ViLLayer


def test_shapes_and_initialisation():
    torch.manual_seed(0)
    layer = ViLLayer(dim=16)
    assert layer(torch.randn(2, 30, 16)).shape == (2, 30, 16)
    assert torch.allclose(layer.fgate.bias, torch.linspace(3, 6, 4))
    assert not layer.fgate.weight.any() and not layer.igate.weight.any()
    assert torch.equal(layer.learnable_skip, torch.ones(32)) and not layer.outnorm.weight.any()
    assert layer.q_proj.weight.shape == (8, 4, 4)  # E / 4 blocks of 4 x 4


def test_headwise_linear_is_block_diagonal():
    torch.manual_seed(0)
    projection = HeadwiseLinear(8, block=4)
    torch.nn.init.normal_(projection.weight)
    dense = torch.block_diag(*projection.weight)  # (8, 8): output rows, input columns
    x = torch.randn(5, 8)
    assert torch.allclose(projection(x), x @ dense.T, atol=1e-6)


@pytest.mark.parametrize("reverse", [False, True])
def test_each_direction_only_reads_its_own_side(reverse):
    torch.manual_seed(0)
    layer = ViLLayer(dim=8, reverse=reverse)
    for parameter in (layer.igate.weight, layer.fgate.weight):  # make the gates depend on the input
        torch.nn.init.normal_(parameter, std=0.5)
    x = torch.randn(1, 20, 8)
    changed = x.clone()
    changed[:, 10] += 1.0
    difference = (layer(changed) - layer(x)).abs().sum(-1)[0]
    untouched = difference[:10] if not reverse else difference[11:]
    touched = difference[10:] if not reverse else difference[:11]
    # Rounding only on the unread side (the chunk's reference maximum may move), a real change on the other.
    assert untouched.max() < 1e-5 and touched.min() > 1e-2


def test_backends_agree_in_a_block():
    torch.manual_seed(0)
    block = ViLBlock(dim=16, backend="chunkwise")
    x = torch.randn(2, 150, 16)
    chunkwise = block(x)
    block.layer.backend = "parallel"
    assert torch.allclose(chunkwise, block(x), atol=1e-4)
