"""The CUDA graph wrapper's eager paths, which are all that a CPU can run (the graph path is checked on the GPU
by benchmarks/cuda_graph_check.py, figures in docs/benchmarks.md)."""

from __future__ import annotations

import torch

from MedSegEfficientLib.checkpoint import LoadedModel, build_from_card
from MedSegEfficientLib.cuda_graphs import GraphedForward
from MedSegEfficientLib.engine import SegmentOptions, Segmenter
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


def test_the_engine_wants_graphs_only_for_3d_tiles_on_cuda():
    card = threshold_card(3)
    segmenter = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu", cuda_graphs=True))
    assert not segmenter._graphs_wanted()
    image, _ = make_phantom(shape=(20, 24, 24))
    assert segmenter.segment(image).report.notices == []
