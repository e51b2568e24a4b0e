"""TokenSeg: shapes, top-K selection for any K and size, sparse refinement equal to dense, VQ losses and the
straight-through gradient, dead codes, boundary targets, a phantom training run and the engine."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from MedSegEfficientLib.model.card import LabelInfo, ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.weights import LoadedModel, build_from_card
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.networks import build_network
from MedSegEfficientLib.networks.tokenseg.sparse_refinement import CELL, RefinementHead, add_to_cells
from MedSegEfficientLib.networks.tokenseg.network import TokenSeg
from MedSegEfficientLib.networks.tokenseg.vector_quantizer import VectorQuantizer
from phantoms import make_phantom, train_on_phantom

SMALL = {"widths": [8, 16, 16, 32], "token_dim": 32, "codes": 64, "code_dim": 8, "heads": 2, "refine_widths": [8, 4]}


def small_tokenseg(keep, in_channels=1, classes=3, seed=0) -> TokenSeg:
    torch.manual_seed(seed)
    return build_network("tokenseg", 3, in_channels, classes, args={**SMALL, "keep": keep})


@pytest.mark.parametrize("shape, classes", [((2, 1, 32, 48, 64), 3), ((1, 2, 32, 16, 32), 5), ((1, 1, 80, 32, 48), 2)])
def test_any_channels_classes_and_size(shape, classes):
    network = small_tokenseg(keep=10, in_channels=shape[1], classes=classes).eval()
    with torch.inference_mode():
        assert network(torch.randn(shape)).shape == (shape[0], classes, *shape[2:])
    network.train()
    full, coarse = network(torch.randn(shape))  # deep supervision: full resolution first, then quarter
    assert full.shape[2:] == shape[2:] and coarse.shape[2:] == tuple(s // 4 for s in shape[2:])


def test_sizes_the_cells_cannot_tile_are_refused():
    with pytest.raises(ValueError, match="divisible by 16"):
        small_tokenseg(keep=5)(torch.randn(1, 1, 24, 32, 32))


def test_candidate_tokens_cover_four_levels():
    network = small_tokenseg(keep=100).eval()
    with torch.inference_mode():
        network(torch.randn(1, 1, 128, 128, 128))
    # 8^3 cells of each level's own voxels: 16, 32, 64 and 128 input voxels per cell edge
    assert network._last["grids"] == [(8, 8, 8), (4, 4, 4), (2, 2, 2), (1, 1, 1)]


@pytest.mark.parametrize("keep", [0, 1, 7, 72, 500])
def test_top_k_keeps_the_highest_scores_and_refines_only_their_finest_cells(keep):
    network = small_tokenseg(keep=keep).train()  # train mode returns the coarse logits too (no dropout anywhere)
    image = torch.randn(2, 1, 32, 48, 64)
    with torch.no_grad():
        logits, coarse = network(image)
    scores, selected = network._last["scores"], network._last["selected"]
    candidates = scores.shape[1]  # 2*3*4 + 1*2*2 + 1*1*1 + 1 = 30
    assert candidates == 30 and selected.shape == (2, min(keep, candidates))
    for row in range(2):
        unselected = torch.ones(candidates, dtype=torch.bool)
        unselected[selected[row]] = False
        if 0 < keep < candidates:
            assert scores[row, selected[row]].min() >= scores[row, unselected].max()
        assert selected[row].unique().numel() == selected.shape[1]
    changed = (logits - F.interpolate(coarse, size=image.shape[2:], mode="trilinear")).abs() > 0
    per_cell = changed.view(2, 3, 2, CELL, 3, CELL, 4, CELL).any(dim=(1, 3, 5, 7)).flatten(1)  # finest cells
    expected = torch.zeros(2, 24, dtype=torch.bool)
    for row in range(2):
        finest = selected[row][selected[row] < 24]
        expected[row, finest] = True
    assert torch.equal(per_cell, expected)


@pytest.mark.parametrize("keep", [0, 7, 72, 500])
def test_the_cuda_graph_path_gives_the_same_logits(keep):
    """The fixed-count refinement (no host synchronisation, for CUDA graphs) equals the default one."""
    network = small_tokenseg(keep=keep).eval()
    image = torch.randn(2, 1, 32, 48, 64)
    with torch.inference_mode():
        default = network(image)
        network.fixed_count_refinement = True
        fixed = network(image)
    assert torch.allclose(default, fixed, atol=1e-5)


def test_keeping_every_token_equals_the_dense_variant():
    sparse = small_tokenseg(keep=10_000).eval()
    dense = small_tokenseg(keep=None, seed=1).eval()
    dense.load_state_dict(sparse.state_dict())
    image = torch.randn(1, 1, 32, 32, 48)
    with torch.inference_mode():
        assert torch.allclose(sparse(image), dense(image), atol=1e-5)
        assert not torch.allclose(small_tokenseg(keep=3).eval()(image), dense(image), atol=1e-3)


def test_refinement_in_cells_equals_the_dense_refinement_at_the_borders_too():
    torch.manual_seed(0)
    head = RefinementHead(6, 2, 3, 5, 4)
    half, image = torch.randn(2, 6, 16, 8, 24), torch.randn(2, 2, 32, 16, 48)
    cells = torch.tensor(list(itertools.product(range(2), range(1), range(3))))
    batch = torch.tensor([0] * len(cells) + [1] * len(cells))
    cells = torch.cat([cells, cells])
    with torch.no_grad():
        dense = head.dense(half, image)
        sparse = add_to_cells(torch.zeros_like(dense), batch, cells, head.cells(half, image, batch, cells))
    assert torch.allclose(sparse, dense, atol=1e-5)


def test_vq_losses_and_straight_through_gradient():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(dim=12, codes=16, code_dim=4, commitment=0.25)
    tokens = torch.randn(3, 5, 12, requires_grad=True)
    out, indices = quantizer(tokens)
    latent = quantizer.down(tokens)
    nearest = torch.cdist(latent.reshape(-1, 4), quantizer.codebook).argmin(1)
    assert torch.equal(indices.flatten(), nearest)
    chosen = quantizer.codebook[nearest].view_as(latent)
    expected = ((chosen - latent) ** 2).mean() * 1.25
    assert torch.allclose(quantizer.last_loss, expected, rtol=1e-5)
    # The straight-through path: the output's forward value is the code, its gradient reaches the tokens.
    assert torch.allclose(out, quantizer.up(chosen), atol=1e-5)
    out.sum().backward(retain_graph=True)
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    assert quantizer.codebook.grad is None  # the codebook learns from its own loss only
    quantizer.last_loss.backward()
    assert quantizer.codebook.grad[nearest.unique()].abs().sum() > 0
    unused = torch.ones(16, dtype=torch.bool)
    unused[nearest.unique()] = False
    assert quantizer.codebook.grad[unused].abs().sum() == 0


def test_dead_codes_are_restarted_and_usage_is_reported():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(dim=8, codes=32, code_dim=4, restart_every=1000).train()
    latents_far = torch.full((64, 8), 50.0)
    quantizer(latents_far)  # every token lands on one or two codes
    report = quantizer.usage_report()
    assert report.startswith("codebook ") and "/32 codes used" in report
    used_before = int(report.split()[1].split("/")[0])
    quantizer.usage.fill_(0)
    quantizer.usage[0] = 1.0
    before = quantizer.codebook.detach().clone()
    restarted = quantizer.restart_dead_codes(quantizer.down(torch.randn(64, 8)).detach())
    assert restarted == 31 and torch.equal(quantizer.codebook[0], before[0])
    assert not torch.allclose(quantizer.codebook[1:], before[1:])
    quantizer(torch.randn(256, 8))
    assert int(quantizer.usage_report().split()[1].split("/")[0]) > used_before


def test_boundary_targets_mark_the_cells_that_hold_a_boundary():
    labels = torch.zeros(1, 1, 32, 32, 32, dtype=torch.long)
    labels[:, :, 2:14, 2:14, 2:14] = 1  # a cube inside the first 16^3 cell
    targets = TokenSeg.boundary_targets(labels, [(2, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1)])
    assert targets.shape == (1, 11)
    assert targets[0, :8].tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and targets[0, 8:].tolist() == [1, 1, 1]
    assert TokenSeg.boundary_targets(torch.zeros_like(labels), [(2, 2, 2)] + [(1, 1, 1)] * 3).sum() == 0


def test_phantom_training_lowers_the_loss_and_logs_codebook_usage(tmp_path):
    from MedSegEfficientLib.training.trainer import TrainConfig

    config = TrainConfig(network="tokenseg", preset="tokenseg100", network_args={**SMALL, "keep": 12},
                         patch_size=[32, 32, 32], spacing=[1.5, 1.5, 2.5], epochs=3, iterations_per_epoch=6,
                         batch_size=2, learning_rate=3e-3, device="cpu")
    card, losses = train_on_phantom(tmp_path, (24, 40, 40), config)
    assert losses[-1] < losses[0]
    log = (tmp_path / "model.train.log").read_text()
    assert log.count("codes used, perplexity") == 3
    labels = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu")).segment(
        make_phantom(shape=(24, 40, 40), seed=3)[0]).labels
    assert labels.shape == (24, 40, 40)


def test_engine_runs_it_by_sliding_window_on_sizes_the_tile_does_not_divide():
    card = ModelCard(name="t", network=NetworkInfo("tokenseg", "tokenseg100", {**SMALL, "keep": 20}),
                     spatial_dims=3, in_channels=1, labels=[LabelInfo(1, "big"), LabelInfo(2, "small")],
                     normalization=Normalization(kind="zscore"), spacing=None, patch_size=[32, 32, 32])
    torch.manual_seed(0)
    image, _ = make_phantom(shape=(20, 52, 36))
    labels = Segmenter(LoadedModel(card, build_from_card(card)), SegmentOptions(device="cpu")).segment(image).labels
    assert labels.shape == (20, 52, 36)
