"""Label batches collected into one host array (the CUDA path's pinned double buffer is exercised on the device by
benchmarks/engine_overhead.py, which checks the engine's labels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from MedSegEfficientLib.inference.gpu.label_download import HostLabels


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32])
def test_batches_land_at_their_offsets_in_a_numpy_array(dtype):
    expected = torch.randint(0, 200, (7, 3, 4)).to(dtype)
    with torch.inference_mode(), HostLabels((7, 3, 4), dtype, torch.device("cpu"), batch=3) as labels:
        for start in (6, 0, 3):  # any order; the last batch is short
            labels.put(start, expected[start:start + 3])
        result = labels.finish()
    assert isinstance(result, np.ndarray) and result.dtype == expected.numpy().dtype
    np.testing.assert_array_equal(result, expected.numpy())


def test_labels_are_copied_not_shared():
    source = torch.ones(2, 2, 2, dtype=torch.uint8)
    with HostLabels((2, 2, 2), torch.uint8, torch.device("cpu"), batch=2) as labels:
        labels.put(0, source)
        source.zero_()  # the network's next batch may reuse the memory
        assert labels.finish().min() == 1
