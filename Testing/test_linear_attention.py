"""The gated linear attention of MLLA-UNet and HRMedSeg: equal to its quadratic form, RoPE for any grid."""

from __future__ import annotations

import math

import pytest
import torch
from MedSegEfficientLib.networks.linear_attention.attention import LinearAttention, quadratic_reference
from MedSegEfficientLib.networks.rope import apply_rope, rope_rotations


@pytest.mark.parametrize("bottleneck, height, width", [(None, 8, 8), (None, 12, 20), (8, 16, 8)])
def test_linear_form_equals_the_quadratic_form(bottleneck, height, width):
    torch.manual_seed(0)
    attention = LinearAttention(32, heads=4, value_bottleneck=bottleneck)
    x = torch.randn(2, height * width, 32)
    torch.testing.assert_close(attention(x, height, width), quadratic_reference(attention, x, height, width),
                               atol=1e-5, rtol=1e-4)


def test_rope_is_computed_for_any_grid_and_matches_the_rotation_formula():
    height, width, channels = 5, 7, 8
    rotations = rope_rotations(height, width, channels)
    assert rotations.shape == (height, width, channels // 2, 2)
    # pair p < C/4 turns by row * theta_p, the rest by column * theta_(p - C/4); theta_p = 10000^(-p / (C/4))
    row, col = 3, 6
    for pair in range(channels // 2):
        axis, index = (row, pair) if pair < channels // 4 else (col, pair - channels // 4)
        angle = axis * 10000 ** (-index / (channels // 4))
        assert rotations[row, col, pair].tolist() == pytest.approx([math.cos(angle), math.sin(angle)], abs=1e-6)


def test_rope_makes_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)

    def score(qpos, kpos):  # q at qpos and k at kpos on a 9 x 9 grid
        grid_q = torch.zeros(1, 81, 8)
        grid_k = torch.zeros(1, 81, 8)
        grid_q[0, qpos[0] * 9 + qpos[1]] = q
        grid_k[0, kpos[0] * 9 + kpos[1]] = k
        return (apply_rope(grid_q, 9, 9)[0, qpos[0] * 9 + qpos[1]] * apply_rope(grid_k, 9, 9)[0, kpos[0] * 9 + kpos[1]]).sum()

    assert score((1, 2), (3, 3)) == pytest.approx(float(score((4, 5), (6, 6))), abs=1e-5)
    assert score((1, 2), (3, 3)) != pytest.approx(float(score((1, 2), (3, 4))), abs=1e-3)


def test_gradients_flow_through_every_parameter():
    attention = LinearAttention(16, heads=2, value_bottleneck=4)
    attention(torch.randn(1, 36, 16), 6, 6).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in attention.parameters())
