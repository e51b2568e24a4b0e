"""The CUDA graph wrapper's eager paths, which are all that a CPU can run (the graph path is checked on the GPU
by benchmarks/cuda_graph_check.py, figures in experiments/benchmarks-log.md)."""

from __future__ import annotations

import numpy as np
import torch

from MedSegEfficientLib.model.weights import LoadedModel, build_from_card
from MedSegEfficientLib.inference.gpu.cuda_graphs import GraphedForward
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.preprocessing import ModelGrid
from models_for_tests import threshold_card
from phantoms import make_phantom


def test_cpu_tensors_run_eagerly_and_nothing_is_captured():
    calls = []

    def forward(tiles):
        calls.append(tiles.shape)
        return tiles * 2

    graphed = GraphedForward(forward)
    out = graphed(torch.ones(2, 1, 4, 4, 4))
    assert torch.equal(out, torch.full((2, 1, 4, 4, 4), 2.0)) and graphed.graph is None and len(calls) == 1


def _wants(spatial_dims: int, option, slices: int = 40, batch: int = 8, device: str = "cuda") -> bool:
    card = threshold_card(spatial_dims)
    segmenter = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu", cuda_graphs=option))
    segmenter.device = torch.device(device)  # the decision only; nothing runs
    grid = ModelGrid(np.zeros((1, slices, 8, 8), np.float32), geometry=None)
    return segmenter._graphs_wanted(grid, batch)


def test_graphs_are_wanted_for_2d_batches_by_default_and_for_3d_tiles_on_request():
    assert _wants(2, None) and _wants(2, True) and not _wants(2, False)
    assert not _wants(2, None, slices=31, batch=8)  # under 4 batches: the capture would not pay
    assert _wants(2, True, slices=31, batch=8)
    assert not _wants(3, None) and _wants(3, True) and not _wants(3, False)
    assert not _wants(2, None, device="cpu") and not _wants(3, True, device="cpu")


def test_a_cpu_run_captures_nothing_and_reports_nothing():
    card = threshold_card(3)
    segmenter = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu", cuda_graphs=True))
    image, _ = make_phantom(shape=(20, 24, 24))
    assert segmenter.segment(image).report.notices == []
