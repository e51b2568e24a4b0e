"""Our sliding window against MONAI's: same tiles, same weights, exact blending."""

from __future__ import annotations

import pytest
import torch

from MedSegEfficientLib.inference.sliding_window import count_batches, gaussian_weights, sliding_window, tile_origins


def test_tiles_match_monai():
    from monai.inferers import sliding_window_inference

    starts: list[tuple[int, ...]] = []

    def record(tiles):
        starts.append(tiles.shape[0])
        return tiles

    sliding_window_inference(torch.zeros(1, 1, 50, 37, 70), (16, 16, 16), 3, record, overlap=0.5)
    assert len(tile_origins((50, 37, 70), (16, 16, 16), 0.5)) == sum(starts)
    assert count_batches((50, 37, 70), (16, 16, 16), 0.5, 3) == len(starts)


def test_gaussian_weights_match_monai():
    from monai.data.utils import compute_importance_map

    # MONAI truncates its discrete kernel, which shows on tiny tiles; at real tile sizes the maps agree closely.
    for roi in [(96, 96, 96), (64, 48, 80)]:
        ours = gaussian_weights(roi, torch.device("cpu"))
        theirs = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125)
        assert torch.allclose(ours, theirs.float(), atol=0.01), roi


@pytest.mark.parametrize("shape", [(1, 2, 50, 37, 70), (1, 1, 9, 40, 12)])
def test_pointwise_predictor_is_reproduced_exactly(shape):
    """Whatever the weights, blending a pointwise function must give that function everywhere (padding included)."""
    image = torch.randn(shape)

    def predictor(tiles):
        return torch.cat([tiles.sum(1, keepdim=True) * 2 + 1, tiles[:, :1] ** 2], dim=1)

    batches = []
    blended = sliding_window(image, (16, 16, 16), 4, predictor, overlap=0.5, on_batch=lambda: batches.append(1))
    assert blended.shape == (1, 2, *shape[2:])
    assert torch.allclose(blended, predictor(image), atol=1e-5)
    assert len(batches) == count_batches(shape[2:], (16, 16, 16), 0.5, 4)


def test_convolution_agrees_with_monai_inside_the_volume():
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 3, 3, padding=1)
    image = torch.randn(1, 1, 80, 72, 88)
    with torch.no_grad():
        ours = sliding_window(image, (48, 48, 48), 4, conv, overlap=0.5)
        theirs = sliding_window_inference(image, (48, 48, 48), 4, conv, overlap=0.5, mode="gaussian")
    assert torch.allclose(ours, theirs, atol=0.01)


def test_float16_blending_agrees_with_float32_to_half_precision():
    torch.manual_seed(0)
    image = torch.randn(1, 1, 40, 33, 50) * 5

    def predictor(tiles):
        return torch.cat([tiles, -tiles, tiles.abs()], dim=1)

    full = sliding_window(image, (16, 16, 16), 4, predictor, overlap=0.5)
    half = sliding_window(image, (16, 16, 16), 4, predictor, overlap=0.5, dtype=torch.float16)
    assert half.dtype == torch.float16 and full.dtype == torch.float32
    assert torch.allclose(half.float(), full, rtol=1e-2, atol=2e-2)  # float16 sums: ~0.1-1 % relative
    assert torch.equal(half.float().argmax(1)[full.max(1).values - full.median(1).values > 0.1],
                       full.argmax(1)[full.max(1).values - full.median(1).values > 0.1])
