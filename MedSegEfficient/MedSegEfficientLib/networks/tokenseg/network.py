"""TokenSeg (arXiv 2601.04519), designed from the paper's abstract: hierarchical candidate tokens, a boundary-aware
tokenizer (VQ + importance score + top-K), and a sparse-to-dense decoder (docs/tokenseg-design.md has every
number the paper states and every choice it leaves open).

- Encoder: four levels at strides 2, 4, 8, 16. Every level is cut into cells of 8^3 of its own voxels (16, 32,
  64, 128 input voxels): each cell's feature mean and spread make one candidate token (585 at a 128^3 tile).
- Tokenizer: tokens projected to one width with level and position embeddings, quantised by a VQ codebook, scored
  for importance (trained towards "this cell holds a label boundary"); the top K (``keep``) go on, gated by
  their score, through a small transformer.
- Decoder: the selected tokens are put back at their cells and scales and added to the encoder maps; a dense
  decoder upsamples to quarter resolution (coarse logits); the full-resolution refinement runs only inside the
  selected finest cells (``sparse_refinement``). ``keep=None`` is the dense variant: every token, dense refinement.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from MedSegEfficientLib.networks.blocks import ConvInstanceNormAct, ResidualStage
from MedSegEfficientLib.networks.registry import NetworkSpec, register_network
from MedSegEfficientLib.networks.tokenseg.sparse_refinement import CELL, RefinementHead, add_to_cells, add_to_cells_repeating
from MedSegEfficientLib.networks.tokenseg.vector_quantizer import VectorQuantizer

LEVEL_STRIDES = (2, 4, 8, 16)
CELL_VOXELS = 8  # a token's cell edge in its own level's voxels
POSITION_FREQUENCIES = 4


class TokenSeg(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, widths=(16, 32, 64, 128),
                 token_dim: int = 128, keep: int | None = 100, codes: int = 4096, code_dim: int = 32,
                 mixer_layers: int = 2, heads: int = 4, refine_widths=(16, 8), deep_supervision: bool = True,
                 vq_weight: float = 1.0, score_weight: float = 1.0) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("TokenSeg is 3D")
        if len(widths) != len(LEVEL_STRIDES):
            raise ValueError(f"widths needs {len(LEVEL_STRIDES)} entries, one per level")
        if keep is not None and keep < 0:
            raise ValueError("keep must be >= 0, or None for the dense variant")
        self.keep, self.deep_supervision = keep, deep_supervision
        self.vq_weight, self.score_weight = vq_weight, score_weight
        self.size_divisor = CELL  # the finest cells tile the input exactly
        self.stem = ConvInstanceNormAct(3, in_channels, widths[0], stride=2)
        self.encoder = nn.ModuleList([ResidualStage(3, widths[0], widths[0], convs=1)] + [
            ResidualStage(3, widths[i - 1], widths[i], stride=2) for i in range(1, len(widths))])
        # tokenizer
        self.to_token = nn.ModuleList(nn.Linear(2 * width, token_dim) for width in widths)
        self.level_embedding = nn.Parameter(torch.zeros(len(widths), token_dim))
        self.position_embedding = nn.Linear(3 * 2 * POSITION_FREQUENCIES, token_dim)
        self.token_norm = nn.LayerNorm(token_dim)
        self.scorer = nn.Sequential(nn.Linear(token_dim, token_dim // 2), nn.GELU(), nn.Linear(token_dim // 2, 1))
        self.quantizer = VectorQuantizer(token_dim, codes, code_dim)
        layer = nn.TransformerEncoderLayer(token_dim, heads, 2 * token_dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.mixer = nn.TransformerEncoder(layer, mixer_layers, enable_nested_tensor=False)
        self.reproject = nn.ModuleList(nn.Linear(token_dim, width) for width in widths)
        # decoder: dense to quarter resolution, then the (sparse) refinement
        self.up = nn.ModuleList(nn.ConvTranspose3d(widths[i], widths[i - 1], 2, stride=2)
                                for i in range(len(widths) - 1, 0, -1))
        self.fuse = nn.ModuleList(ConvInstanceNormAct(3, 2 * widths[i - 1], widths[i - 1]) for i in range(len(widths) - 1, 1, -1))
        self.coarse_head = nn.Conv3d(widths[1], out_channels, 1)
        self.refine = RefinementHead(2 * widths[0], in_channels, out_channels, *refine_widths)
        self._last: dict[str, object] = {}
        self.fixed_count_refinement = False  # always take the CUDA-graph path (tests compare the two)

    # --- the three stages -------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor):
        if any(size % CELL for size in image.shape[2:]):
            raise ValueError(f"TokenSeg needs sizes divisible by {CELL}, got {tuple(image.shape[2:])}")
        features = self._encode(image)
        tokens, grids = self._candidate_tokens(features, image.shape[2:])
        scores = self.scorer(self.token_norm(tokens)).squeeze(-1).float()
        quantised, _ = self.quantizer(self.token_norm(tokens))
        selected = self._select(scores)
        features = self._reproject(features, grids, quantised, scores, selected)
        logits, coarse = self._decode(features, image, grids[0], selected)
        self._last = {"scores": scores, "grids": grids, "selected": selected}
        return [logits, coarse] if self.training and self.deep_supervision else logits

    def _encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        x, features = self.stem(image), []
        for stage in self.encoder:
            x = stage(x)
            features.append(x)
        return features

    def _candidate_tokens(self, features, input_size) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
        tokens, grids = [], []
        for level, feature in enumerate(features):
            # A cell's mean and spread: a boundary shows as spread, which a mean alone averages away.
            mean = _pool_cells(feature, CELL_VOXELS, F.avg_pool3d)
            spread = (_pool_cells(feature.float().square(), CELL_VOXELS, F.avg_pool3d) - mean.float().square())
            pooled = torch.cat([mean, (spread.clamp(min=0) + 1e-6).sqrt().to(mean.dtype)], 1)  # finite gradient at 0
            grid = tuple(pooled.shape[2:])
            cell_size = CELL_VOXELS * LEVEL_STRIDES[level]
            position = _fourier_positions(grid, cell_size, input_size, feature.device).to(feature.dtype)
            tokens.append(self.to_token[level](pooled.flatten(2).transpose(1, 2)) + self.level_embedding[level]
                          + self.position_embedding(position))
            grids.append(grid)
        return torch.cat(tokens, 1), grids

    def _select(self, scores: torch.Tensor) -> torch.Tensor:
        """Indices (B, K) of the kept tokens: the K highest scores, or all for the dense variant."""
        count = scores.shape[1]
        if self.keep is None or self.keep >= count:
            return torch.arange(count, device=scores.device).expand(scores.shape[0], -1)
        return scores.topk(self.keep, dim=1).indices

    def _reproject(self, features, grids, quantised, scores, selected) -> list[torch.Tensor]:
        batch, _, width = quantised.shape
        index = selected[..., None].expand(-1, -1, width)
        # Kept tokens are weighted by their confidence; the scores learn from the boundary target alone.
        gate = torch.sigmoid(scores.gather(1, selected).detach())[..., None].to(quantised.dtype)
        kept = quantised.gather(1, index) * gate
        if kept.shape[1]:
            kept = self.mixer(kept).to(quantised.dtype)
        placed = torch.zeros_like(quantised).scatter(1, index, kept)  # unselected tokens stay zero
        start, result = 0, []
        for level, (feature, grid) in enumerate(zip(features, grids)):
            count = math.prod(grid)
            level_tokens = self.reproject[level](placed[:, start:start + count]).transpose(1, 2).reshape(
                batch, -1, *grid)
            start += count
            for axis in range(3):  # each token back over its cell, at its own scale
                level_tokens = level_tokens.repeat_interleave(CELL_VOXELS, dim=2 + axis)
            size = feature.shape[2:]
            result.append(feature + level_tokens[:, :, :size[0], :size[1], :size[2]])
        return result

    def _decode(self, features, image, finest_grid, selected) -> tuple[torch.Tensor, torch.Tensor]:
        x = features[-1]
        for step, fuse in enumerate(self.fuse):
            x = fuse(torch.cat([self.up[step](x), features[-2 - step]], 1))
        coarse = self.coarse_head(x)
        half_input = torch.cat([self.up[-1](x), features[0]], 1)
        upsampled = F.interpolate(coarse, size=image.shape[2:], mode="trilinear", align_corners=False)
        if self.keep is None:
            return upsampled + self.refine.dense(half_input, image), coarse
        if selected.shape[1] == 0:
            return upsampled, coarse
        if self.fixed_count_refinement or (image.is_cuda and torch.cuda.is_current_stream_capturing()):
            return self._refine_fixed_count(upsampled, half_input, image, finest_grid, selected), coarse
        in_finest = selected < math.prod(finest_grid)
        batch = in_finest.nonzero()[:, 0]
        if batch.numel() == 0:
            return upsampled, coarse
        cells = _cell_coordinates(selected[in_finest], finest_grid)
        # A fixed crop count per batch shape (the most that can be selected), so that cuDNN's tuned kernels are
        # reused from batch to batch instead of being tuned again for every new count; the padding is dropped.
        count = batch.numel()
        fixed = selected.shape[0] * min(selected.shape[1], math.prod(finest_grid))
        padded_batch = torch.cat([batch, batch[:1].expand(fixed - count)])
        padded_cells = torch.cat([cells, cells[:1].expand(fixed - count, -1)])
        corrections = self.refine.cells(half_input, image, padded_batch, padded_cells)[:count]
        return add_to_cells(upsampled, batch, cells, corrections.to(upsampled.dtype)), coarse

    def _refine_fixed_count(self, upsampled, half_input, image, finest_grid, selected) -> torch.Tensor:
        """The same result without asking the host anything (for CUDA graphs): a crop for every kept token,
        zero corrections for tokens of coarser levels on a stand-in cell."""
        finest = math.prod(finest_grid)
        in_finest = (selected < finest).flatten()
        batch = torch.arange(selected.shape[0], device=selected.device).repeat_interleave(selected.shape[1])
        cells = _cell_coordinates(selected.flatten().clamp(max=finest - 1), finest_grid)
        corrections = self.refine.cells(half_input, image, batch, cells)
        corrections = corrections * in_finest.view(-1, 1, 1, 1, 1).to(corrections.dtype)
        return add_to_cells_repeating(upsampled, batch, cells, corrections)

    # --- training hooks (train.py) ----------------------------------------------------------------------------
    def extra_loss(self, labels: torch.Tensor) -> torch.Tensor:
        """VQ codebook + commitment terms, and the importance scores against the cells that hold a boundary."""
        targets = self.boundary_targets(labels, self._last["grids"])
        score_loss = F.binary_cross_entropy_with_logits(self._last["scores"], targets)
        return self.vq_weight * self.quantizer.last_loss + self.score_weight * score_loss

    @staticmethod
    def boundary_targets(labels: torch.Tensor, grids) -> torch.Tensor:
        """(B, N): 1 where a token's cell holds a voxel whose 3^3 neighbourhood has two labels."""
        values = labels.float()
        boundary = (F.max_pool3d(values, 3, 1, 1) != -F.max_pool3d(-values, 3, 1, 1)).float()
        targets = [_pool_cells(boundary, CELL_VOXELS * stride, F.max_pool3d).flatten(1)
                   for stride, _ in zip(LEVEL_STRIDES, grids)]
        return torch.cat(targets, 1)

    def training_report(self) -> str:
        return self.quantizer.usage_report()


