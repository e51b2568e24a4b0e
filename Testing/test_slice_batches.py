"""Slices of a (C, k, j, i) volume in batches, in the order and layout the 2D engine needs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from MedSegEfficientLib.inference.gpu.slice_staging import slice_batches, stage, staging_buffer


@pytest.mark.parametrize("axis", [1, 2, 3])
def test_batches_cover_every_slice_once_in_order(axis):
    array = np.random.default_rng(0).normal(size=(2, 7, 5, 6)).astype(np.float32)
    batches = list(slice_batches(array, axis, 3, torch.device("cpu")))
    assert [start for start, _ in batches] == list(range(0, array.shape[axis], 3))
    assert all(slices.is_contiguous() for _, slices in batches)
    joined = torch.cat([slices for _, slices in batches]).numpy()
    np.testing.assert_array_equal(joined, np.moveaxis(array, axis, 0))


def test_staging_puts_slices_first_into_the_reused_buffer():
    source = torch.arange(3 * 5 * 2 * 4, dtype=torch.float32).reshape(3, 5, 2, 4)
    buffer = staging_buffer(source, 2, torch.float32, pinned=False)
    assert buffer.shape == (2, 3, 2, 4)
    for start in (0, 2, 4):  # the last batch holds one slice
        staged = stage(source, start, 2, buffer)
        assert staged.data_ptr() == buffer.data_ptr() and staged.is_contiguous()
        torch.testing.assert_close(staged, source[:, start:start + 2].transpose(0, 1))


def test_slices_can_arrive_in_half_precision():
    array = np.random.default_rng(1).normal(size=(1, 4, 3, 3)).astype(np.float32)
    for axis in (1, 3):
        (_, slices), = slice_batches(array, axis, 8, torch.device("cpu"), torch.float16)
        assert slices.dtype == torch.float16
        np.testing.assert_array_equal(slices.numpy(), np.moveaxis(array, axis, 0).astype(np.float16))
    source = torch.from_numpy(array)
    staged = stage(source, 1, 2, staging_buffer(source, 2, torch.float16, pinned=False))
    assert staged.dtype == torch.float16 and torch.equal(staged, source[:, 1:3].transpose(0, 1).half())