def _cell_coordinates(flat: torch.Tensor, grid) -> torch.Tensor:
    """(n,) flat cell indices -> (n, 3) grid coordinates, on the device (torch.unravel_index copies from the host)."""
    return torch.stack([flat // (grid[1] * grid[2]), (flat // grid[2]) % grid[1], flat % grid[2]], 1)


def _pool_cells(volume: torch.Tensor, cell: int, pool) -> torch.Tensor:
    """One value per cell of ``cell``^3 voxels; partial cells at the far borders pool what they hold."""
    kernel = [min(cell, size) for size in volume.shape[2:]]
    return pool(volume, kernel, kernel, ceil_mode=True)


def _fourier_positions(grid, cell_size: int, input_size, device) -> torch.Tensor:
    """sin/cos features of each cell centre, normalised to the tile: (cells, 3 * 2 * POSITION_FREQUENCIES)."""
    axes = [((torch.arange(n, device=device) + 0.5) * cell_size / size).clamp(max=1.0) * 2 - 1
            for n, size in zip(grid, input_size)]
    centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    angles = centres[..., None] * (math.pi * 2.0 ** torch.arange(POSITION_FREQUENCIES, device=device))
    return torch.cat([angles.sin(), angles.cos()], -1).flatten(1)


register_network(NetworkSpec(
    name="tokenseg", builder=TokenSeg, spatial_dims=(3,), default_preset="tokenseg100",
    description="TokenSeg: hierarchical candidate tokens, VQ + boundary importance top-K, sparse-to-dense decoder",
    presets={"tokenseg100": {"keep": 100}, "dense": {"keep": None}},
))
